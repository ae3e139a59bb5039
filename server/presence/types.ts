/**
 * The presence hub's public types and defaults (re-exported by `presence-hub.ts`, which is the
 * module to import). Units are milliseconds unless said otherwise.
 */
import type { Role } from '../../shared/schema.ts'

/** One connection as the hub sees it. */
export interface PresencePeer {
  /** Unique per connection. */
  readonly connId: number
  /** From the verified token. */
  readonly userId: string
  readonly role: Role
  /** Sends a full protocol frame; the caller makes it a no-op once the socket is closed. */
  send (frame: Uint8Array): void
}

/** The timer functions the hub uses, injected so tests can drive time by hand. */
export interface Timers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (h: unknown): void
  setInterval (fn: () => void, ms: number): unknown
  clearInterval (h: unknown): void
}

export interface PresenceOptions {
  /** The server's own awareness client id; never accepted from a peer. */
  serverClientId: number
  /** Coalescing window for changed states, in ms. */
  batchMs?: number
  /** Every peer receives a frame at least this often, in ms; stock clients drop after 30 s. */
  keepaliveMs?: number
  /** Most client ids one connection may hold; the stock client uses one. */
  maxStatesPerConnection?: number
  /** Longest state accepted, in characters of the JSON the peer sent. */
  maxStateBytes?: number
  /** Most client ids one user may hold across all its connections; more are ignored. */
  maxStatesPerUser?: number
  /** Most guest states participants receive; further guests are only counted in `guestCount`. */
  maxGuestStatesShown?: number
  /** Longest delay of a forwarded renewal, in ms; must leave room under the 30 s timeout. */
  renewalMs?: number
  /** Shortest interval between two broadcasts of a changed summary, in ms. */
  summaryMs?: number
  /** How long a removed id's last clock is remembered, in ms. */
  tombstoneMs?: number
  timers: Timers
  /** Milliseconds; only differences are used. */
  now: () => number
}

/** Who is online: distinct user ids. `guests` lists at most `MAX_LISTED_GUESTS`. */
export interface PresenceSummary {
  participants: string[]
  guestCount: number
  guests: string[]
}

export const DEFAULT_BATCH_MS = 40
export const DEFAULT_KEEPALIVE_MS = 15_000
export const DEFAULT_MAX_STATES_PER_CONNECTION = 4
export const DEFAULT_MAX_STATE_BYTES = 4096
export const DEFAULT_MAX_STATES_PER_USER = 8
export const DEFAULT_MAX_GUEST_STATES_SHOWN = 100
export const DEFAULT_RENEWAL_MS = 5_000
export const DEFAULT_SUMMARY_MS = 1_000
export const DEFAULT_TOMBSTONE_MS = 10 * 60_000
/** Most guest ids `summary()` lists. */
export const MAX_LISTED_GUESTS = 100

/**
 * Cluster mode (docs/cluster.md, "Presence"): what one node shares of one conversation's
 * presence with the other nodes. Everything in it was checked by the node that accepted it
 * (`sanitizeState`, ownership of client ids); the other nodes show it as it is.
 */

/** A live awareness state of a connection to the sharing node, with the clock that node sends. */
export interface SharedState {
  readonly clientId: number
  readonly clock: number
  /** The sanitized state's JSON, never `'null'`. */
  readonly json: string
  readonly userId: string
  readonly role: Role
}

/** One user's connections to the sharing node. */
export interface SharedUser {
  readonly userId: string
  /** It has a participant connection there. */
  readonly participant: boolean
  /** It has a guest connection there. */
  readonly guest: boolean
  /** A participant connection of it is viewing (see `PresenceHub.participantViewing`). */
  readonly viewing: boolean
  /** Wall-clock ms when it joined there as a guest (0 when not a guest): ranks guests for `maxGuests`. */
  readonly guestSince: number
}

/** What changed on the sharing node since it last shared, or (`full`) everything it has. */
export interface PresenceChange {
  readonly full: boolean
  readonly states: readonly SharedState[]
  /** Client ids that node no longer holds, with the clock of their removal. */
  readonly removed: ReadonlyArray<{ readonly clientId: number, readonly clock: number }>
  readonly users: readonly SharedUser[]
  /** Users with no connection to that node any more. */
  readonly left: readonly string[]
}
