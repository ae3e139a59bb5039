/**
 * One conversation's sync connection, speaking the y-websocket protocol itself (the stock
 * provider has no jitter, no typed refusals and no acknowledgment), with:
 *
 * - Refusals. The server sends an auth message (type 2) whose reason is JSON `{code,message}`
 *   and closes with 44xx. Such a close is final: the transport emits `error` with a ChatError of
 *   that code and does not reconnect. One exception: TOKEN_EXPIRED when the session can fetch a
 *   fresh token is retried once at once.
 * - Reconnects. Any other close, a socket that received nothing for `watchdogMs` (the server
 *   sends at least one frame every 15 s) and the browser going back online reconnect, after a
 *   jittered exponential delay (`backoff.ts`). The token is fetched anew for every attempt.
 * - Offline. When the browser reports offline the socket is dropped at once (browsers keep
 *   sockets open for a long time on a dead network) and nothing is retried until it is online.
 * - Acknowledgment. The server processes a connection's frames in order and answers a sync
 *   step 1 only once everything it applied before is durable. So after sending document data
 *   the transport sends a step 1 "probe" and remembers the state vector it had transmitted by
 *   then; when the matching step 2 arrives (answers come in the order of the probes), that
 *   state vector is durable on the server and is emitted as `acked`.
 * - Order of data. Local updates go out only once the socket is caught up (the server's step 1
 *   has been answered with everything it lacks); before that they would depend on structs the
 *   server has not seen (refused as MISSING_DEPENDENCIES), and the step 2 answer carries them.
 */
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { ObservableV2 } from 'lib0/observable'
import { ChatError, isErrorCode, type ErrorCode } from '../shared/errors.ts'
import { encodeAwareness, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate, readMessage } from '../shared/protocol.ts'
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts'
import type { TokenKeeper } from './token.ts'

/** The part of the WebSocket interface the transport uses (browser WebSocket and `ws` both fit). */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number, reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
  send (data: Uint8Array): void
  close (code?: number, reason?: string): void
}
export type WebSocketCtor = new (url: string) => WebSocketLike

/** Tells whether the network is up (the browser's `online`/`offline` events). */
export interface NetworkSignal {
  isOnline (): boolean
  /** Calls `fn` on every change; returns the unsubscribe function. */
  subscribe (fn: (online: boolean) => void): () => void
}

export interface ClientTimers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (h: unknown): void
}

/**
 * `connecting`: opening a socket or waiting to retry; `connected`: open, first sync running;
 * `synced`: caught up both ways; `offline`: the network is down, waiting for it;
 * `closed`: refused for good (see `error`) or closed by the app.
 */
export type ConnectionStatus = 'connecting' | 'connected' | 'synced' | 'offline' | 'closed'

export interface TransportOptions {
  /** `ws://host:port` or `wss://…`, without a path. */
  wsUrl: string
  conversationId: string
  asGuest: boolean
  tokens: TokenKeeper
  WebSocket: WebSocketCtor
  doc: Y.Doc
  awareness: awarenessProtocol.Awareness
  random: () => number
  timers: ClientTimers
  backoff?: BackoffOptions
  network?: NetworkSignal | null
  /** Reconnect when nothing arrived for this long, in ms. */
  watchdogMs?: number
}

export interface TransportEvents {
  status: (status: ConnectionStatus) => void
  /** A state vector the server holds durably: everything sent below it is stored. */
  acked: (stateVector: Map<number, number>) => void
  /** A final refusal; the transport is closed. */
  error: (error: ChatError) => void
  /** The connection was lost: the next attempt starts in `delayMs`. */
  retry: (delayMs: number) => void
}

const CODE_BY_CLOSE: Record<number, ErrorCode> = {
  4400: 'MALFORMED_MESSAGE',
  4401: 'TOKEN_INVALID',
  4403: 'FORBIDDEN',
  4404: 'CONVERSATION_NOT_FOUND',
  4409: 'GUEST_LIMIT',
  4413: 'FRAME_TOO_LARGE'
}

/** The ChatError of a 44xx close: the auth message's code, else the close reason, else the close code's family. */
export const refusalOf = (closeCode: number, closeReason: string, authReason: string | null): ChatError => {
  if (authReason !== null) {
    try {
      const r: unknown = JSON.parse(authReason)
      if (typeof r === 'object' && r !== null) {
        const { code, message } = r as { code?: unknown, message?: unknown }
        if (isErrorCode(code)) return new ChatError(code, typeof message === 'string' ? message : undefined)
      }
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e
    }
  }
  if (isErrorCode(closeReason)) return new ChatError(closeReason)
  return new ChatError(CODE_BY_CLOSE[closeCode] ?? 'FORBIDDEN', `Closed by the server with ${closeCode}`)
}

