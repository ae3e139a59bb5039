/**
 * One admitted sync connection: reads protocol frames in order, answers sync step 1 once the
 * document is durable, hands updates to the room's judge and awareness to the presence hub,
 * and closes itself with a pinned code on any refusal.
 *
 * Frames are processed strictly in arrival order through a promise chain, so a sync step 1
 * answer (which waits for durability) never overtakes a later update of the same peer.
 *
 * Resource limits (docs/api.md, Limits): a peer that does not read cannot make the server hold
 * more than one sync answer plus `MAX_QUEUED_BYTES` for it:
 *   - what the peer has read is known from pongs: every ping carries the count of bytes sent
 *     before it, and a pong echoing it proves the peer read them (frames arrive in order); a
 *     probe ping goes out whenever more than `PROBE_BYTES` are unread. Kernel socket buffers
 *     (up to tens of MB on Linux) are counted too, unlike ws `bufferedAmount`;
 *   - a sync step 1 is answered only while at most `ANSWER_WINDOW_BYTES` are unread (the chain
 *     waits), and answers are paced by a byte budget;
 *   - frames waiting in the chain are capped (`MAX_BACKLOG_*`), over it: close 4429;
 *   - a send that would leave more than `MAX_QUEUED_BYTES` unread beyond the latest sync answer
 *     closes the connection with 1013 `SLOW_CONSUMER`;
 *   - only a pong to one of our pings proves the peer alive, never an inbound frame.
 * Messages written are charged to the user's rate limit (`rate-limit.ts`) before they apply.
 */
import type { WebSocket } from 'ws'
import type { Logger } from 'pino'
import * as Y from 'yjs'
import { ChatError, isChatError } from '../../shared/errors.ts'
import {
  encodePermissionDenied, encodeSyncStep1, encodeSyncStep2, readMessage, UnknownMessageTypeError
} from '../../shared/protocol.ts'
import type { Role } from '../../shared/schema.ts'
import type { Room, RoomConnection } from '../rooms/room.ts'
import type { PresencePeer, Timers } from '../presence/presence-hub.ts'
import type { Metrics } from '../metrics.ts'
import { slowModeOf, type MessageRateLimiter } from '../rate-limit.ts'

export interface ConnectionInfo {
  connId: number
  userId: string
  role: Role
  canWrite: boolean
  /** The name in the user's record, if any: presence shows it (see awareness-codec.ts). */
  recordName?: string | null
}

export interface ConnectionDeps {
  logger: Logger
  metrics: Metrics
  timers: Timers
  now: () => number
  limiter: MessageRateLimiter
}

/** How long a closing socket may take to finish the closing handshake before it is cut. */
const CLOSE_GRACE_MS = 2000
/** Unread bytes a peer may have beyond the latest sync answer before it is closed as a slow consumer. */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024
/** A sync step 1 is answered only once the peer has read all but this much of what it was sent. */
export const ANSWER_WINDOW_BYTES = 256 * 1024
/** Unread bytes above which a probe ping goes out (its pong says what the peer has read). */
const PROBE_BYTES = 256 * 1024
/** Pings whose pong is still awaited that are remembered (older ones are forgotten). */
const MAX_PINGS_OUT = 8
/** Frames, and their bytes, that may wait for processing (behind a sync answer in flight). */
export const MAX_BACKLOG_FRAMES = 1024
export const MAX_BACKLOG_BYTES = 4 * 1024 * 1024
/** Sync answers: a byte budget of this burst, refilled at this rate; each answer costs at least the minimum. */
export const SYNC_ANSWER_BURST_BYTES = 4 * 1024 * 1024
export const SYNC_ANSWER_BYTES_PER_SECOND = 1024 * 1024
const SYNC_ANSWER_MIN_COST = 1024
/** After a 4429 for messages, the user's new connections to the conversation are refused this long at least. */
export const RATE_LIMIT_PENALTY_MS = 10_000

export class SyncConnection implements RoomConnection, PresencePeer {
  readonly connId: number
  readonly userId: string
  readonly role: Role
  canWrite: boolean
  readonly recordName: string | null
  /** Set by a pong answering one of our pings; cleared by the heartbeat's ping. */
  alive = true
  private readonly ws: WebSocket
  private readonly room: Room
  private readonly deps: ConnectionDeps
  private chain: Promise<void> = Promise.resolve()
  private closing = false
  private backlogFrames = 0
  private backlogBytes = 0
  /** Bytes handed to the socket so far, and how many of them the peer has read (see `pong`). */
  private sentBytes = 0
  private ackedBytes = 0
  /** Payloads (`sentBytes` then) of the pings whose pongs are awaited, oldest first. */
  private readonly pingsOut: number[] = []
  /** `sentBytes` right after the latest sync answer, and its size. */
  private answerEnd = 0
  private answerBytes = 0
  private answerBudget = SYNC_ANSWER_BURST_BYTES
  private answerBudgetAt: number
  private peakUnread = 0
  /** Woken by a pong and by the close. */
  private readonly waiters = new Set<() => void>()

