/**
 * What a node of a cluster checks against the store, whatever the bus says. The control
 * messages (settings changed, conversation deleted, bans changed, close a user's connections)
 * travel only on the bus, which may lose them (Redis restarting or unreachable, a node's own
 * connection to it down while the others' are up). The store is the truth and the bus a hint:
 *
 * - the settings are read again on every tick (`tickMs`, one read): a change made on another
 *   node applies here within a tick even while Redis is down;
 * - every `fullMs`, and at once when the bus reports a gap (a reconnection to Redis) and once
 *   more a tick later (in case a message was published while the subscription was being
 *   renewed), a full check: the settings; every cached ban forgotten (the next admission reads
 *   them again); for each loaded conversation with connections, whether it still exists
 *   (deleted elsewhere: its connections are closed with 4404 and the copy forgotten), the bans
 *   of each connected user (banned: closed with `BANNED`), and every connection's rights against
 *   the caught-up document and the settings (`Room.reevaluate`).
 *
 * A kick (`DELETE …/guests/:userId`) is not stored: one whose message is lost closes the guest
 * only on the node that served it.
 */
import type { Logger } from 'pino'
import { ChatError } from '../../shared/errors.ts'
import { metaOf } from '../../shared/doc.ts'
import type { Timers } from '../presence/types.ts'
import type { Room } from '../rooms/room.ts'
import type { RoomManager } from '../rooms/room-manager.ts'

/** What the node reads again from the store. */
export interface ReconcileHooks {
  rooms: RoomManager
  /** Reads the settings again (and applies them to the live connections when they changed). */
  reloadSettings: () => Promise<void>
  /** Forgets what memory holds of every conversation's bans. */
  forgetAllBans: () => void
  /** Whether the conversation's record is stored (false: deleted). */
  conversationExists: (conv: string) => Promise<boolean>
  /** Whether a ban on the user is in force, as stored (after `forgetAllBans`). */
  isBanned: (conv: string, userId: string) => Promise<boolean>
}

export interface ReconcileOptions {
  /** How often the settings are read again (ms). */
  tickMs: number
  /** How often the full check runs whatever the bus says (ms). */
  fullMs: number
}

export class Reconciler {
  private readonly hooks: ReconcileHooks
  private readonly logger: Logger
  private readonly timers: Timers
  private readonly opts: ReconcileOptions
  private tickTimer: unknown = null
  private fullTimer: unknown = null
  private readonly later = new Set<unknown>()
  private running: Promise<void> | null = null
  /** A full check was asked while one ran: run again once it ends (what it read may be older). */
  private again = false
  private reading = false

  constructor (hooks: ReconcileHooks, logger: Logger, timers: Timers, opts: ReconcileOptions) {
    this.hooks = hooks
    this.logger = logger
    this.timers = timers
    this.opts = opts
  }

  start (): void {
    this.tickTimer = this.timers.setInterval(() => { void this.settings() }, this.opts.tickMs)
    this.fullTimer = this.timers.setInterval(() => { void this.full() }, this.opts.fullMs)
  }

  stop (): void {
    if (this.tickTimer !== null) this.timers.clearInterval(this.tickTimer)
    if (this.fullTimer !== null) this.timers.clearInterval(this.fullTimer)
    for (const t of this.later) this.timers.clearTimeout(t)
    this.later.clear()
    this.tickTimer = this.fullTimer = null
  }

  /** The bus lost messages (a reconnection): check everything now, and once more a tick later. */
  afterGap (): void {
    void this.full()
    const t = this.timers.setTimeout(() => {
      this.later.delete(t)
      void this.full()
    }, this.opts.tickMs)
    this.later.add(t)
  }

  /** Reads the settings again (at most one read at a time). */
  async settings (): Promise<void> {
    if (this.reading) return
    this.reading = true
    try {
      await this.hooks.reloadSettings()
    } catch (err) {
      this.logger.debug({ err }, 'cannot read the settings again (the next tick retries)')
    } finally {
      this.reading = false
    }
  }

  /** The full check (one at a time; asked again meanwhile, it runs once more after). */
  async full (): Promise<void> {
    if (this.running !== null) {
      this.again = true
      return await this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        try {
          await this.checkAll()
        } catch (err) {
          this.logger.debug({ err }, 'cluster check against the store failed (the next one retries)')
        }
      } while (this.again)
    })().finally(() => { this.running = null })
    await this.running
  }

  private async checkAll (): Promise<void> {
    await this.hooks.reloadSettings()
    this.hooks.forgetAllBans()
    for (const room of this.hooks.rooms.loaded()) {
      if (!room.closed && room.connectionCount > 0) await this.checkRoom(room)
    }
  }

  private async checkRoom (room: Room): Promise<void> {
    // A conversation being created (or written) here has no record until its flush commits:
    // judge only a copy that holds a committed creation and did not move during the read.
    const seq = room.durableSeq
    const settled = !room.hasUnflushed && metaOf(room.doc).has('createdAt')
    const exists = await this.hooks.conversationExists(room.id)
    if (room.closed) return
    if (!exists && settled && !room.hasUnflushed && room.durableSeq === seq) {
      this.logger.info({ conversation: room.id }, 'conversation deleted on another node (its message was lost): closing its connections')
      this.hooks.rooms.evict(room.id, new ChatError('CONVERSATION_DELETED'))
      return
    }
    for (const conn of [...room.connections()]) {
      if (await this.hooks.isBanned(room.id, conn.userId)) conn.close(new ChatError('BANNED'))
    }
    room.reevaluate()
  }
}
