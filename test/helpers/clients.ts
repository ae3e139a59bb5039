/**
 * Peers for tests: the stock y-websocket provider, and a raw WebSocket that records frames and
 * the close code (for refusals and crafted input).
 */
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as decoding from 'lib0/decoding'
import { messagesOf } from '../../shared/doc.ts'
import type { Message } from '../../shared/schema.ts'

export interface Peer {
  doc: Y.Doc
  provider: WebsocketProvider
  closes: Array<{ code: number, reason: string }>
  synced: Promise<void>
  destroy (): void
}

/**
 * A stock WebsocketProvider peer. Pass `doc` to choose its client id or content before it
 * connects (what the app writes before the first sync goes out with the handshake).
 */
export const connectPeer = (wsUrl: string, room: string, token: string, params: Record<string, string> = {}, doc = new Y.Doc()): Peer => {
  const provider = new WebsocketProvider(wsUrl, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    params: { token, ...params },
    disableBc: true
  })
  const closes: Array<{ code: number, reason: string }> = []
  provider.on('connection-close', (event: CloseEvent | null) => {
    if (event !== null) closes.push({ code: event.code, reason: event.reason })
  })
  const synced = new Promise<void>(resolve => {
    if (provider.synced) resolve()
    provider.on('sync', (s: boolean) => { if (s) resolve() })
  })
  return {
    doc, provider, closes, synced,
    destroy () { provider.destroy(); doc.destroy() }
  }
}

/** Appends a message as `userId` the way an honest client does. */
export const sendMessage = (doc: Y.Doc, userId: string, text: string, id = `m-${Math.random().toString(36).slice(2)}`): Message => {
  const m: Message = { id, senderId: userId, text, createdAt: Date.now(), type: 'UserMessage' }
  messagesOf(doc).push([m])
  return m
}

export const texts = (doc: Y.Doc): string[] => messagesOf(doc).toArray().map(m => m.text)

export interface RawClient {
  ws: WebSocket
  frames: Uint8Array[]
  opened: Promise<void>
  closed: Promise<{ code: number, reason: string }>
  /** The JSON reason of the first auth (type 2) frame received, if any. */
  authReason (): { code: string, message: string } | undefined
}

/** A raw WebSocket client. */
export const connectRaw = (url: string): RawClient => {
  const ws = new WebSocket(url)
  const frames: Uint8Array[] = []
  ws.binaryType = 'nodebuffer'
  ws.on('message', (data: Buffer) => frames.push(new Uint8Array(data)))
  ws.on('error', () => {})
  const opened = new Promise<void>(resolve => ws.once('open', () => resolve()))
  const closed = new Promise<{ code: number, reason: string }>(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  return {
    ws, frames, opened, closed,
    authReason () {
      for (const f of frames) {
        const d = decoding.createDecoder(f)
        if (decoding.readVarUint(d) !== 2) continue
        decoding.readVarUint(d)
        return JSON.parse(decoding.readVarString(d))
      }
      return undefined
    }
  }
}

/** Waits until `check` holds, polling; fails after `ms`. */
export const waitFor = async (check: () => boolean, ms = 5000, what = 'condition'): Promise<void> => {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}
