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
 *
 * Cluster mode (docs/cluster.md, "Presence"; driven by `cluster-presence.ts`). `takeShared`
 * hands out what changed in this node's own connections' presence; `applyRemote` takes what
 * another node shared. Other nodes' states live in the same tables, held by stand-in
 * connections (`Conn.node` set) that are never sent to, so they are routed, batched, counted and
 * shown to joiners like local ones; their users count in the summary, `guestCount`,
 * `participantViewing` and `hasGuest`. A local connection may touch their ids only as a
 * reconnect of the same user would; when it lets such an id go, the other node's state for it
 * is shown again. On one node none of this runs (`startSharing` is never called, no remote).
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
  type PresenceChange, type PresenceOptions, type PresencePeer, type PresenceSummary, type SharedState, type SharedUser, type Timers
} from './types.ts'

export type { PresencePeer, Timers, PresenceOptions, PresenceSummary, PresenceChange, SharedState, SharedUser } from './types.ts'
export {
  DEFAULT_BATCH_MS, DEFAULT_KEEPALIVE_MS, DEFAULT_MAX_STATES_PER_CONNECTION, DEFAULT_MAX_STATE_BYTES,
  DEFAULT_MAX_GUEST_STATES_SHOWN, DEFAULT_MAX_STATES_PER_USER,
  DEFAULT_RENEWAL_MS, DEFAULT_SUMMARY_MS, DEFAULT_TOMBSTONE_MS, MAX_LISTED_GUESTS
} from './types.ts'

interface Conn {
  readonly peer: PresencePeer
  readonly ids: Set<number>
  /**
   * null for a connection to this node. In cluster mode, the states another node shares are
   * held by stand-ins (one per node, user and role): never joined, never sent to, and no local
   * connection may touch their ids unless it takes one over as a reconnect would.
   */
  readonly node: string | null
}

/** What this node holds of one other node's presence in the conversation (cluster mode). */
interface RemoteView {
  /** Every state that node shares, also those a local connection shadows (reinstated when it goes). */
  readonly states: Map<number, SharedState>
  readonly users: Map<string, SharedUser>
  /** The stand-ins holding its states, by `role + '\n' + userId`. */
  readonly owners: Map<string, Conn>
}

