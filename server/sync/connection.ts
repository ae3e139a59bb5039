/**
 * One admitted sync connection: reads protocol frames in order, answers sync step 1 once the
 * document is durable, hands updates to the room's judge and awareness to the presence hub,
 * and closes itself with a pinned code on any refusal.
 *
 * Frames are processed strictly in arrival order through a promise chain, so a sync step 1
 * answer (which waits for durability) never overtakes a later update of the same peer.
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
}

/** How long a closing socket may take to finish the closing handshake before it is cut. */
const CLOSE_GRACE_MS = 2000

export class SyncConnection implements RoomConnection, PresencePeer {
  readonly connId: number
  readonly userId: string
  readonly role: Role
  canWrite: boolean
  readonly recordName: string | null
  /** Set by the heartbeat; cleared when a ping goes out. */
  alive = true
  private readonly ws: WebSocket
  private readonly room: Room
  private readonly deps: ConnectionDeps
  private chain: Promise<void> = Promise.resolve()
  private closing = false

  constructor (ws: WebSocket, room: Room, info: ConnectionInfo, deps: ConnectionDeps) {
    this.ws = ws
    this.room = room
    this.deps = deps
    this.connId = info.connId
    this.userId = info.userId
    this.role = info.role
    this.canWrite = info.canWrite
    this.recordName = info.recordName ?? null
  }

  get isClosing (): boolean { return this.closing }

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
    this.ws.send(frame)
    this.deps.metrics.framesSent.inc()
  }

  /** Queues a frame for in-order processing. */
  receive (frame: Uint8Array, isBinary: boolean): void {
    this.alive = true
    this.chain = this.chain.then(async () => {
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
    this.closing = true
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
  }

  private async process (frame: Uint8Array): Promise<void> {
    const msg = readMessage(frame)
    switch (msg.type) {
      case 'sync':
        if (msg.subtype === 'step1') {
          const answer = await this.room.syncStep2For(msg.stateVector)
          if (this.closing) return
          this.send(encodeSyncStep2(answer))
        } else {
          await this.room.receiveUpdate(this, msg.update, msg.subtype === 'step2')
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

  private toChatError (e: unknown): ChatError {
    if (isChatError(e)) return e
    if (e instanceof UnknownMessageTypeError) return new ChatError('UNKNOWN_MESSAGE_TYPE', e.message)
    // lib0 decoding errors and Yjs state-vector decoding of garbage land here.
    return new ChatError('MALFORMED_MESSAGE')
  }
}
