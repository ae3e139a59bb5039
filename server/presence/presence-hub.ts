/**
 * One conversation's presence (awareness) hub, built for rooms with thousands of guests
 * (contract §5). It speaks the stock y-protocols awareness update (see `awareness-codec.ts`),
 * so an unmodified y-websocket client applies every frame it sends.
 *
 * Ownership. A connection owns the client ids it introduced, whether they arrived as "added" or
 * "updated", so a reconnect leaves no ghost. The stock y-websocket client sends back every
 * awareness change it applies (and relays what it hears over BroadcastChannel), so entries for
 * ids that the connection does not own are expected and are dropped, never applied: the
 * server's own id, an id held by another connection, and a recently removed id from a
 * connection that already holds one (a late echo). Two cases take an id over, both only for a
 * connection that holds no id yet (a stock client's first awareness frame is its own state):
 * an id held by another connection of the same user (a reconnect racing the old socket's
 * close) moves to the newer connection, and a recently removed id is re-introduced.
 *
 * Refusals. Bad bytes, a state that is not a JSON object or null, a state over `maxStateBytes`
 * and a connection holding more than `maxStatesPerConnection` ids are all refused as a whole
 * with MALFORMED_MESSAGE (the caller closes with 4400): the stock client sends one small state,
 * so anything else is a broken or hostile peer, and dropping silently would hide it. An update
 * is checked completely before any of it is recorded.
 *
 * Abuse limits. One user holds at most `maxStatesPerUser` ids across all its connections: new
 * ids past that are ignored (not an error: a user may open many tabs). Participants receive
 * at most `maxGuestStatesShown` guest states (the first guests to set one; when a shown guest
 * leaves, the oldest hidden one takes its place); the rest are only counted in `guestCount`.
 * So a join frame and the renewal traffic stay bounded whatever the number of guest sockets.
 *
 * Routing. Participants' states go to everyone; guests' states only to participants. Guests
 * learn about each other only through the server's own state (client id `serverClientId`,
 * `{ parley: { guestCount, participantCount } }`), so traffic grows linearly with guests.
 * Nobody receives its own states.
 *
 * Batching. Changes are coalesced and flushed as at most one shared frame per audience
 * (participants, guests), encoded once; a participant whose own change is in the batch gets
 * a copy without it. Three kinds of change have three deadlines:
 *   - a state that changed, appeared or was removed: within `batchMs`;
 *   - a renewal (same state, higher clock): within `renewalMs`, or earlier with any flush;
 *   - the server summary: within `batchMs`, then at most once per `summaryMs`.
 * Every `keepaliveMs` the server renews its own state and everything pending is flushed, so
 * every peer receives at least one frame per `keepaliveMs`.
 *
 * Clocks. A state is forwarded with the peer's clock plus a per-id offset that is 0 unless the
 * id was removed before: a removal goes out with the last clock + 1, and an id re-introduced
 * with a lower clock (a client reconnecting after its old socket was closed) is shifted above
 * that removal, or stock clients would ignore it until its clock caught up. Removed ids are
 * remembered for `tombstoneMs` for that purpose.
 */
import type { Role } from '../../shared/schema.ts'
import { ChatError } from '../../shared/errors.ts'
import { encodeAwareness } from '../../shared/protocol.ts'
import {
  NULL_STATE, readAwarenessUpdate, sanitizeState, writeAwarenessUpdate, type AwarenessEntry
} from './awareness-codec.ts'
import { fanOut, NO_CONN, type Outgoing } from './fan-out.ts'
import {
  DEFAULT_BATCH_MS, DEFAULT_KEEPALIVE_MS, DEFAULT_MAX_STATES_PER_CONNECTION, DEFAULT_MAX_STATE_BYTES,
  DEFAULT_MAX_GUEST_STATES_SHOWN, DEFAULT_MAX_STATES_PER_USER,
  DEFAULT_RENEWAL_MS, DEFAULT_SUMMARY_MS, DEFAULT_TOMBSTONE_MS, MAX_LISTED_GUESTS,
  type PresenceOptions, type PresencePeer, type PresenceSummary, type Timers
} from './types.ts'

