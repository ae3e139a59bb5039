/**
 * Server settings (contract §6, `GET`/`PATCH /v1/settings`): defaults and the pure check of a
 * patch. Stored by the server; read by the sync endpoint and the REST API at each decision, so a
 * change applies at once.
 */
import { ChatError } from './errors.ts'
import { DEFAULT_MAX_TEXT_LENGTH, isPlainObject } from './schema.ts'

export interface Settings {
  /** Users' own tokens may create and update users and conversations, and guests may join. */
  browserSync: boolean
  /** Participants per conversation. */
  maxParticipants: number
  /** Distinct guest users online in one conversation at once. */
  maxGuests: number
  /** Characters in a message text. */
  maxTextLength: number
  /** Seconds to wait after typing stops before notifying (issue: notifications). */
  notificationDelay: number
  /** Where webhook events are posted, or null. */
  webhookUrl: string | null
  /** Bytes in one uploaded file (`POST /v1/conversations/:id/files`). */
  maxFileSize: number
  /** Bytes one user (user token; admins are not counted) may upload per UTC day, guests included. */
  maxUploadBytesPerUserPerDay: number
  /**
   * Messages one user may write into one conversation (sync and REST together): a token bucket
   * holding `burst` messages, refilled at `perSecond`. A batch of N messages costs N.
   */
  messageRate: MessageRate
  /** Admitted sync connections one user may hold at once, across all conversations. */
  maxConnectionsPerUser: number
  /** Distinct conversations one user may hold open through its sync connections at once. */
  maxConversationsPerUser: number
  /** Sockets from one address that are not admitted yet (authenticating, loading), at once. */
  maxPendingConnectionsPerAddress: number
}

export interface MessageRate {
  perSecond: number
  burst: number
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  browserSync: true,
  maxParticipants: 50,
  maxGuests: 10_000,
  maxTextLength: DEFAULT_MAX_TEXT_LENGTH,
  notificationDelay: 30,
  webhookUrl: null,
  maxFileSize: 25 * 1024 * 1024,
  maxUploadBytesPerUserPerDay: 500 * 1024 * 1024,
  messageRate: Object.freeze({ perSecond: 5, burst: 20 }),
  maxConnectionsPerUser: 64,
  maxConversationsPerUser: 32,
  maxPendingConnectionsPerAddress: 128
})

const intIn = (min: number, max: number) => (v: unknown): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max

const CHECKS: { [K in keyof Settings]: { ok: (v: unknown) => boolean, what: string } } = {
  browserSync: { ok: v => typeof v === 'boolean', what: 'a boolean' },
  maxParticipants: { ok: intIn(1, 100_000), what: 'an integer from 1 to 100000' },
  maxGuests: { ok: intIn(0, 1_000_000), what: 'an integer from 0 to 1000000' },
  maxTextLength: { ok: intIn(1, 1_000_000), what: 'an integer from 1 to 1000000' },
  notificationDelay: { ok: intIn(0, 900), what: 'an integer from 0 to 900 (seconds)' },
  webhookUrl: {
    ok: v => v === null || (typeof v === 'string' && v.length <= 2048 && /^https?:\/\/[^\s]+$/.test(v)),
    what: 'an http(s) URL or null'
  },
  maxFileSize: { ok: intIn(1, 1024 * 1024 * 1024), what: 'an integer from 1 to 1073741824 (bytes)' },
  maxUploadBytesPerUserPerDay: { ok: intIn(0, Number.MAX_SAFE_INTEGER), what: 'a non-negative integer (bytes)' },
  messageRate: {
    ok: v => isPlainObject(v) && Object.keys(v).length === 2 &&
      typeof v.perSecond === 'number' && Number.isFinite(v.perSecond) && v.perSecond > 0 && v.perSecond <= 10_000 &&
      intIn(1, 100_000)(v.burst),
    what: '{ perSecond: a number above 0 and at most 10000, burst: an integer from 1 to 100000 }'
  },
  maxConnectionsPerUser: { ok: intIn(1, 100_000), what: 'an integer from 1 to 100000' },
  maxConversationsPerUser: { ok: intIn(1, 100_000), what: 'an integer from 1 to 100000' },
  maxPendingConnectionsPerAddress: { ok: intIn(1, 100_000), what: 'an integer from 1 to 100000' }
}

const isSettingsKey = (k: string): k is keyof Settings => Object.prototype.hasOwnProperty.call(CHECKS, k)

/** Applies a patch to `current`, or throws `INVALID_REQUEST` naming the first bad field. */
export const applySettingsPatch = (current: Settings, patch: unknown): Settings => {
  if (!isPlainObject(patch)) throw new ChatError('INVALID_REQUEST', 'The body must be a JSON object')
  const next: Settings = { ...current }
  for (const [k, v] of Object.entries(patch)) {
    if (!isSettingsKey(k)) throw new ChatError('INVALID_REQUEST', `Unknown setting ${JSON.stringify(k.slice(0, 60))}`)
    if (!CHECKS[k].ok(v)) throw new ChatError('INVALID_REQUEST', `${k} must be ${CHECKS[k].what}`)
    Object.assign(next, { [k]: v })
  }
  return next
}

/** Settings read back from storage: unknown or bad stored fields fall back to the defaults. */
export const settingsFromStored = (stored: Record<string, unknown> | undefined): Settings => {
  const out: Settings = { ...DEFAULT_SETTINGS }
  if (stored === undefined) return out
  for (const [k, v] of Object.entries(stored)) {
    if (isSettingsKey(k) && CHECKS[k].ok(v)) Object.assign(out, { [k]: v })
  }
  return out
}