  constructor (ws: WebSocket, room: Room, info: ConnectionInfo, deps: ConnectionDeps) {
    this.ws = ws
    this.room = room
    this.deps = deps
    this.connId = info.connId
    this.userId = info.userId
    this.role = info.role
    this.canWrite = info.canWrite
    this.recordName = info.recordName ?? null
    this.answerBudgetAt = deps.now()
  }

  get isClosing (): boolean { return this.closing }

  /** Bytes sent that the peer has not acknowledged reading (by a pong to a later ping). */
  get unreadBytes (): number { return this.sentBytes - this.ackedBytes }

  /** The most unread bytes this connection ever had. */
  get peakUnreadBytes (): number { return this.peakUnread }

  /**
   * The heartbeat: a ping carrying how much was sent so far. Returns false when the previous
   * heartbeat got no pong: the caller cuts the socket. Inbound frames never count as alive.
   */
  heartbeat (): boolean {
    if (!this.alive) return false
    this.alive = false
    this.sendPing()
    return true
  }

  /**
   * A pong. One that echoes one of our pings proves the peer alive and that it read everything
   * sent before that ping (TCP and WebSocket frames arrive in order); any other is ignored.
   */
  pong (data: Buffer): void {
    const n = Number(data.toString('latin1'))
    const i = this.pingsOut.indexOf(n)
    if (data.byteLength === 0 || i < 0) return
    this.pingsOut.splice(0, i + 1)
    this.alive = true
    this.ackedBytes = Math.max(this.ackedBytes, n)
    this.wake()
    if (this.unreadBytes > PROBE_BYTES && this.pingsOut.length === 0) this.sendPing()
  }

  /** Starts the protocol: the server's sync step 1, then the presence the peer may see. */
  start (): void {
    if (this.room.isStalled) {
      // Storage is failing: tell the peer what is stored, so it sends back what the store lacks.
      this.chain = this.chain.then(async () => {
        const sv = await this.room.storedStateVector()
        if (!this.closing) this.send(encodeSyncStep1(sv))
      }).catch(e => { this.close(this.toChatError(e)) })
    } else {
      this.send(encodeSyncStep1(Y.encodeStateVector(this.room.doc)))
    }
    this.room.presence.join(this)
  }

  send (frame: Uint8Array): void {
    if (this.closing || this.ws.readyState !== this.ws.OPEN) return
    // The latest sync answer (the live window, possibly large) may be unread on top of the cap.
    const allowance = this.ackedBytes < this.answerEnd ? this.answerBytes : 0
    if (this.unreadBytes - allowance > MAX_QUEUED_BYTES) {
      this.close(new ChatError('SLOW_CONSUMER'))
      return
    }
    this.ws.send(frame)
    this.sentBytes += frame.byteLength
    this.deps.metrics.framesSent.inc()
    this.peakUnread = Math.max(this.peakUnread, this.unreadBytes)
    if (this.unreadBytes > PROBE_BYTES && this.pingsOut.length === 0) this.sendPing()
  }

  /** Queues a frame for in-order processing. Inbound frames do not prove liveness: pongs do. */
  receive (frame: Uint8Array, isBinary: boolean): void {
    if (this.closing) return
    this.backlogFrames++
    this.backlogBytes += frame.byteLength
    if (this.backlogFrames > MAX_BACKLOG_FRAMES || this.backlogBytes > MAX_BACKLOG_BYTES) {
      this.close(new ChatError('RATE_LIMITED', 'Too many frames waiting to be processed'))
      return
    }
    this.chain = this.chain.then(async () => {
      this.backlogFrames--
      this.backlogBytes -= frame.byteLength
      if (this.closing) return
      try {
        if (!isBinary) throw new ChatError('MALFORMED_MESSAGE', 'Frames must be binary')
        await this.process(frame)
      } catch (e) {
        this.close(this.toChatError(e))
      }
    })
  }