export type { PresencePeer, Timers, PresenceOptions, PresenceSummary } from './types.ts'
export {
  DEFAULT_BATCH_MS, DEFAULT_KEEPALIVE_MS, DEFAULT_MAX_STATES_PER_CONNECTION, DEFAULT_MAX_STATE_BYTES,
  DEFAULT_MAX_GUEST_STATES_SHOWN, DEFAULT_MAX_STATES_PER_USER,
  DEFAULT_RENEWAL_MS, DEFAULT_SUMMARY_MS, DEFAULT_TOMBSTONE_MS, MAX_LISTED_GUESTS
} from './types.ts'

interface Conn {
  readonly peer: PresencePeer
  readonly ids: Set<number>
}

/** A live state. `outClock` = `peerClock + offset`. */
interface LiveState {
  owner: Conn
  role: Role
  peerClock: number
  offset: number
  json: string
  /** Sent to guests at least once (it belonged to a participant then). */
  shownToGuests: boolean
}

/** What is left of a removed state. */
interface Tombstone {
  outClock: number
  /** Whether guests may hold it, so whether they must hear of the removal. */
  guestsKnow: boolean
  /** Whether participants may hold it (a hidden guest state never reached them). */
  participantsKnow: boolean
  /** The connection that removed it (so it is not echoed), or NO_CONN. */
  author: number
  removedAt: number
}

const outClock = (s: LiveState): number => s.peerClock + s.offset

