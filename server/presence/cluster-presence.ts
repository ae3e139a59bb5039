/**
 * Presence across the nodes of a cluster (docs/cluster.md, "Presence"). Once per tick
 * (`tickMs`, default 250 ms) this node takes, from every loaded conversation's hub, what changed
 * in its own connections' presence (`PresenceHub.takeShared`), writes it to the board in one
 * Redis transaction, and then sends it all in one bus message (channel `presence`): never one
 * Redis command or message per awareness change. The other nodes apply it to their hubs
 * (`applyRemote`), which show those states to their peers as any other peer's.
 *
 * Order and gaps. Each node numbers its ticks (`version`); a conversation's entry in a message
 * says on top of which version of that node's record it applies. A receiver that holds another
 * version (it missed a message, or the bus reconnected) reads the records whole from the board,
 * and so does a node loading a conversation (before its first peer joins). Bus messages that
 * arrive during such a read are held and applied after it.
 *
 * Failure. A node's board keys expire `ttlMs` after its last tick; the others check the
 * liveness key of every node they hold presence of on each tick and forget a node whose key is
 * gone. A node that stops says so on the bus and deletes its keys.
 */
import type { Logger } from 'pino'
import { ChatError } from '../../shared/errors.ts'
import type { Role } from '../../shared/schema.ts'
import type { Bus } from '../bus/port.ts'
import type { PresenceBoard } from '../bus/presence-board.ts'
import type { PresenceHub, PresenceChange, Timers } from './presence-hub.ts'
import { decodeNodeShare, encodeNodeShare, EMPTY_CHANGE, type ConvShare, type NodeRecord, type NodeShare } from './shared-codec.ts'

export const PRESENCE_CHANNEL = 'presence'

/** What cluster presence needs of a loaded room. */
export interface PresenceRoom {
  readonly id: string
  readonly closed: boolean
  readonly presence: PresenceHub
  closeUser (userId: string, error: ChatError, role?: Role): number
}

export interface ClusterPresenceDeps {
  node: string
  bus: Bus
  board: PresenceBoard
  timers: Timers
  logger: Logger
  /** Every loaded room. */
  rooms: () => readonly PresenceRoom[]
  /** The room of `conv` if it is loaded. */
  room: (conv: string) => PresenceRoom | undefined
  maxGuests: () => number
  /** Wall-clock ms (ranks guests between nodes). */
  wallNow: () => number
  tickMs?: number
}

/**
 * How long after joining a guest may still be closed with GUEST_LIMIT because another node
 * admitted one in the same instant (`PresenceHub.guestsOverLimit`): a few ticks, with room for
 * a slow Redis.
 */
export const GUEST_RACE_WINDOW_MS = 5000

/** Longest a room's load waits for the other nodes' presence; past it the next tick reads it. */
export const ATTACH_WAIT_MS = 500

/** What this node holds of the others' records of one conversation. */
interface ConvSync {
  readonly hub: PresenceHub
  /** The version of each other node's record applied. */
  readonly versions: Map<string, number>
  /** Reading the records whole: bus messages wait in `held`. */
  reading: boolean
  held: Array<{ node: string, version: number, share: ConvShare }>
}

export class ClusterPresence {
  private readonly deps: ClusterPresenceDeps
  private readonly tickMs: number
  private version = 0
  /** Conversations where this node has a record on the board, with the hub that wrote it and its version. */
  private readonly written = new Map<string, { hub: PresenceHub, version: number }>()
  private readonly syncs = new Map<string, ConvSync>()
  /** Conversations to read whole on the next tick. */
  private readonly toRead = new Set<string>()
  /** Nodes found dead or gone: what they still have on the board is ignored. */
  private readonly dead = new Set<string>()
  private timer: unknown = null
  private off: (() => void) | null = null
  private ticking = false

  constructor (deps: ClusterPresenceDeps) {
    this.deps = deps
    this.tickMs = deps.tickMs ?? 250
  }

  start (): void {
    this.off = this.deps.bus.subscribe(PRESENCE_CHANNEL, m => { this.onMessage(m) })
    this.deps.bus.onGap(() => { for (const conv of this.syncs.keys()) this.wantRead(conv) })
    this.timer = this.deps.timers.setInterval(() => { void this.tick() }, this.tickMs)
  }