/** What a node tracks to share its local changes (cluster mode only). */
interface Sharing {
  readonly wallNow: () => number
  /** Local client ids set, renewed or removed since the last `takeShared`. */
  readonly ids: Set<number>
  /** Users whose record (`SharedUser`) may have changed since then. */
  readonly users: Set<string>
  /** The record last shared per user, encoded, so an unchanged one is not sent again. */
  readonly sent: Map<string, string>
  /** Wall-clock ms at which each local guest user joined. */
  readonly guestSince: Map<string, number>
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

/** A user record as text, to tell whether it changed since it was last shared. */
const userKey = (u: SharedUser): string => `${u.participant ? 1 : 0}${u.guest ? 1 : 0}${u.viewing ? 1 : 0}:${u.guestSince}`

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
  /** Cluster mode: the other nodes' presence, by node (empty on one node). */
  readonly #remote = new Map<string, RemoteView>()
  /** Per user, on how many other nodes it is a guest / a participant. */
  readonly #remoteGuests = new Map<string, number>()
  readonly #remoteParticipants = new Map<string, number>()
  /** Users of `#remoteGuests` / `#remoteParticipants` with no such connection here. */
  #remoteOnlyGuests = 0
  #remoteOnlyParticipants = 0
  /** Cluster mode: this node's changes waiting to be shared; null until `startSharing`. */
  #sharing: Sharing | null = null
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
    this.#conns.set(peer.connId, { peer, ids: new Set(), node: null })
    this.#countUser(peer, 1)
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
    this.#countUser(peer, -1)
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
    for (const userId of this.#remoteGuests.keys()) {
      if (guests.length >= MAX_LISTED_GUESTS) break
      if (!this.#guestUsers.has(userId)) guests.push(userId)
    }
    const participants = Array.from(this.#participantUsers.keys())
    for (const userId of this.#remoteParticipants.keys()) if (!this.#participantUsers.has(userId)) participants.push(userId)
    return { participants, guestCount: this.#guestCount(), guests }
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
    // Cluster mode: as each other node judged its own connections.
    for (const userId of this.#remoteParticipants.keys()) {
      let viewing = out.get(userId) ?? false
      for (const view of this.#remote.values()) {
        const u = view.users.get(userId)
        if (u !== undefined && u.participant && u.viewing) viewing = true
      }
      out.set(userId, viewing)
    }
    return out
  }

  /** Users (participants and guests, on every node in cluster mode) with a state saying `typing: true` now. */
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

  /** Distinct guest users, here and on the other nodes. */
  #guestCount (): number {
    return this.#guestUsers.size + this.#remoteOnlyGuests
  }

  /** Counts a local connection of `peer.userId` in (1) or out (-1), keeping the cluster-wide counts right. */
  #countUser (peer: PresencePeer, delta: 1 | -1): void {
    const guest = peer.role === 'guest'
    const local = guest ? this.#guestUsers : this.#participantUsers
    const before = local.get(peer.userId) ?? 0
    if (delta === 1) local.set(peer.userId, before + 1)
    else if (before > 1) local.set(peer.userId, before - 1)
    else local.delete(peer.userId)
    const sharing = this.#sharing
    if (sharing !== null) sharing.users.add(peer.userId)
    if (delta === 1 ? before !== 0 : before !== 1) return
    // The user's first or last local connection of this role.
    if (guest) {
      if (sharing !== null) {
        if (delta === 1) sharing.guestSince.set(peer.userId, sharing.wallNow())
        else sharing.guestSince.delete(peer.userId)
      }
      if (this.#remoteGuests.has(peer.userId)) this.#remoteOnlyGuests -= delta
    } else if (this.#remoteParticipants.has(peer.userId)) {
      this.#remoteOnlyParticipants -= delta
    }
  }

  /** Counts one other node's record of `userId` as a guest (or participant) in (1) or out (-1). */
  #countRemoteUser (userId: string, guest: boolean, delta: 1 | -1): void {
    const remote = guest ? this.#remoteGuests : this.#remoteParticipants
    const before = remote.get(userId) ?? 0
    if (delta === 1) remote.set(userId, before + 1)
    else if (before > 1) remote.set(userId, before - 1)
    else remote.delete(userId)
    if (delta === 1 ? before !== 0 : before !== 1) return
    if (!(guest ? this.#guestUsers : this.#participantUsers).has(userId)) {
      if (guest) this.#remoteOnlyGuests += delta
      else this.#remoteOnlyParticipants += delta
    }
  }

  // ---- Cluster mode (docs/cluster.md, "Presence"). On one node none of this runs. ----

  /**
   * Starts tracking this node's changes for `takeShared` (cluster mode). `wallNow`: wall-clock
   * ms, comparable between nodes (it ranks guests for `maxGuests`).
   */
  startSharing (wallNow: () => number): void {
    if (this.#sharing !== null) return
    const guestSince = new Map<string, number>()
    for (const userId of this.#guestUsers.keys()) guestSince.set(userId, wallNow())
    this.#sharing = { wallNow, ids: new Set(), users: new Set(), sent: new Map(), guestSince }
  }

  /** Whether `startSharing` was called. */
  get sharing (): boolean {
    return this.#sharing !== null
  }

  /** Distinct users with a connection to this node (either role). */
  localUserCount (): number {
    return this.#participantUsers.size + this.#guestUsers.size
  }

  /** Forgets this node's changes not shared yet (it has no connection left: its record is withdrawn). */
  discardShared (): void {
    const sharing = this.#sharing
    if (sharing === null) return
    sharing.ids.clear()
    sharing.users.clear()
    sharing.sent.clear()
  }

  /**
   * What changed in this node's own presence since the last call: states of its connections
   * set, renewed or removed, users that joined, left or changed (null: nothing). With `full`,
   * everything this node has instead (the other nodes replace what they held of it).
   * Requires `startSharing`.
   */
  takeShared (full: boolean): PresenceChange | null {
    const sharing = this.#sharing
    if (sharing === null) throw new Error('takeShared before startSharing')
    const states: SharedState[] = []
    const removed: Array<{ clientId: number, clock: number }> = []
    const users: SharedUser[] = []
    const left: string[] = []
    if (full) {
      sharing.ids.clear()
      sharing.users.clear()
      sharing.sent.clear()
      for (const [clientId, s] of this.#states) if (s.owner.node === null) states.push(this.#shared(clientId, s))
      for (const u of this.#localUsers(null).values()) {
        sharing.sent.set(u.userId, userKey(u))
        users.push(u)
      }
      return { full, states, removed, users, left }
    }
    for (const clientId of sharing.ids) {
      const s = this.#states.get(clientId)
      if (s !== undefined && s.owner.node === null) states.push(this.#shared(clientId, s))
      else removed.push({ clientId, clock: s !== undefined ? outClock(s) : this.#tombstones.get(clientId)?.outClock ?? 0 })
    }
    sharing.ids.clear()
    if (sharing.users.size > 0) {
      const now = this.#localUsers(sharing.users)
      for (const userId of sharing.users) {
        const u = now.get(userId)
        if (u === undefined) {
          if (sharing.sent.delete(userId)) left.push(userId)
          continue
        }
        const key = userKey(u)
        if (sharing.sent.get(userId) === key) continue
        sharing.sent.set(userId, key)
        users.push(u)
      }
      sharing.users.clear()
    }
    if (states.length + removed.length + users.length + left.length === 0) return null
    return { full, states, removed, users, left }
  }

  #shared (clientId: number, s: LiveState): SharedState {
    return { clientId, clock: outClock(s), json: s.json, userId: s.owner.peer.userId, role: s.role }
  }

  /** The records of the local users in `only` (all when null), from one pass over the connections. */
  #localUsers (only: ReadonlySet<string> | null): Map<string, SharedUser> {
    const since = this.#sharing?.guestSince
    const acc = new Map<string, { participant: boolean, guest: boolean, viewing: boolean }>()
    for (const conn of this.#conns.values()) {
      const userId = conn.peer.userId
      if (only !== null && !only.has(userId)) continue
      let a = acc.get(userId)
      if (a === undefined) acc.set(userId, a = { participant: false, guest: false, viewing: false })
      if (conn.peer.role === 'guest') {
        a.guest = true
        continue
      }
      a.participant = true
      if (a.viewing) continue
      if (conn.ids.size === 0) a.viewing = true
      for (const clientId of conn.ids) {
        const s = this.#states.get(clientId)
        if (s === undefined || stateFlag(s.json, 'viewing') !== false) a.viewing = true
      }
    }
    const out = new Map<string, SharedUser>()
    for (const [userId, a] of acc) out.set(userId, { userId, ...a, guestSince: a.guest ? since?.get(userId) ?? 0 : 0 })
    return out
  }

  /**
   * Applies what node `node` shared (cluster mode): its states are shown to the local peers as
   * any other peer's (participants' to everyone, guests' to participants), its users counted.
   * A `full` change replaces everything held of that node. A state whose client id a local
   * connection holds is kept aside and shown when that connection lets it go: a connection to
   * this node wins here, as the other node's wins there.
   */
  applyRemote (node: string, change: PresenceChange): void {
    if (this.#destroyed) return
    let view = this.#remote.get(node)
    if (view === undefined) this.#remote.set(node, view = { states: new Map(), users: new Map(), owners: new Map() })
    if (change.full) {
      const keepStates = new Set(change.states.map(s => s.clientId))
      const keepUsers = new Set(change.users.map(u => u.userId))
      for (const [clientId, s] of view.states) if (!keepStates.has(clientId)) this.#removeRemoteState(node, view, clientId, s.clock + 1)
      for (const userId of view.users.keys()) if (!keepUsers.has(userId)) this.#setRemoteUser(view, userId, undefined)
    }
    for (const u of change.users) this.#setRemoteUser(view, u.userId, u)
    for (const userId of change.left) this.#setRemoteUser(view, userId, undefined)
    for (const s of change.states) this.#setRemoteState(node, view, s)
    for (const r of change.removed) this.#removeRemoteState(node, view, r.clientId, r.clock)
    if (view.states.size === 0 && view.users.size === 0) this.#remote.delete(node)
    this.#summaryChanged()
  }

  /** Forgets everything node `node` shared (it withdrew, stopped or died): its states are removed here. */
  dropRemote (node: string): void {
    if (!this.#remote.has(node)) return
    this.applyRemote(node, { full: true, states: [], removed: [], users: [], left: [] })
  }

  /** The other nodes this hub holds presence of. */
  remoteNodes (): string[] {
    return Array.from(this.#remote.keys())
  }

  /**
   * Cluster mode, `maxGuests`: two nodes may each admit a guest in the same instant, each
   * before hearing of the other's. Ranks every guest user of the cluster by the wall-clock time
   * it joined (ties by user id; every node computes the same ranking from the same records) and
   * returns the local guest users ranked at `max` or beyond that joined at `recentSince` or
   * later: those the caller closes with GUEST_LIMIT. Guests connected for longer stay (as on
   * one node, lowering `maxGuests` closes nobody).
   */
  guestsOverLimit (max: number, recentSince: number): string[] {
    const sharing = this.#sharing
    if (sharing === null || this.#guestCount() <= max) return []
    // Over the cap for long (maxGuests was lowered): nothing to rank unless a local guest is new.
    let recent = false
    for (const t of sharing.guestSince.values()) if (t >= recentSince) { recent = true; break }
    if (!recent) return []
    const since = new Map(sharing.guestSince)
    for (const view of this.#remote.values()) {
      for (const u of view.users.values()) {
        if (u.guest) since.set(u.userId, Math.min(since.get(u.userId) ?? Number.POSITIVE_INFINITY, u.guestSince))
      }
    }
    const ranked = Array.from(since).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    const out: string[] = []
    for (let i = max; i < ranked.length; i++) {
      const [userId, t] = ranked[i]
      if (t >= recentSince && this.#guestUsers.has(userId)) out.push(userId)
    }
    return out
  }

  #setRemoteUser (view: RemoteView, userId: string, u: SharedUser | undefined): void {
    const before = view.users.get(userId)
    if (before !== undefined) {
      if (before.guest) this.#countRemoteUser(userId, true, -1)
      if (before.participant) this.#countRemoteUser(userId, false, -1)
    }
    if (u === undefined) {
      view.users.delete(userId)
      return
    }
    view.users.set(userId, u)
    if (u.guest) this.#countRemoteUser(userId, true, 1)
    if (u.participant) this.#countRemoteUser(userId, false, 1)
  }

  #setRemoteState (node: string, view: RemoteView, s: SharedState): void {
    if (s.clientId === this.#serverClientId) return
    view.states.set(s.clientId, s)
    const live = this.#states.get(s.clientId)
    if (live !== undefined && live.owner.node === null) return
    const key = `${s.role}\n${s.userId}`
    let owner = view.owners.get(key)
    if (owner === undefined) {
      owner = { peer: { connId: NO_CONN, userId: s.userId, role: s.role, send () {} }, ids: new Set(), node }
      view.owners.set(key, owner)
    }
    this.#set(owner, { clientId: s.clientId, clock: s.clock, json: s.json })
  }

  #removeRemoteState (node: string, view: RemoteView, clientId: number, clock: number): void {
    view.states.delete(clientId)
    const live = this.#states.get(clientId)
    if (live === undefined || live.owner.node !== node) return
    live.owner.ids.delete(clientId)
    this.#bury(clientId, live, Math.max(outClock(live) + 1, clock + live.offset), NO_CONN)
  }

  /** A state went away here: another node's state for the same client id, if any, takes its place. */
  #reinstate (clientId: number): void {
    for (const [node, view] of this.#remote) {
      const s = view.states.get(clientId)
      if (s !== undefined) {
        this.#setRemoteState(node, view, s)
        return
      }
    }
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
    this.#remote.clear()
    this.#remoteGuests.clear()
    this.#remoteParticipants.clear()
    this.#remoteOnlyGuests = 0
    this.#remoteOnlyParticipants = 0
    this.#sharing = null
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
      if (this.#sharing !== null && conn.node === null) this.#shareChange(e.clientId, conn)
      return
    }
    if (live.owner !== conn) {
      // Same user (checked in receive): a reconnect takes the id over, so the old connection's
      // leave will not remove it. In cluster mode also a reconnect from another node, either way.
      live.owner.ids.delete(e.clientId)
      if (this.#sharing !== null) {
        // The node holding it changed (or the user's connection on this node): share it even if its clock is stale.
        if (live.owner.node === null) this.#shareChange(e.clientId, live.owner)
        if (conn.node === null) this.#shareChange(e.clientId, conn)
      }
      if (live.owner.peer.userId !== conn.peer.userId) {
        decrement(this.#userStates, live.owner.peer.userId)
        increment(this.#userStates, conn.peer.userId)
      }
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
    if (this.#sharing !== null && conn.node === null) this.#shareChange(e.clientId, conn)
  }

  /** Notes a change of a local state for the other nodes (its user's `viewing` may change too). */
  #shareChange (clientId: number, conn: Conn): void {
    const sharing = this.#sharing
    if (sharing === null) return
    sharing.ids.add(clientId)
    if (conn.peer.role === 'participant') sharing.users.add(conn.peer.userId)
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
    if (this.#sharing !== null && s.owner.node === null) this.#shareChange(clientId, s.owner)
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
    if (this.#remote.size > 0) this.#reinstate(clientId)
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
    const json = JSON.stringify({ parley: { guestCount: this.#guestCount(), participantCount: this.#participantUsers.size + this.#remoteOnlyParticipants } })
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
