/**
 * A stock y-websocket 3.1 `WebsocketProvider` peer (the real client, with a Y.Doc and an
 * Awareness), for the few participants of a benchmark: writers and supervisors.
 */
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { waitUntil } from './timing.ts'

export interface StockPeer {
  doc: Y.Doc
  provider: WebsocketProvider
  /** Live awareness states other than its own. */
  remoteStates (): Map<number, Record<string, unknown>>
  destroy (): void
}

export const connectStockPeer = async (wsUrl: string, room: string, name: string, params: Record<string, string>, capMs = 10_000): Promise<StockPeer> => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(wsUrl, room, doc, {
    WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
    params,
    disableBc: true
  })
  provider.awareness.setLocalStateField('user', { name })
  const peer: StockPeer = {
    doc,
    provider,
    remoteStates () {
      const out = new Map<number, Record<string, unknown>>()
      for (const [id, state] of provider.awareness.getStates()) {
        if (id !== doc.clientID) out.set(id, state)
      }
      return out
    },
    destroy () { provider.destroy(); doc.destroy() }
  }
  if (await waitUntil(() => provider.synced, capMs) === null) {
    peer.destroy()
    throw new Error(`${name} did not sync within ${capMs} ms`)
  }
  return peer
}

/** The `user.name` of an awareness state, if it has one. */
export const stateUserName = (state: Record<string, unknown>): string | undefined => {
  const user = state.user
  if (typeof user !== 'object' || user === null) return undefined
  const name = (user as Record<string, unknown>).name
  return typeof name === 'string' ? name : undefined
}
