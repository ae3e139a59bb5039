/**
 * The y-protocols awareness update, read strictly and written back, plus the check that turns
 * a peer's claimed state into the state the server records (contract §5).
 *
 * Wire format (y-protocols/awareness.js `encodeAwarenessUpdate`):
 *
 *   varuint count
 *   count × { varuint clientID, varuint clock, varString JSON state (the text 'null' = removal) }
 *
 * Unlike `applyAwarenessUpdate`, `readAwarenessUpdate` refuses trailing bytes, unsafe integers
 * and JSON that does not parse, so a hostile frame never reaches the hub's tables.
 */
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { ChatError } from '../../shared/errors.ts'
import { isPlainObject, type Role } from '../../shared/schema.ts'
import { displayTextProblem } from '../../shared/text.ts'

/** One entry of an awareness update, the state still as JSON text. */
export interface AwarenessEntry {
  readonly clientId: number
  readonly clock: number
  /** JSON text of the state; exactly `'null'` for a removal. */
  readonly json: string
}

/** Longest `user.name` kept, in UTF-16 code units; a longer name is dropped. */
export const MAX_USER_NAME_LENGTH = 100

/** The JSON text y-protocols writes for a removed state. */
export const NULL_STATE = 'null'

const malformed = (why: string): ChatError => new ChatError('MALFORMED_MESSAGE', `Malformed awareness update: ${why}`)

const readSafeUint = (decoder: decoding.Decoder, what: string): number => {
  const n = decoding.readVarUint(decoder)
  if (!Number.isSafeInteger(n)) throw malformed(`${what} is out of range`)
  return n
}

/**
 * Decodes an awareness update (the payload of a type-1 message, without the message type).
 * Throws `ChatError('MALFORMED_MESSAGE')` on truncated input, trailing bytes or an out-of-range
 * integer. The JSON is not parsed here; see `sanitizeState`.
 */
export const readAwarenessUpdate = (update: Uint8Array): AwarenessEntry[] => {
  const decoder = decoding.createDecoder(update)
  const entries: AwarenessEntry[] = []
  try {
    const count = readSafeUint(decoder, 'the entry count')
    // Each entry takes at least 3 bytes, so a count beyond that cannot be honest.
    if (count > update.length) throw malformed('the entry count exceeds the input')
    for (let i = 0; i < count; i++) {
      const clientId = readSafeUint(decoder, 'a client id')
      const clock = readSafeUint(decoder, 'a clock')
      const json = decoding.readVarString(decoder)
      entries.push({ clientId, clock, json })
    }
  } catch (e) {
    if (e instanceof ChatError) throw e
    throw malformed(e instanceof Error ? e.message : 'unreadable')
  }
  if (decoding.hasContent(decoder)) throw malformed('trailing bytes')
  return entries
}

/** Encodes entries as an awareness update, in the given order. */
export const writeAwarenessUpdate = (entries: Iterable<AwarenessEntry>): Uint8Array => {
  const list = Array.from(entries)
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, list.length)
  for (const e of list) {
    encoding.writeVarUint(encoder, e.clientId)
    encoding.writeVarUint(encoder, e.clock)
    encoding.writeVarString(encoder, e.json)
  }
  return encoding.toUint8Array(encoder)
}

/** Who the server knows a connection to be; the only source of `user.id` and `user.role`. */
export interface StateOwner {
  readonly userId: string
  readonly role: Role
  /** The `name` of the user's record (`PUT /v1/users`), when it has one: shown instead of any name the peer claims. */
  readonly recordName?: string | null
}

/**
 * Turns the JSON a peer sent into the JSON the server records and forwards, or `NULL_STATE`
 * for a removal. The state must be a JSON object of at most `maxStateBytes` characters of JSON
 * (as sent). `user.id` and `user.role` come from `owner`; whatever the peer claimed there is
 * overwritten. `name` comes from the user's record when it has one (`owner.recordName`);
 * otherwise the claimed name is kept when it is a string of at most 100 characters fit to show
 * (no control characters, bidi overrides or lone surrogates, `shared/text.ts`), and a guest's is
 * marked `nameSource: 'self'` (chosen by the guest itself: a guest may call itself "bob"). A
 * `nameSource` a peer claims is dropped. Other keys of `user` (such as the `color` editor
 * bindings use) pass through.
 * Other top-level keys pass through, except `__proto__`. Throws `MALFORMED_MESSAGE` otherwise.
 */
export const sanitizeState = (json: string, owner: StateOwner, maxStateBytes: number): string => {
  if (json.length > maxStateBytes) throw malformed(`a state is over ${maxStateBytes} characters of JSON`)
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    throw malformed('a state is not JSON')
  }
  if (parsed === null) return NULL_STATE
  if (!isPlainObject(parsed)) throw malformed('a state must be a JSON object or null')
  const claimed = parsed.user
  const user: Record<string, unknown> = {}
  if (isPlainObject(claimed)) {
    for (const key of Object.keys(claimed)) {
      if (key === 'id' || key === 'role' || key === 'name' || key === 'nameSource' || key === '__proto__') continue
      user[key] = claimed[key]
    }
    if (typeof claimed.name === 'string' && claimed.name.length <= MAX_USER_NAME_LENGTH && displayTextProblem(claimed.name) === null) {
      user.name = claimed.name
      if (owner.role === 'guest') user.nameSource = 'self'
    }
  }
  if (typeof owner.recordName === 'string' && owner.recordName !== '') {
    user.name = owner.recordName
    delete user.nameSource
  }
  user.id = owner.userId
  user.role = owner.role
  const state: Record<string, unknown> = { user }
  for (const key of Object.keys(parsed)) {
    if (key === 'user' || key === '__proto__') continue
    state[key] = parsed[key]
  }
  return JSON.stringify(state)
}
