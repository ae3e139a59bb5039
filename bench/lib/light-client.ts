/**
 * A light y-websocket peer for load generation: no Y.Doc and no Awareness object, but the same
 * frames on the wire as a stock y-websocket 3.1 `WebsocketProvider` whose document stays empty
 * (a guest that reads and never writes):
 *
 *   - on open: sync step 1 of an empty document, then its awareness state (clock 1 at first);
 *   - the server's sync step 1 is answered with sync step 2 (an empty update);
 *   - a sync step 2 marks it synced; sync step 2 and update payloads go to `onSync` unparsed;
 *   - awareness updates are applied with the rules of y-protocols' `applyAwarenessUpdate`
 *     (a newer clock wins; a removal needs a newer or equal clock) to a table of clocks, and,
 *     with `echo` on, every applied change is sent back the way the stock provider's awareness
 *     'update' handler does (it re-broadcasts added, updated and removed ids). When every entry
 *     of a received update applied, the received frame itself is sent back (it is byte for byte
 *     what `encodeAwarenessUpdate` would produce);
 *   - its own state is renewed (clock + 1) once `renewalMs` passed since the last send, checked
 *     on a per-client phase of `checkMs` (the stock Awareness checks every 3 s and renews after
 *     15 s, so a renewal comes 15 to 18 s after the previous one);
 *   - an unexpected close is retried with the stock backoff (100 ms × 2ⁿ, at most 2,500 ms);
 *     close codes 4400–4499 are final, as in the stock client.
 *
 * Not emulated: the stock Awareness's removal of remote states not renewed for 30 s, and the
 * client-side 30 s no-message timeout (benchmark phases are shorter than that).
 */
import WebSocket from 'ws'
import { performance } from 'node:perf_hooks'
import {
  EMPTY_DOC_STEP1, EMPTY_DOC_STEP2, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, SYNC_STEP1, SYNC_STEP2,
  encodeAwarenessFrame, encodeAwarenessSubset, readAwarenessFrame, type AwarenessEntryView
} from './wire.ts'

export interface LightClientOptions {
  /** The full URL: `ws://host:port/<room>?<params>`. */
  url: string
  /** Awareness client id (the stock client uses its Y.Doc's random 32-bit client id). */
  clientId: number
  /** The local awareness state, e.g. `{ user: { name } }`. */
  state: unknown
  /** Re-broadcast every applied awareness change, like the stock provider. */
  echo: boolean
  /** A user id or name whose live presence this client watches for (sets `seenWatched`). */
  watchUser?: string
  /** Called with each sync step 2 or update frame (type byte included) and its arrival time. */
  onSync?: (client: LightClient, frame: Buffer, receivedAt: number) => void
  /** Reconnect after an unexpected close, like the stock client (default true). */
  reconnect?: boolean
}

const BACKOFF_BASE_MS = 100
const BACKOFF_CAP_MS = 2500

/** Packs a clock and liveness into one number: clock * 2 + (live ? 1 : 0). */
const pack = (clock: number, live: boolean): number => clock * 2 + (live ? 1 : 0)

export class LightClient {
  readonly options: LightClientOptions
  readonly clientId: number
  ws: WebSocket | null = null
  /** Own awareness clock. */
  clock = 1
  lastRenewal = 0
  /** Phase of this client's renewal check, in [0, 1): the stock Awareness's interval starts at construction. */
  readonly checkPhase = Math.random()
  /** When `connect()` was first called and the socket first opened (performance.now() time), or 0. */
  dialedAt = 0
  openedAt = 0
  /** First sync step 2 received (performance.now() time), or 0. */
  syncedAt = 0
  /** First time the watched user's live state was seen, or 0. */
  seenWatchedAt = 0
  framesReceived = 0
  bytesReceived = 0
  framesSent = 0
  echoesSent = 0
  connects = 0
  unexpectedCloses = 0
  lastClose: { code: number, reason: string } | null = null
  /** The client closed on purpose: stop processing and reconnecting. */
  stopped = false
  /** Remote awareness: client id → packed clock and liveness. */
  readonly #remote = new Map<number, number>()
  readonly #stateJson: string
  #attempts = 0
  #reconnectTimer: NodeJS.Timeout | null = null
  #openResolvers: Array<() => void> = []

  constructor (options: LightClientOptions) {
    this.options = options
    this.clientId = options.clientId
    this.#stateJson = JSON.stringify(options.state)
  }

