/** Helpers for client tests: sessions against a test server, counting sockets, waiting. */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { createSession, type Session, type SessionOptions } from '../../client/node.ts'
import type { WebSocketCtor } from '../../client/transport.ts'
import type { TestServer } from '../helpers/server.ts'

/** A `ws` constructor that counts the sockets it opened. */
export const countingWebSocket = (): { ctor: WebSocketCtor, count: () => number, urls: string[] } => {
  const urls: string[] = []
  class Counting extends WebSocket {
    constructor (url: string) {
      super(url)
      urls.push(url)
    }
  }
  return { ctor: Counting as unknown as WebSocketCtor, count: () => urls.length, urls }
}

/** A session of `userId` on `s`, closed by `cleanup`. */
export const sessionFor = async (s: TestServer, userId: string, opts: Partial<SessionOptions> & { dir?: string } = {}, cleanup?: Session[]): Promise<Session> => {
  const token = await s.token(userId)
  const session = createSession({ serverUrl: s.url, userId, token, backoff: { baseMs: 50, maxMs: 400 }, ...opts })
  cleanup?.push(session)
  return session
}

export const tempDir = async (): Promise<string> => await mkdtemp(join(tmpdir(), 'parley-client-'))

let n = 0
/** A fresh conversation id. */
export const convId = (prefix = 'c'): string => `${prefix}-${process.pid}-${++n}`

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