  close (error: ChatError): void {
    if (this.closing) return
    this.markClosed()
    if (this.ws.readyState === this.ws.OPEN) {
      if (error.closeCode >= 4000) {
        this.ws.send(encodePermissionDenied(error.code, error.message))
        this.deps.metrics.framesSent.inc()
      }
      this.ws.close(error.closeCode, error.code)
      // A peer that never answers the close would keep the socket (and what it sends) for 30 s.
      const timer = this.deps.timers.setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS)
      this.ws.once('close', () => this.deps.timers.clearTimeout(timer))
    } else {
      this.ws.terminate()
    }
    if (error.closeCode >= 4000) {
      this.deps.logger.info({ user: this.userId, conversation: this.room.id, role: this.role, code: error.code, closeCode: error.closeCode }, 'connection refused')
    }
  }

  /** Marks the connection closed without writing to the socket (it is already gone). */
  markClosed (): void {
    this.closing = true
    this.wake()
  }

  private wake (): void {
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const wake of waiters) wake()
  }

  private sendPing (): void {
    if (this.closing || this.ws.readyState !== this.ws.OPEN) return
    this.pingsOut.push(this.sentBytes)
    if (this.pingsOut.length > MAX_PINGS_OUT) this.pingsOut.shift()
    this.ws.ping(String(this.sentBytes))
  }

  /** Resolves after `ms`, or at once when the connection closes. */
  private async pause (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const timer = this.deps.timers.setTimeout(() => { this.waiters.delete(wake); resolve() }, ms)
      const wake = (): void => {
        if (!this.closing) { this.waiters.add(wake); return }
        this.deps.timers.clearTimeout(timer)
        resolve()
      }
      this.waiters.add(wake)
    })
  }

  /** Waits until the sync answer budget is no longer in debt. */
  private async answerTurn (): Promise<void> {
    for (;;) {
      const now = this.deps.now()
      this.answerBudget = Math.min(SYNC_ANSWER_BURST_BYTES, this.answerBudget + (now - this.answerBudgetAt) * SYNC_ANSWER_BYTES_PER_SECOND / 1000)
      this.answerBudgetAt = now
      if (this.answerBudget >= 0 || this.closing) return
      await this.pause(Math.ceil(-this.answerBudget * 1000 / SYNC_ANSWER_BYTES_PER_SECOND))
    }
  }

  /** Waits until the peer has read all but `ANSWER_WINDOW_BYTES` of what it was sent. */
  private async readByPeer (): Promise<void> {
    while (!this.closing && this.unreadBytes > ANSWER_WINDOW_BYTES) {
      if (this.pingsOut.length === 0) this.sendPing()
      await new Promise<void>(resolve => this.waiters.add(resolve))
    }
  }

  /** Sends a sync answer: it alone may be unread on top of `MAX_QUEUED_BYTES` until acknowledged. */
  private sendAnswer (frame: Uint8Array): void {
    this.answerBudget -= Math.max(SYNC_ANSWER_MIN_COST, frame.byteLength)
    this.answerBytes = frame.byteLength
    this.answerEnd = this.sentBytes + frame.byteLength
    this.send(frame)
  }

  private async process (frame: Uint8Array): Promise<void> {
    const msg = readMessage(frame)
    switch (msg.type) {
      case 'sync':
        if (msg.subtype === 'step1') {
          await this.answerTurn()
          await this.readByPeer()
          if (this.closing) return
          const answer = await this.room.syncStep2For(msg.stateVector)
          if (this.closing) return
          this.sendAnswer(encodeSyncStep2(answer))
        } else {
          await this.room.receiveUpdate(this, msg.update, { catchUp: msg.subtype === 'step2', admit: n => this.chargeMessages(n) })
        }
        return
      case 'awareness':
        this.room.presence.receive(this, msg.update)
        return
      case 'auth':
        // Clients have nothing to say in the auth channel; the stock client never sends it.
        return
    }
  }

  /** Charges `count` written messages to this user's allowance here; throws RATE_LIMITED. */
  private chargeMessages (count: number): void {
    const wait = this.deps.limiter.charge(this.room.id, new Map([[this.userId, count]]), slowModeOf(this.room.doc))
    if (wait > 0) {
      const penalty = Math.max(wait, RATE_LIMIT_PENALTY_MS)
      this.deps.limiter.block(this.room.id, this.userId, penalty)
      throw new ChatError('RATE_LIMITED', `Too many messages: retry in ${Math.ceil(penalty / 1000)} s`)
    }
  }

  private toChatError (e: unknown): ChatError {
    if (isChatError(e)) return e
    if (e instanceof UnknownMessageTypeError) return new ChatError('UNKNOWN_MESSAGE_TYPE', e.message)
    // lib0 decoding errors and Yjs state-vector decoding of garbage land here.
    return new ChatError('MALFORMED_MESSAGE')
  }
}
