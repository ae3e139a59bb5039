/**
 * parley/client/node: the client for Node apps. Same API as `parley/client`, with the `ws`
 * WebSocket and, when `dir` is given, offline messages kept in that folder across restarts.
 */
import WebSocket from 'ws'
import { createSession as createBaseSession, type Session, type SessionOptions } from './session.ts'
import { fileStore } from './storage-fs.ts'
import type { WebSocketCtor } from './transport.ts'

export * from './index.ts'
export { fileStore } from './storage-fs.ts'

/** The `ws` WebSocket, as the client's constructor type. */
export const NodeWebSocket = WebSocket as unknown as WebSocketCtor

/** `createSession` for Node: `dir` keeps offline messages in a folder. */
export const createSession = (options: SessionOptions & { dir?: string }): Session => {
  const { dir, ...rest } = options
  return createBaseSession({
    WebSocket: NodeWebSocket,
    network: null,
    ...(dir !== undefined ? { storage: fileStore(dir) } : {}),
    ...rest
  })
}
