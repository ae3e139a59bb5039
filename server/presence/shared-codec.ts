/**
 * How a cluster node writes what it shares of its presence (`PresenceChange`, types.ts): as one
 * bus message per tick for all its conversations, and as one Redis hash per conversation (the
 * board, `server/bus/presence-board.ts`) that a node loading the conversation reads whole.
 * Pure: no sockets, no Redis.
 *
 * Bus message (JSON), channel `presence`:
 *   {"n": node, "v": version, "g"?: 1 (the node stops: forget it),
 *    "c": [{"c": conv, "b": base version, "f"?: 1 (full: replaces), "w"?: 1 (withdrawn),
 *           "s": [[clientId, clock, userId, "p"|"g", stateJson]], "r": [[clientId, clock]],
 *           "u": [[userId, flags, guestSince]], "x": [userId left]}]}
 *   flags: 1 participant, 2 guest, 4 viewing. A conversation's entry applies on top of the
 *   version `b` of that node's record; a receiver holding another version reads the record.
 *
 * Board hash fields: `v` (version), `s:<clientId>` → `[clock, userId, "p"|"g", stateJson]`,
 * `u:<userId>` → `[flags, guestSince]`.
 *
 * The other nodes are trusted (they checked every state they accepted), but what comes from
 * Redis is still read defensively: a malformed entry is skipped, never thrown into a room.
 */
import type { Role } from '../../shared/schema.ts'
import type { PresenceChange, SharedState, SharedUser } from './types.ts'

/** One conversation's part of a node's tick message. */
export interface ConvShare {
  readonly conv: string
  /** The version of the node's record this change applies on top of (ignored when full). */
  readonly base: number
  /** The node has nothing in this conversation any more (its record was deleted). */
  readonly withdrawn: boolean
  readonly change: PresenceChange
}

/** One node's tick message. */
export interface NodeShare {
  readonly node: string
  readonly version: number
  /** The node is stopping: forget everything it shared. */
  readonly gone: boolean
  readonly convs: readonly ConvShare[]
}

/** A node's whole record of one conversation, as read from the board. */
export interface NodeRecord {
  readonly version: number
  readonly change: PresenceChange
}

export const EMPTY_CHANGE: PresenceChange = { full: true, states: [], removed: [], users: [], left: [] }

const roleCode = (role: Role): string => role === 'guest' ? 'g' : 'p'
const roleOf = (code: unknown): Role | null => code === 'g' ? 'guest' : code === 'p' ? 'participant' : null
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const flagsOf = (u: SharedUser): number => (u.participant ? 1 : 0) | (u.guest ? 2 : 0) | (u.viewing ? 4 : 0)
const userFrom = (userId: unknown, flags: unknown, since: unknown): SharedUser | null => {
  if (typeof userId !== 'string' || !isUint(flags) || typeof since !== 'number' || !Number.isFinite(since)) return null
  return { userId, participant: (flags & 1) !== 0, guest: (flags & 2) !== 0, viewing: (flags & 4) !== 0, guestSince: since }
}
const stateFrom = (clientId: unknown, clock: unknown, userId: unknown, role: unknown, json: unknown): SharedState | null => {
  const r = roleOf(role)
  if (!isUint(clientId) || !isUint(clock) || typeof userId !== 'string' || r === null || typeof json !== 'string' || json === 'null') return null
  return { clientId, clock, json, userId, role: r }
}

export const encodeNodeShare = (share: NodeShare): string => JSON.stringify({
  n: share.node,
  v: share.version,
  ...(share.gone ? { g: 1 } : {}),
  c: share.convs.map(c => ({
    c: c.conv,
    b: c.base,
    ...(c.change.full ? { f: 1 } : {}),
    ...(c.withdrawn ? { w: 1 } : {}),
    s: c.change.states.map(s => [s.clientId, s.clock, s.userId, roleCode(s.role), s.json]),
    r: c.change.removed.map(r => [r.clientId, r.clock]),
    u: c.change.users.map(u => [u.userId, flagsOf(u), u.guestSince]),
    x: c.change.left
  }))
})

const list = (v: unknown): unknown[] => Array.isArray(v) ? v : []

/** Reads a tick message; null when it is not one. */
export const decodeNodeShare = (text: string): NodeShare | null => {
  let m: unknown
  try {
    m = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof m !== 'object' || m === null) return null
  const o = m as Record<string, unknown>
  if (typeof o.n !== 'string' || !isUint(o.v)) return null
  const convs: ConvShare[] = []
  for (const raw of list(o.c)) {
    if (typeof raw !== 'object' || raw === null) continue
    const c = raw as Record<string, unknown>
    if (typeof c.c !== 'string' || !isUint(c.b)) continue
    const states: SharedState[] = []
    for (const e of list(c.s)) {
      const s = Array.isArray(e) ? stateFrom(e[0], e[1], e[2], e[3], e[4]) : null
      if (s !== null) states.push(s)
    }
    const removed: Array<{ clientId: number, clock: number }> = []
    for (const e of list(c.r)) if (Array.isArray(e) && isUint(e[0]) && isUint(e[1])) removed.push({ clientId: e[0], clock: e[1] })
    const users: SharedUser[] = []
    for (const e of list(c.u)) {
      const u = Array.isArray(e) ? userFrom(e[0], e[1], e[2]) : null
      if (u !== null) users.push(u)
    }
    const left = list(c.x).filter((x): x is string => typeof x === 'string')
    convs.push({ conv: c.c, base: c.b, withdrawn: c.w === 1, change: { full: c.f === 1, states, removed, users, left } })
  }
  return { node: o.n, version: o.v, gone: o.g === 1, convs }
}

/** The board fields a change writes (`set`) and deletes (`del`); a full change replaces the hash. */
export const recordFields = (version: number, change: PresenceChange): { set: string[], del: string[] } => {
  const set: string[] = ['v', String(version)]
  for (const s of change.states) set.push(`s:${s.clientId}`, JSON.stringify([s.clock, s.userId, roleCode(s.role), s.json]))
  for (const u of change.users) set.push(`u:${u.userId}`, JSON.stringify([flagsOf(u), u.guestSince]))
  const del: string[] = []
  for (const r of change.removed) del.push(`s:${r.clientId}`)
  for (const userId of change.left) del.push(`u:${userId}`)
  return { set, del }
}

/** Reads a board hash (HGETALL); null when it is empty or has no version (expired, or being rewritten). */
export const parseRecord = (hash: Record<string, string>): NodeRecord | null => {
  const version = Number(hash.v)
  if (hash.v === undefined || !isUint(version)) return null
  const states: SharedState[] = []
  const users: SharedUser[] = []
  for (const [field, value] of Object.entries(hash)) {
    let v: unknown
    try {
      v = JSON.parse(value)
    } catch {
      continue
    }
    if (!Array.isArray(v)) continue
    if (field.startsWith('s:')) {
      const s = stateFrom(Number(field.slice(2)), v[0], v[1], v[2], v[3])
      if (s !== null) states.push(s)
    } else if (field.startsWith('u:')) {
      const u = userFrom(field.slice(2), v[0], v[1])
      if (u !== null) users.push(u)
    }
  }
  return { version, change: { full: true, states, removed: [], users, left: [] } }
}