const isFinalClose = (code: number): boolean => code >= 4400 && code < 4500

const toBytes = (data: unknown): Uint8Array | null => {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (data instanceof Uint8Array) return data
  return null
}

const stateVectorOf = (doc: Y.Doc): Map<number, number> => Y.decodeStateVector(Y.encodeStateVector(doc))

export class SyncTransport extends ObservableV2<TransportEvents> {
  private readonly opts: TransportOptions
  private ws: WebSocketLike | null = null
  private statusValue: ConnectionStatus = 'connecting'
  private attempt = 0
  private generation = 0
  private retryTimer: unknown = null
  private watchdog: unknown = null
  private authReason: string | null = null
  private caughtUp = false
  private synced = false
  private forceToken = false
  private retriedExpired = false
  private destroyed = false
  /** What this socket has transmitted of the document so far. */
  private transmitted: Map<number, number> | null = null
  /** One entry per probe in flight: the state vector it acknowledges, or null. */
  private probes: Array<Map<number, number> | null> = []
  private probeScheduled = false
  private readonly unsubscribeNetwork: () => void

  constructor (opts: TransportOptions) {
    super()
    this.opts = opts
    opts.doc.on('update', this.onDocUpdate)
    opts.awareness.on('update', this.onAwarenessUpdate)
    this.unsubscribeNetwork = opts.network?.subscribe(online => {
      if (!online) this.drop('offline')
      else if (this.statusValue === 'offline') { this.attempt = 0; void this.connect() }
    }) ?? (() => {})
  }

  get status (): ConnectionStatus { return this.statusValue }

  /** Opens the first connection. */
  start (): void { void this.connect() }

  /** Closes the socket for good (the server removes this peer's presence at once). */
  override destroy (): void {
    if (this.destroyed) return
    this.destroyed = true
    this.opts.doc.off('update', this.onDocUpdate)
    this.opts.awareness.off('update', this.onAwarenessUpdate)
    this.unsubscribeNetwork()
    this.clearTimers()
    const ws = this.ws
    this.ws = null
    if (ws !== null) { this.detach(ws); ws.close(1000, 'closed by the app') }
    this.setStatus('closed')
    super.destroy()
  }

  private setStatus (s: ConnectionStatus): void {
    if (this.statusValue === s) return
    this.statusValue = s
    this.emit('status', [s])
  }

  private clearTimers (): void {
    if (this.retryTimer !== null) this.opts.timers.clearTimeout(this.retryTimer)
    if (this.watchdog !== null) this.opts.timers.clearTimeout(this.watchdog)
    this.retryTimer = null
    this.watchdog = null
  }

  private async connect (): Promise<void> {
    if (this.destroyed || this.ws !== null || this.statusValue === 'closed') return
    if (this.opts.network?.isOnline() === false) { this.setStatus('offline'); return }
    const gen = ++this.generation
    this.setStatus('connecting')
    let token: string
    try {
      token = await this.opts.tokens.get(this.forceToken)
    } catch (e) {
      // The app's getToken failed (its backend is unreachable, say): retry like a network error.
      if (gen === this.generation && !this.destroyed) this.scheduleRetry()
      return
    }
    if (gen !== this.generation || this.destroyed) return
    this.forceToken = false
    const q = new URLSearchParams({ token })
    if (this.opts.asGuest) q.set('guest', '1')
    const ws = new this.opts.WebSocket(`${this.opts.wsUrl}/${encodeURIComponent(this.opts.conversationId)}?${q.toString()}`)
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    this.authReason = null
    ws.onopen = () => this.onOpen(ws)
    ws.onmessage = ev => this.onMessage(ws, ev.data)
    ws.onclose = ev => { if (this.ws === ws) { this.detach(ws); this.ws = null; this.afterClose(ev.code, ev.reason, null) } }
    ws.onerror = () => { /* a close event follows */ }
  }

  private detach (ws: WebSocketLike): void {
    ws.onopen = null
    ws.onmessage = null
    ws.onclose = null
    ws.onerror = () => {}
  }

  /** Gives up the current socket at once (offline, watchdog, garbage from the server). */
  private drop (why: 'offline' | 'watchdog' | 'protocol'): void {
    const ws = this.ws
    if (ws === null) {
      if (why === 'offline' && this.statusValue !== 'closed') {
        this.generation++
        this.clearTimers()
        this.setStatus('offline')
      }
      return
    }
    this.ws = null
    this.detach(ws)
    ws.close(1000, why)
    this.afterClose(1006, '', why)
  }

