/**
 * Test factory: a real Parley server on port 0 with real LevelDB in a temporary folder.
 * Each server is closed (and its folder removed) by its `stop()`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createServer, DEFAULT_SERVER_CONFIG, type ParleyServer, type ServerConfig, type ServerDeps } from '../../server/app.ts'
import { LevelStore } from '../../server/storage/level-store.ts'

export const TEST_SECRET = 'test-secret-0123456789abcdef'

export interface TestServer {
  server: ParleyServer
  store: LevelStore
  dir: string
  url: string
  wsUrl: string
  token (userId: string, ttlSeconds?: number): Promise<string>
  /** A REST call as admin (or with `auth`), JSON in and out. */
  api (method: string, path: string, body?: unknown, auth?: string): Promise<{ status: number, body: any }>
  /** Closes server and store; keeps the folder when `keepDir` (for restarts). */
  stop (keepDir?: boolean): Promise<void>
}

/**
 * Settings for tests that write many messages quickly as one user: the message rate limit
 * (tested in abuse.test.ts) out of the way.
 */
export const UNLIMITED_RATE = { messageRate: { perSecond: 10_000, burst: 100_000 } } as const

export const startServer = async (opts: { dir?: string, config?: Partial<ServerConfig>, deps?: Partial<ServerDeps>, settings?: Record<string, unknown> } = {}): Promise<TestServer> => {
  const dir = opts.dir ?? await mkdtemp(join(tmpdir(), 'parley-test-'))
  const store = await LevelStore.open(join(dir, 'db'))
  const logger = pino({ level: process.env.PARLEY_TEST_LOG ?? 'silent' })
  const server = await createServer({ ...DEFAULT_SERVER_CONFIG, port: 0, secret: TEST_SECRET, ...opts.config }, { store, logger, ...opts.deps })
  if (opts.settings !== undefined) await server.settings.patch(opts.settings)
  const { url } = await server.listen()
  const wsUrl = url.replace(/^http/, 'ws')
  return {
    server,
    store,
    dir,
    url,
    wsUrl,
    token: async (userId, ttl = 3600) => await server.auth.signUserToken(userId, ttl),
    async api (method, path, body, auth = `Bearer ${TEST_SECRET}`) {
      const headers: Record<string, string> = { authorization: auth }
      if (body !== undefined) headers['content-type'] = 'application/json'
      const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
      const text = await res.text()
      return { status: res.status, body: text === '' ? null : JSON.parse(text) }
    },
    async stop (keepDir = false) {
      await server.close()
      await store.close()
      if (!keepDir) await rm(dir, { recursive: true, force: true })
    }
  }
}