  /** Stops; tells the others to forget this node at once (best effort). */
  stop (): void {
    if (this.timer !== null) this.deps.timers.clearInterval(this.timer)
    this.timer = null
    this.off?.()
    this.off = null
    this.deps.bus.publish(PRESENCE_CHANNEL, encodeNodeShare({ node: this.deps.node, version: ++this.version, gone: true, convs: [] }))
    this.deps.board.withdrawAll(this.deps.node, [...this.written.keys()]).catch(() => {})
    this.written.clear()
  }

  /**
   * A room was loaded: reads the other nodes' presence of it before its first peer joins, so
   * the peer sees it at once and `maxGuests` counts it. Redis trouble only delays it (next tick).
   */
  async attach (room: PresenceRoom): Promise<void> {
    room.presence.startSharing(this.deps.wallNow)
    const sync: ConvSync = { hub: room.presence, versions: new Map(), reading: true, held: [] }
    this.syncs.set(room.id, sync)
    const read = this.deps.board.read(this.deps.node, [room.id]).then(records => {
      if (this.syncs.get(room.id) === sync && sync.reading) this.applyRecords(room.id, sync, records.get(room.id) ?? new Map())
    }, err => {
      this.deps.logger.debug({ err, conversation: room.id }, 'cannot read the other nodes’ presence yet')
      if (this.syncs.get(room.id) === sync) this.toRead.add(room.id)
    })
    // A Redis that does not answer must not hold the room's load (its peers) for long.
    let timer: unknown = null
    const late = new Promise<void>(resolve => { timer = this.deps.timers.setTimeout(resolve, ATTACH_WAIT_MS) })
    await Promise.race([read, late])
    this.deps.timers.clearTimeout(timer)
    if (sync.reading) this.toRead.add(room.id)
  }

  private wantRead (conv: string): void {
    const sync = this.syncs.get(conv)
    if (sync === undefined) return
    sync.reading = true
    this.toRead.add(conv)
  }

  private onMessage (text: string): void {
    const share = decodeNodeShare(text)
    if (share === null || share.node === this.deps.node) return
    if (share.gone) {
      this.forgetNode(share.node)
      return
    }
    this.dead.delete(share.node)
    for (const c of share.convs) {
      const sync = this.syncFor(c.conv)
      if (sync === null) continue
      if (sync.reading) sync.held.push({ node: share.node, version: share.version, share: c })
      else this.applyShare(c.conv, sync, share.node, share.version, c)
    }
  }

  /** The sync of a loaded conversation (a new one, to be read whole, if its room was reloaded). */
  private syncFor (conv: string): ConvSync | null {
    const room = this.deps.room(conv)
    const sync = this.syncs.get(conv)
    if (sync !== undefined && (room === undefined || sync.hub === room.presence)) return sync
    if (room === undefined || room.closed) return null
    room.presence.startSharing(this.deps.wallNow)
    const fresh: ConvSync = { hub: room.presence, versions: new Map(), reading: true, held: [] }
    this.syncs.set(conv, fresh)
    this.toRead.add(conv)
    return fresh
  }

  private applyShare (conv: string, sync: ConvSync, node: string, version: number, c: ConvShare): void {
    if (c.withdrawn) {
      sync.versions.delete(node)
      sync.hub.dropRemote(node)
    } else if (c.change.full) {
      sync.versions.set(node, version)
      sync.hub.applyRemote(node, c.change)
    } else {
      const known = sync.versions.get(node)
      if (known !== undefined && version <= known) return // already in what was read
      if (known !== c.base) {
        // A message of that node was missed: read its record whole.
        this.wantRead(conv)
        return
      }
      sync.versions.set(node, version)
      sync.hub.applyRemote(node, c.change)
    }
    this.enforceMaxGuests(conv)
  }

  private applyRecords (conv: string, sync: ConvSync, records: ReadonlyMap<string, NodeRecord>): void {
    for (const node of sync.hub.remoteNodes()) {
      if (!records.has(node)) {
        sync.versions.delete(node)
        sync.hub.dropRemote(node)
      }
    }
    for (const [node, record] of records) {
      if (this.dead.has(node)) continue
      sync.versions.set(node, record.version)
      sync.hub.applyRemote(node, record.change)
    }
    sync.reading = false
    const held = sync.held
    sync.held = []
    for (const h of held) {
      if (sync.reading) sync.held.push(h)
      else this.applyShare(conv, sync, h.node, h.version, h.share)
    }
    this.enforceMaxGuests(conv)
  }