  private armWatchdog (): void {
    if (this.watchdog !== null) this.opts.timers.clearTimeout(this.watchdog)
    this.watchdog = this.opts.timers.setTimeout(() => { this.watchdog = null; this.drop('watchdog') }, this.opts.watchdogMs ?? 30_000)
  }

  private onOpen (ws: WebSocketLike): void {
    if (ws !== this.ws) return
    this.setStatus('connected')
    this.caughtUp = false
    this.transmitted = null
    this.probes = [null]
    ws.send(encodeSyncStep1(Y.encodeStateVector(this.opts.doc)))
    const { awareness } = this.opts
    if (awareness.getLocalState() !== null) {
      ws.send(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(awareness, [awareness.clientID])))
    }
    this.armWatchdog()
  }

  private onMessage (ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return
    this.armWatchdog()
    const bytes = toBytes(data)
    let msg
    try {
      if (bytes === null) throw new Error('text frame')
      msg = readMessage(bytes)
    } catch (e) {
      this.drop('protocol')
      return
    }
    const { doc } = this.opts
    switch (msg.type) {
      case 'sync':
        if (msg.subtype === 'step1') {
          ws.send(encodeSyncStep2(Y.encodeStateAsUpdate(doc, msg.stateVector)))
          this.caughtUp = true
          this.transmitted = stateVectorOf(doc)
          this.sendProbe()
        } else {
          Y.applyUpdate(doc, msg.update, this)
          if (msg.subtype === 'step2') this.onStep2()
        }
        return
      case 'awareness':
        awarenessProtocol.applyAwarenessUpdate(this.opts.awareness, msg.update, this)
        return
      case 'auth':
        if (msg.denied) this.authReason = msg.reason
    }
  }

  private onStep2 (): void {
    const acked = this.probes.shift()
    if (acked !== undefined && acked !== null) this.emit('acked', [acked])
    if (!this.synced && this.caughtUp) {
      this.synced = true
      this.attempt = 0
      this.retriedExpired = false
      this.setStatus('synced')
    }
  }

  private sendProbe (): void {
    this.probeScheduled = false
    const ws = this.ws
    if (ws === null || !this.caughtUp) return
    this.probes.push(this.transmitted === null ? null : new Map(this.transmitted))
    ws.send(encodeSyncStep1(Y.encodeStateVector(this.opts.doc)))
  }

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this) return
    const ws = this.ws
    if (ws === null || !this.caughtUp) return // the next handshake's step 2 carries it
    ws.send(encodeSyncUpdate(update))
    this.transmitted = stateVectorOf(this.opts.doc)
    if (!this.probeScheduled) {
      this.probeScheduled = true
      queueMicrotask(() => this.sendProbe())
    }
  }

  private readonly onAwarenessUpdate = (changes: { added: number[], updated: number[], removed: number[] }, origin: unknown): void => {
    if (origin !== 'local' || this.ws === null || this.statusValue === 'connecting') return
    const { awareness } = this.opts
    const ids = [...changes.added, ...changes.updated, ...changes.removed].filter(id => id === awareness.clientID)
    if (ids.length > 0) this.ws.send(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(awareness, ids)))
  }

  private afterClose (code: number, reason: string, local: 'offline' | 'watchdog' | 'protocol' | null): void {
    if (this.watchdog !== null) { this.opts.timers.clearTimeout(this.watchdog); this.watchdog = null }
    this.caughtUp = false
    this.synced = false
    this.transmitted = null
    this.probes = []
    const { awareness } = this.opts
    const remote = [...awareness.getStates().keys()].filter(id => id !== awareness.clientID)
    awarenessProtocol.removeAwarenessStates(awareness, remote, this)
    if (this.destroyed) return
    if (local === null && isFinalClose(code)) {
      const error = refusalOf(code, reason, this.authReason)
      if (error.code === 'TOKEN_EXPIRED' && this.opts.tokens.canRefresh && !this.retriedExpired) {
        this.retriedExpired = true
        this.forceToken = true
        void this.connect()
        return
      }
      this.clearTimers()
      this.setStatus('closed')
      this.emit('error', [error])
      return
    }
    if (local === 'offline') { this.setStatus('offline'); return }
    this.scheduleRetry()
  }

  private scheduleRetry (): void {
    this.setStatus('connecting')
    const delay = backoffDelay(this.attempt++, this.opts.random, this.opts.backoff ?? DEFAULT_BACKOFF)
    if (this.retryTimer !== null) this.opts.timers.clearTimeout(this.retryTimer)
    this.retryTimer = this.opts.timers.setTimeout(() => { this.retryTimer = null; void this.connect() }, delay)
    this.emit('retry', [delay])
  }
}
