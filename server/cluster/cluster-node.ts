/**
 * One node of a cluster (`--postgres` + `--redis`): loads conversations as ClusterRooms, tells
 * the other nodes what it committed and what changed outside documents (NodePeers), and applies
 * what they tell it. Channels (each prefixed by the bus):
 *   `commit`   {"c": conv, "s": seq, "u"?: base64 bytes}: entry `s` of `c` is committed
 *   `control`  {"n": node, "t": "settings" | "deleted" | "bans" | "close", ...}
 * Every loaded room also reads the store once per `catchUpMs` (default 1 s) and after the bus
 * lost messages (a Redis reconnection), so a dropped message delays, never loses, an update.
 * Likewise for the control messages: the settings are read again every `catchUpMs`, and rights,
 * bans and deletions checked against the store every `checkMs` and after a gap (reconcile.ts).
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { ChatError, ERRORS, type ErrorCode } from '../../shared/errors.ts'
import type { Role } from '../../shared/schema.ts'
import type { Bus } from '../bus/port.ts'
import type { Timers } from '../presence/presence-hub.ts'
import type { Room, RoomDeps } from '../rooms/room.ts'
import type { RoomManager } from '../rooms/room-manager.ts'
import type { ExclusiveLog } from '../storage/port.ts'
import { ClusterRoom } from './cluster-room.ts'
import type { NodePeers } from './peers.ts'
import type { PresenceBoard } from '../bus/presence-board.ts'
import { ClusterPresence } from '../presence/cluster-presence.ts'
import { Reconciler, type ReconcileHooks } from './reconcile.ts'

export interface ClusterOptions {
  bus: Bus
  log: ExclusiveLog
  /** How often every loaded room reads what others committed, whatever the bus said (ms). */
  catchUpMs?: number
  /** Where the nodes pool their presence (server/presence/cluster-presence.ts). Absent: presence stays per node. */
  board?: PresenceBoard
  /** How often this node shares its presence changes (ms, default 250). */
  presenceMs?: number
  /** How often rights, bans and deletions are checked against the store whatever the bus said (ms, default 5 s). */
  checkMs?: number
}

/** Updates up to this size travel on the bus (the fast path); larger ones are read from the store. */
const MAX_INLINE_BYTES = 32 * 1024

/** What a node applies of the others' control messages. */
export interface ClusterHooks extends ReconcileHooks {
  rooms: RoomManager
  reloadSettings: () => Promise<void>
  forgetBans: (conv: string) => void
  /** The `maxGuests` setting now. */
  maxGuests: () => number
}

type Control =
  | { t: 'settings' }
  | { t: 'deleted', c: string }
  | { t: 'bans', c: string }
  | { t: 'close', c: string, u: string, code: string, role?: Role }

export class ClusterNode implements NodePeers {
  readonly id = randomUUID()
  private readonly bus: Bus
  private readonly log: ExclusiveLog
  private readonly catchUpMs: number
  private readonly logger: Logger
  private readonly timers: Timers
  private hooks: ClusterHooks | null = null
  private readonly offs: Array<() => void> = []
  private timer: unknown = null
  private readonly checkMs: number
  private reconciler: Reconciler | null = null
  private readonly board: PresenceBoard | null
  private readonly presenceMs: number
  private presence: ClusterPresence | null = null

  constructor (opts: ClusterOptions, logger: Logger, timers: Timers) {
    this.bus = opts.bus
    this.log = opts.log
    this.catchUpMs = opts.catchUpMs ?? 1000
    this.checkMs = opts.checkMs ?? 5000
    this.board = opts.board ?? null
    this.presenceMs = opts.presenceMs ?? 250
    this.logger = logger
    this.timers = timers
  }

  /** RoomManager's loader in cluster mode. */
  readonly loadRoom = async (id: string, deps: RoomDeps): Promise<Room> => {
    const room = await ClusterRoom.loadClustered(id, deps, {
      log: this.log,
      hearing: () => this.bus.hearing(),
      announce: (conv, seq, update) => {
        const u = update.byteLength <= MAX_INLINE_BYTES ? Buffer.from(update.buffer, update.byteOffset, update.byteLength).toString('base64') : undefined
        this.bus.publish('commit', JSON.stringify({ c: conv, s: seq, u }))
      }
    })
    // The other nodes' presence, before the first peer joins (it sees it, maxGuests counts it).
    await this.presence?.attach(room)
    return room
  }

  start (hooks: ClusterHooks): void {
    this.hooks = hooks
    this.offs.push(this.bus.subscribe('commit', m => { this.onCommit(m) }))
    this.offs.push(this.bus.subscribe('control', m => { this.onControl(m) }))
    const reconciler = this.reconciler = new Reconciler(hooks, this.logger, this.timers, { tickMs: this.catchUpMs, fullMs: this.checkMs })
    reconciler.start()
    this.bus.onGap(() => {
      this.catchUpAll()
      reconciler.afterGap()
    })
    this.timer = this.timers.setInterval(() => { this.catchUpAll() }, this.catchUpMs)
    if (this.board !== null) {
      this.presence = new ClusterPresence({
        node: this.id,
        bus: this.bus,
        board: this.board,
        timers: this.timers,
        logger: this.logger,
        rooms: () => hooks.rooms.loaded(),
        room: conv => hooks.rooms.peek(conv),
        maxGuests: hooks.maxGuests,
        wallNow: Date.now,
        tickMs: this.presenceMs
      })
      this.presence.start()
    }
  }

  stop (): void {
    if (this.timer !== null) this.timers.clearInterval(this.timer)
    this.presence?.stop()
    this.presence = null
    this.reconciler?.stop()
    this.timer = null
    for (const off of this.offs.splice(0)) off()
  }

  settingsChanged (): void { this.control({ t: 'settings' }) }
  conversationDeleted (conv: string): void { this.control({ t: 'deleted', c: conv }) }
  bansChanged (conv: string): void { this.control({ t: 'bans', c: conv }) }
  closeUser (conv: string, userId: string, code: ErrorCode, role?: Role): void { this.control({ t: 'close', c: conv, u: userId, code, role }) }

  private control (message: Control): void {
    this.bus.publish('control', JSON.stringify({ ...message, n: this.id }))
  }

  private catchUpAll (): void {
    for (const room of this.hooks?.rooms.loaded() ?? []) (room as ClusterRoom).requestCatchUp()
  }

  private onCommit (message: string): void {
    let m: { c: string, s: number, u?: string }
    try {
      m = JSON.parse(message)
    } catch {
      return
    }
    const room = this.hooks?.rooms.peek(m.c) as ClusterRoom | undefined
    room?.remoteCommitted(m.s, typeof m.u === 'string' ? new Uint8Array(Buffer.from(m.u, 'base64')) : null)
  }

  private onControl (message: string): void {
    let m: Control & { n: string }
    try {
      m = JSON.parse(message)
    } catch {
      return
    }
    const hooks = this.hooks
    if (hooks === null || m.n === this.id) return
    switch (m.t) {
      case 'settings':
        hooks.reloadSettings().catch(err => this.logger.warn({ err }, 'cannot reload the settings another node changed'))
        return
      case 'deleted':
        hooks.forgetBans(m.c)
        hooks.rooms.evict(m.c, new ChatError('CONVERSATION_DELETED'))
        return
      case 'bans':
        hooks.forgetBans(m.c)
        return
      case 'close':
        if (m.code in ERRORS) hooks.rooms.peek(m.c)?.closeUser(m.u, new ChatError(m.code as ErrorCode), m.role)
    }
  }
}