  /** Closes the local guests admitted past `maxGuests` in a race with another node (see the hub). */
  private enforceMaxGuests (conv: string): void {
    const room = this.deps.room(conv)
    if (room === undefined || room.closed) return
    for (const userId of room.presence.guestsOverLimit(this.deps.maxGuests(), this.deps.wallNow() - GUEST_RACE_WINDOW_MS)) {
      room.closeUser(userId, new ChatError('GUEST_LIMIT'), 'guest')
    }
  }

  private forgetNode (node: string): void {
    this.dead.add(node)
    for (const sync of this.syncs.values()) {
      sync.versions.delete(node)
      sync.hub.dropRemote(node)
    }
  }

  /** One tick: share this node's changes, check the others are alive, read what must be read. */
  private async tick (): Promise<void> {
    if (this.ticking) return
    this.ticking = true
    try {
      await this.share()
      await this.readWanted()
    } catch (err) {
      this.deps.logger.debug({ err }, 'presence tick failed')
    } finally {
      this.ticking = false
    }
  }

  private async share (): Promise<void> {
    const version = ++this.version
    const changes = new Map<string, PresenceChange>()
    const convs: ConvShare[] = []
    const renew: string[] = []
    const withdraw: string[] = []
    const loaded = new Set<string>()
    for (const room of this.deps.rooms()) {
      if (room.closed) continue
      loaded.add(room.id)
      const hub = room.presence
      hub.startSharing(this.deps.wallNow)
      // Forget the syncs of rooms that were unloaded (or reloaded: a new hub).
      const sync = this.syncs.get(room.id)
      if (sync === undefined || sync.hub !== hub) this.syncFor(room.id)
      let w = this.written.get(room.id)
      if (w !== undefined && w.hub !== hub) w = undefined
      if (hub.localUserCount() === 0) {
        // Nothing of this node there: its record goes (the others drop what they held of it).
        hub.discardShared()
        if (this.written.delete(room.id)) {
          withdraw.push(room.id)
          convs.push({ conv: room.id, base: 0, withdrawn: true, change: EMPTY_CHANGE })
        }
        continue
      }
      const change = hub.takeShared(w === undefined)
      if (change === null) {
        renew.push(room.id)
        continue
      }
      changes.set(room.id, change)
      convs.push({ conv: room.id, base: w?.version ?? 0, withdrawn: false, change })
      this.written.set(room.id, { hub, version })
    }
    for (const conv of [...this.written.keys()]) {
      if (loaded.has(conv)) continue
      this.written.delete(conv)
      withdraw.push(conv)
      convs.push({ conv, base: 0, withdrawn: true, change: EMPTY_CHANGE })
    }
    for (const conv of [...this.syncs.keys()]) if (!loaded.has(conv)) this.syncs.delete(conv)
    const watch = new Set<string>()
    for (const sync of this.syncs.values()) for (const node of sync.hub.remoteNodes()) watch.add(node)
    let result
    try {
      result = await this.deps.board.tick(this.deps.node, { version, changes, renew, withdraw, watch: [...watch] })
    } catch (err) {
      // What was taken is lost with the tick: every record is written whole on the next one.
      this.written.clear()
      throw err
    }
    for (const conv of result.expired) this.written.delete(conv)
    for (const node of result.dead) this.forgetNode(node)
    if (convs.length > 0) {
      const share: NodeShare = { node: this.deps.node, version, gone: false, convs }
      this.deps.bus.publish(PRESENCE_CHANNEL, encodeNodeShare(share))
    }
  }

  private async readWanted (): Promise<void> {
    if (this.toRead.size === 0) return
    const convs = [...this.toRead].filter(conv => this.syncs.has(conv))
    this.toRead.clear()
    let records
    try {
      records = await this.deps.board.read(this.deps.node, convs)
    } catch (err) {
      for (const conv of convs) this.toRead.add(conv)
      throw err
    }
    for (const conv of convs) {
      const sync = this.syncs.get(conv)
      if (sync !== undefined) this.applyRecords(conv, sync, records.get(conv) ?? new Map())
    }
  }
}