  get synced (): boolean { return this.syncedAt !== 0 }
  get seenWatched (): boolean { return this.seenWatchedAt !== 0 }
  get open (): boolean { return this.ws !== null && this.ws.readyState === WebSocket.OPEN }
  /** Number of live remote states this client holds. */
  liveRemoteStates (): number {
    let n = 0
    for (const v of this.#remote.values()) if ((v & 1) === 1) n++
    return n
  }

  /** Connects; resolves once the socket opened (or failed: the retry continues in the background). */
  async connect (): Promise<void> {
    if (this.dialedAt === 0) this.dialedAt = performance.now()
    await new Promise<void>(resolve => {
      this.#openResolvers.push(resolve)
      this.#dial()
    })
  }

  /** Closes for good (1000 by default), like a destroyed provider or a closed tab. */
  close (code = 1000): void {
    this.stopped = true
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = null
    const ws = this.ws
    if (ws === null) return
    if (ws.readyState === WebSocket.OPEN) ws.close(code)
    else if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
  }

  /**
   * Renews the own state like the stock Awareness: its check runs every `checkMs` (3 s) on this
   * client's own phase and renews once `renewalMs` (15 s) passed since the last send. Call it
   * often (every 100–250 ms); it acts at the first call after a due check.
   */
  renewIfDue (now: number, renewalMs: number, checkMs = 3000): void {
    if (this.stopped || !this.open || now - this.lastRenewal < renewalMs) return
    const due = this.lastRenewal + renewalMs
    const phase = this.checkPhase * checkMs
    const nextCheck = phase + Math.ceil((due - phase) / checkMs) * checkMs
    if (now < nextCheck) return
    this.clock++
    this.#sendOwnState(now)
  }

  #send (frame: Uint8Array): void {
    const ws = this.ws
    if (ws === null || ws.readyState !== WebSocket.OPEN) return
    ws.send(frame)
    this.framesSent++
  }

  #sendOwnState (now: number): void {
    this.lastRenewal = now
    this.#remote.set(this.clientId, pack(this.clock, true))
    this.#send(encodeAwarenessFrame([{ clientId: this.clientId, clock: this.clock, json: this.#stateJson }]))
  }

  #settleOpen (): void {
    const resolvers = this.#openResolvers
    this.#openResolvers = []
    for (const r of resolvers) r()
  }

  #dial (): void {
    if (this.stopped) { this.#settleOpen(); return }
    const ws = new WebSocket(this.options.url, { perMessageDeflate: false })
    this.ws = ws
    ws.on('open', () => {
      this.connects++
      if (this.openedAt === 0) this.openedAt = performance.now()
      this.#send(EMPTY_DOC_STEP1)
      this.#sendOwnState(performance.now())
      this.#settleOpen()
    })
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.stopped || !isBinary) return
      this.#attempts = 0
      this.#onFrame(data)
    })
    ws.on('error', () => { /* 'close' follows */ })
    ws.on('close', (code: number, reason: Buffer) => {
      this.lastClose = { code, reason: reason.toString() }
      if (this.ws === ws) this.ws = null
      this.#settleOpen()
      if (this.stopped) return
      this.unexpectedCloses++
      // The stock provider forgets remote states when its socket closes.
      this.#remote.clear()
      if (this.options.reconnect === false || (code >= 4400 && code < 4500)) return
      const delay = Math.min(BACKOFF_BASE_MS * 2 ** this.#attempts, BACKOFF_CAP_MS)
      this.#attempts++
      this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.#dial() }, delay)
    })
  }

  #onFrame (frame: Buffer): void {
    const now = performance.now()
    this.framesReceived++
    this.bytesReceived += frame.length
    const type = frame[0]
    if (type === MSG_SYNC) {
      const sub = frame[1]
      if (sub === SYNC_STEP1) {
        this.#send(EMPTY_DOC_STEP2)
        return
      }
      if (sub === SYNC_STEP2 && this.syncedAt === 0) this.syncedAt = now
      this.options.onSync?.(this, frame, now)
    } else if (type === MSG_AWARENESS) {
      this.#onAwareness(frame, now)
    } else if (type === MSG_QUERY_AWARENESS) {
      this.#sendOwnState(now)
    }
  }

  #onAwareness (frame: Buffer, now: number): void {
    const read = readAwarenessFrame(frame)
    if (read === null) return
    const applied: AwarenessEntryView[] = []
    let bumpOwn = false
    for (const e of read.entries) {
      const packed = this.#remote.get(e.clientId)
      const known = packed !== undefined
      const currClock = known ? Math.floor(packed / 2) : 0
      const live = known && (packed & 1) === 1
      const isNull = e.json === 'null'
      if (!(currClock < e.clock || (currClock === e.clock && isNull && live))) continue
      if (e.clientId === this.clientId) {
        // y-protocols: a remote removal of the local state makes the client re-announce itself.
        if (isNull) { this.clock = Math.max(this.clock, e.clock) + 1; bumpOwn = true }
        continue
      }
      this.#remote.set(e.clientId, pack(e.clock, !isNull))
      // added (no meta yet, a state), removed (meta, null) or updated (a state): all echoed.
      if (!known && isNull) continue
      applied.push(e)
      if (!isNull && this.seenWatchedAt === 0 && this.options.watchUser !== undefined &&
        e.json.includes(this.options.watchUser) && isUser(e.json, this.options.watchUser)) {
        this.seenWatchedAt = now
      }
    }
    if (bumpOwn) this.#sendOwnState(now)
    if (!this.options.echo || applied.length === 0) return
    this.echoesSent++
    this.#send(applied.length === read.entries.length ? frame : encodeAwarenessSubset(read.update, applied))
  }
}

const isUser = (json: string, user: string): boolean => {
  try {
    const state = JSON.parse(json) as { user?: { id?: unknown, name?: unknown } } | null
    return state?.user?.id === user || state?.user?.name === user
  } catch {
    return false
  }
}

/** A random non-zero 32-bit client id not in `taken` (the stock client: a random uint32). */
export const randomClientId = (taken: Set<number>): number => {
  for (;;) {
    const id = (Math.random() * 0xffffffff) >>> 0
    if (id !== 0 && !taken.has(id)) { taken.add(id); return id }
  }
}