const increment = (counts: Map<string, number>, key: string): void => {
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

/** The top-level boolean `key` of a sanitized state's JSON, or undefined. */
const stateFlag = (json: string, key: 'viewing' | 'typing'): boolean | undefined => {
  const v: unknown = JSON.parse(json)
  if (typeof v !== 'object' || v === null) return undefined
  const flag: unknown = (v as Record<string, unknown>)[key]
  return typeof flag === 'boolean' ? flag : undefined
}

const decrement = (counts: Map<string, number>, key: string): void => {
  const n = (counts.get(key) ?? 0) - 1
  if (n > 0) counts.set(key, n)
  else counts.delete(key)
}

/** Presence of one conversation. A stateful resource: call `destroy()` when it goes away. */
export class PresenceHub {
  readonly #serverClientId: number
  readonly #batchMs: number
  readonly #keepaliveMs: number
  readonly #maxStates: number
  readonly #maxStateBytes: number
  readonly #maxStatesPerUser: number
  readonly #maxGuestStatesShown: number
  readonly #renewalMs: number
  readonly #summaryMs: number
  readonly #tombstoneMs: number
  readonly #timers: Timers
  readonly #now: () => number

  readonly #conns = new Map<number, Conn>()
  readonly #states = new Map<number, LiveState>()
  readonly #tombstones = new Map<number, Tombstone>()
  /** Connection counts per user, by role. */
  readonly #participantUsers = new Map<string, number>()
  readonly #guestUsers = new Map<string, number>()
  /** Live states per user. */
  readonly #userStates = new Map<string, number>()
  /** Guest client ids whose states participants receive, and the others, oldest first. */
  readonly #shownGuests = new Set<number>()
  readonly #hiddenGuests = new Set<number>()
  /** Guest users connected to the other nodes of a cluster (empty on one node). */
  #remoteGuests: ReadonlySet<string> = new Set()
  /** Client ids changed since the last flush (live or tombstoned). */
  readonly #dirty = new Set<number>()
  /** Client ids whose state says `typing: true`. */
  readonly #typing = new Set<number>()
  readonly #typingListeners = new Set<() => void>()

  #serverClock = 0
  #serverJson = ''
  /** The server state changed since it was last broadcast. */
  #serverPending = false
  #serverSentAt = Number.NEGATIVE_INFINITY

  #batchTimer: unknown = null
  #renewalTimer: unknown = null
  #summaryTimer: unknown = null
  #keepaliveTimer: unknown = null
  #destroyed = false

  constructor (options: PresenceOptions) {
    this.#serverClientId = options.serverClientId
    this.#batchMs = options.batchMs ?? DEFAULT_BATCH_MS
    this.#keepaliveMs = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS
    this.#maxStates = options.maxStatesPerConnection ?? DEFAULT_MAX_STATES_PER_CONNECTION
    this.#maxStateBytes = options.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES
    this.#maxStatesPerUser = options.maxStatesPerUser ?? DEFAULT_MAX_STATES_PER_USER
    this.#maxGuestStatesShown = options.maxGuestStatesShown ?? DEFAULT_MAX_GUEST_STATES_SHOWN
    this.#renewalMs = options.renewalMs ?? DEFAULT_RENEWAL_MS
    this.#summaryMs = options.summaryMs ?? DEFAULT_SUMMARY_MS
    this.#tombstoneMs = options.tombstoneMs ?? DEFAULT_TOMBSTONE_MS
    this.#timers = options.timers
    this.#now = options.now
    this.#refreshServerState()
    this.#serverPending = false
  }

  /**
   * Adds a connection and sends it, in one frame, every state it may see: the participants',
   * the server summary and, for a participant, the guests'. Joining twice, or after
   * `destroy()`, is ignored.
   */
  join (peer: PresencePeer): void {
    if (this.#destroyed || this.#conns.has(peer.connId)) return
    this.#conns.set(peer.connId, { peer, ids: new Set() })
    increment(peer.role === 'participant' ? this.#participantUsers : this.#guestUsers, peer.userId)
    this.#summaryChanged()
    if (this.#keepaliveTimer === null) {
      this.#keepaliveTimer = this.#timers.setInterval(() => this.#keepalive(), this.#keepaliveMs)
    }
    const entries: AwarenessEntry[] = [{ clientId: this.#serverClientId, clock: this.#serverClock, json: this.#serverJson }]
    const isGuest = peer.role === 'guest'
    for (const [clientId, s] of this.#states) {
      if (s.role === 'guest' && (isGuest || !this.#shownGuests.has(clientId))) continue
      if (isGuest) s.shownToGuests = true
      entries.push({ clientId, clock: outClock(s), json: s.json })
    }
    peer.send(encodeAwareness(writeAwarenessUpdate(entries)))
  }

  /**
   * Checks and records an awareness update from `peer`, and schedules its fan-out. Nothing is
   * recorded when it throws MALFORMED_MESSAGE (bad bytes, a state that is not a JSON object or
   * null, or a cap exceeded). Entries for ids the connection may not touch are dropped (see the
   * header). An update from a connection not joined is ignored.
   * After a throw the caller closes the connection (the code's `closeCode`) and calls `leave`.
   */
  receive (peer: PresencePeer, awarenessUpdate: Uint8Array): void {
    const conn = this.#conns.get(peer.connId)
    if (conn === undefined) return
    // Only the last entry per id counts; a stock client never repeats an id in one update.
    const latest = new Map<number, AwarenessEntry>()
    for (const e of readAwarenessUpdate(awarenessUpdate)) latest.set(e.clientId, e)

    const checked: AwarenessEntry[] = []
    const held = new Set(conn.ids)
    let userStates = this.#userStates.get(peer.userId) ?? 0
    for (const e of latest.values()) {
      if (e.clientId === this.#serverClientId) continue
      const live = this.#states.get(e.clientId)
      const fresh = conn.ids.size === 0
      if (live !== undefined && live.owner !== conn && !(fresh && live.owner.peer.userId === peer.userId)) continue
      if (live === undefined && !fresh && this.#tombstones.has(e.clientId)) continue
      const json = sanitizeState(e.json, conn.peer, this.#maxStateBytes)
      if (live === undefined && json === NULL_STATE) continue
      if (live === undefined) {
        // A new id for this user: past the per-user cap it is ignored.
        if (userStates >= this.#maxStatesPerUser) continue
        userStates++
      }
      if (json === NULL_STATE) held.delete(e.clientId)
      else held.add(e.clientId)
      checked.push({ clientId: e.clientId, clock: e.clock, json })
    }
    if (held.size > this.#maxStates) {
      throw new ChatError('MALFORMED_MESSAGE', `A connection may hold at most ${this.#maxStates} awareness states`)
    }

    for (const e of checked) {
      if (e.json === NULL_STATE) this.#remove(conn, e)
      else this.#set(conn, e)
    }
  }

  /**
   * Removes a connection and its states; the removal reaches the others within `batchMs`.
   * The peer is never sent anything again. Leaving twice is ignored.
   */
  leave (peer: PresencePeer): void {
    const conn = this.#conns.get(peer.connId)
    if (conn === undefined) return
    this.#conns.delete(peer.connId)
    decrement(peer.role === 'participant' ? this.#participantUsers : this.#guestUsers, peer.userId)
    for (const clientId of conn.ids) {
      const s = this.#states.get(clientId)
      if (s !== undefined) this.#bury(clientId, s, outClock(s) + 1, NO_CONN)
    }
    conn.ids.clear()
    if (this.#conns.size === 0) {
      // Nobody left to tell: drop what is pending, keep the tombstones for a quick return.
      this.#stopTimers()
      this.#dirty.clear()
      this.#refreshServerState()
      this.#serverPending = false
      return
    }
    this.#summaryChanged()
  }

  /** Distinct users online, by role; guests listed at most `MAX_LISTED_GUESTS`. */
  summary (): PresenceSummary {
    const guests: string[] = []
    for (const userId of this.#guestUsers.keys()) {
      if (guests.length >= MAX_LISTED_GUESTS) break
      guests.push(userId)
    }
    for (const userId of this.#remoteGuests) {
      if (guests.length >= MAX_LISTED_GUESTS) break
      if (!this.#guestUsers.has(userId)) guests.push(userId)
    }
    return { participants: Array.from(this.#participantUsers.keys()), guestCount: this.#guestCount(), guests }
  }

  /**
   * Participants connected now, each with whether it is viewing the conversation: true when at
   * least one of its connections has no state yet or a state whose `viewing` is not `false`
   * (the client sets `viewing` from page visibility; a client that never sets it counts as
   * viewing). Read by notifications; parses only participants' states.
   */
  participantViewing (): Map<string, boolean> {
    const out = new Map<string, boolean>()
    for (const conn of this.#conns.values()) {
      if (conn.peer.role !== 'participant') continue
      let viewing = conn.ids.size === 0
      for (const clientId of conn.ids) {
        const s = this.#states.get(clientId)
        if (s === undefined || stateFlag(s.json, 'viewing') !== false) viewing = true
      }
      out.set(conn.peer.userId, (out.get(conn.peer.userId) ?? false) || viewing)
    }
    return out
  }

  /** Users (participants and guests) with a state saying `typing: true` now. */
  typingUsers (): Set<string> {
    const out = new Set<string>()
    for (const s of this.#states.values()) {
      if (s.json.includes('"typing"') && stateFlag(s.json, 'typing') === true) out.add(s.owner.peer.userId)
    }
    return out
  }

  /** Whether `userId` has a guest connection joined now (a new tab of it takes no new place). */
  hasGuest (userId: string): boolean {
    return this.#guestUsers.has(userId) || this.#remoteGuests.has(userId)
  }

  /** Guest users with a connection joined to this node (what a cluster node tells the others). */
  localGuests (): string[] {
    return Array.from(this.#guestUsers.keys())
  }

  /** The guest users the other nodes of a cluster have joined now (cluster mode). */
  setRemoteGuests (users: ReadonlySet<string>): void {
    this.#remoteGuests = users
    this.#summaryChanged()
  }

  /** Distinct guest users, here and on the other nodes. */
  #guestCount (): number {
    let n = this.#guestUsers.size
    for (const userId of this.#remoteGuests) if (!this.#guestUsers.has(userId)) n++
    return n
  }

  /** Whether anyone (participant or guest) has a state saying `typing: true` now. */
  isTyping (): boolean {
    return this.#typing.size > 0
  }

  /**
   * Calls `fn` whenever someone starts or stops typing (a state gains or loses `typing: true`,
   * or goes away, also when the hub is destroyed). Returns the unsubscribe function.
   */
  onTypingChange (fn: () => void): () => void {
    this.#typingListeners.add(fn)
    return () => { this.#typingListeners.delete(fn) }
  }

  /** Distinct guest users online, for the `maxGuests` cap (checked by the caller before `join`). */
  distinctGuestUsers (): number {
    return this.#guestCount()
  }

  /** Connections joined. */
  size (): number {
    return this.#conns.size
  }

  /** Clears every timer and forgets every connection; the hub never sends again. */
  destroy (): void {
    this.#destroyed = true
    this.#stopTimers()
    this.#dirty.clear()
    this.#conns.clear()
    this.#participantUsers.clear()
    this.#guestUsers.clear()
    const wasTyping = this.#typing.size > 0
    this.#typing.clear()
    if (wasTyping) this.#typingChanged()
    this.#typingListeners.clear()
    this.#userStates.clear()
    this.#shownGuests.clear()
    this.#hiddenGuests.clear()
  }

  /** Records whether `clientId`'s state (null: removed) says it is typing; tells listeners of a change. */
  #trackTyping (clientId: number, json: string | null): void {
    const typing = json !== null && json.includes('"typing"') && stateFlag(json, 'typing') === true
    if (typing === this.#typing.has(clientId)) return
    if (typing) this.#typing.add(clientId)
    else this.#typing.delete(clientId)
    this.#typingChanged()
  }

  #typingChanged (): void {
    for (const fn of [...this.#typingListeners]) fn()
  }

  #set (conn: Conn, e: AwarenessEntry): void {
    const live = this.#states.get(e.clientId)
    if (live === undefined) {
      const tomb = this.#tombstones.get(e.clientId)
      // Stock clients ignore a first state at clock 0, and anything at or below a removal.
      const floor = tomb === undefined ? 1 : tomb.outClock + 1
      this.#tombstones.delete(e.clientId)
      this.#states.set(e.clientId, {
        owner: conn,
        role: conn.peer.role,
        peerClock: e.clock,
        offset: Math.max(0, floor - e.clock),
        json: e.json,
        shownToGuests: false
      })
      conn.ids.add(e.clientId)
      increment(this.#userStates, conn.peer.userId)
      if (conn.peer.role === 'guest') this.#addGuest(e.clientId)
      this.#markDirty(e.clientId, true)
      this.#trackTyping(e.clientId, e.json)
      return
    }
    if (live.owner !== conn) {
      // Same user (checked in receive): a reconnect takes the id over, so the old connection's
      // leave will not remove it.
      live.owner.ids.delete(e.clientId)
      live.owner = conn
      conn.ids.add(e.clientId)
    }
    const roleChanged = live.role !== conn.peer.role
    // A stale or repeated clock is ignored, as y-protocols does, unless the role changed: then
    // the state must move between audiences, under a clock receivers have not seen yet.
    if (e.clock <= live.peerClock && !roleChanged) return
    const before = outClock(live)
    const changed = roleChanged || e.json !== live.json
    live.offset = Math.max(live.offset, before + 1 - e.clock)
    live.peerClock = e.clock
    if (roleChanged) {
      if (conn.peer.role === 'guest') this.#addGuest(e.clientId)
      else this.#dropGuest(e.clientId)
    }
    live.role = conn.peer.role
    live.json = e.json
    this.#markDirty(e.clientId, changed)
    if (changed) this.#trackTyping(e.clientId, e.json)
  }

  /** A guest state appeared: shown to participants while there is room, else hidden. */
  #addGuest (clientId: number): void {
    if (this.#shownGuests.size < this.#maxGuestStatesShown) this.#shownGuests.add(clientId)
    else this.#hiddenGuests.add(clientId)
  }

  /** A guest state went away (or became a participant's): the oldest hidden one is shown instead. */
  #dropGuest (clientId: number): boolean {
    this.#hiddenGuests.delete(clientId)
    if (!this.#shownGuests.delete(clientId)) return false
    for (const next of this.#hiddenGuests) {
      this.#hiddenGuests.delete(next)
      this.#shownGuests.add(next)
      this.#markDirty(next, true)
      break
    }
    return true
  }

  #remove (conn: Conn, e: AwarenessEntry): void {
    const live = this.#states.get(e.clientId)
    // Unknown or already removed: nothing to do. A stale removal is ignored, as y-protocols does.
    if (live === undefined || e.clock < live.peerClock) return
    live.owner.ids.delete(e.clientId)
    this.#bury(e.clientId, live, e.clock + live.offset, conn.peer.connId)
  }

  #bury (clientId: number, s: LiveState, clock: number, author: number): void {
    this.#states.delete(clientId)
    this.#trackTyping(clientId, null)
    decrement(this.#userStates, s.owner.peer.userId)
    const shown = s.role === 'guest' ? this.#dropGuest(clientId) : true
    this.#tombstones.set(clientId, {
      outClock: clock,
      guestsKnow: s.role === 'participant' || s.shownToGuests,
      participantsKnow: shown,
      author,
      removedAt: this.#now()
    })
    this.#markDirty(clientId, true)
  }

  #markDirty (clientId: number, urgent: boolean): void {
    this.#dirty.add(clientId)
    if (urgent) this.#scheduleBatch()
    else if (this.#renewalTimer === null && this.#batchTimer === null) {
      this.#renewalTimer = this.#timers.setTimeout(() => this.#flush(), this.#renewalMs)
    }
  }

  #scheduleBatch (): void {
    if (this.#batchTimer === null) this.#batchTimer = this.#timers.setTimeout(() => this.#flush(), this.#batchMs)
  }

  /** Recomputes the server state; true when it changed (its clock then moved on). */
  #refreshServerState (): boolean {
    const json = JSON.stringify({ parley: { guestCount: this.#guestCount(), participantCount: this.#participantUsers.size } })
    if (json === this.#serverJson) return false
    this.#serverJson = json
    this.#serverClock++
    return true
  }

  #summaryChanged (): void {
    if (!this.#refreshServerState()) return
    this.#serverPending = true
    if (this.#summaryTimer === null) {
      const wait = Math.max(this.#batchMs, this.#serverSentAt + this.#summaryMs - this.#now())
      this.#summaryTimer = this.#timers.setTimeout(() => {
        this.#summaryTimer = null
        this.#flush(true)
      }, wait)
    }
  }

  #keepalive (): void {
    const now = this.#now()
    for (const [clientId, t] of this.#tombstones) {
      // Insertion order is removal order, so the first young one ends the sweep.
      if (now - t.removedAt < this.#tombstoneMs) break
      if (!this.#dirty.has(clientId)) this.#tombstones.delete(clientId)
    }
    this.#serverClock++
    this.#serverPending = true
    this.#flush(true)
  }

  /**
   * Sends everything pending: one shared frame per audience, encoded once. The server state
   * rides along when `withServer` (keepalive, summary timer) or when its throttle allows.
   */
  #flush (withServer = false): void {
    this.#clearTimer('batch')
    this.#clearTimer('renewal')
    const includeServer = this.#serverPending && (withServer || this.#now() - this.#serverSentAt >= this.#summaryMs)
    const out: Outgoing[] = []
    for (const clientId of this.#dirty) {
      const s = this.#states.get(clientId)
      if (s !== undefined) {
        const clock = outClock(s)
        const author = s.owner.peer.connId
        if (s.role === 'participant') {
          s.shownToGuests = true
          out.push({ clientId, clock, json: s.json, author, toParticipants: true, toGuests: true })
          continue
        }
        if (this.#shownGuests.has(clientId)) out.push({ clientId, clock, json: s.json, author, toParticipants: true, toGuests: false })
        if (s.shownToGuests) {
          // Its connection is a guest now (a takeover): guests must forget it.
          s.shownToGuests = false
          out.push({ clientId, clock, json: NULL_STATE, author: NO_CONN, toParticipants: false, toGuests: true })
        }
        continue
      }
      const t = this.#tombstones.get(clientId)
      if (t !== undefined) {
        if (t.participantsKnow || t.guestsKnow) out.push({ clientId, clock: t.outClock, json: NULL_STATE, author: t.author, toParticipants: t.participantsKnow, toGuests: t.guestsKnow })
      }
    }
    this.#dirty.clear()
    if (includeServer) {
      this.#clearTimer('summary')
      this.#serverPending = false
      this.#serverSentAt = this.#now()
      out.push({ clientId: this.#serverClientId, clock: this.#serverClock, json: this.#serverJson, author: NO_CONN, toParticipants: true, toGuests: true })
    }
    if (out.length > 0) fanOut(out, this.#conns.values())
  }

  #clearTimer (which: 'batch' | 'renewal' | 'summary'): void {
    if (which === 'batch' && this.#batchTimer !== null) {
      this.#timers.clearTimeout(this.#batchTimer)
      this.#batchTimer = null
    } else if (which === 'renewal' && this.#renewalTimer !== null) {
      this.#timers.clearTimeout(this.#renewalTimer)
      this.#renewalTimer = null
    } else if (which === 'summary' && this.#summaryTimer !== null) {
      this.#timers.clearTimeout(this.#summaryTimer)
      this.#summaryTimer = null
    }
  }

  #stopTimers (): void {
    this.#clearTimer('batch')
    this.#clearTimer('renewal')
    this.#clearTimer('summary')
    if (this.#keepaliveTimer !== null) {
      this.#timers.clearInterval(this.#keepaliveTimer)
      this.#keepaliveTimer = null
    }
  }
}
