/**
 * Servers under test, each started as a child process so its CPU and memory can be read from
 * /proc. Output goes to a log file in the run's temporary folder (not a pipe: a slow reader must
 * never stall the server), which is polled for the line that gives the address.
 *
 *   parley     node --import tsx server/main.ts --port 0 --data <tmp> --secret <s> --demo off
 *              [--postgres URL [--redis URL]]
 *   reference  HOST=127.0.0.1 PORT=<free> node node_modules/@y/websocket-server/src/server.js
 *              (in memory: no YPERSISTENCE; no auth, it ignores the query string)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sleep } from './timing.ts'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type ServerKind = 'parley' | 'reference'

export interface ServerUnderTest {
  kind: ServerKind
  pid: number
  /** http://127.0.0.1:PORT */
  url: string
  /** ws://127.0.0.1:PORT */
  wsUrl: string
  /** The app secret (Parley only). */
  secret: string
  dir: string
  logFile: string
  /** Whether the process is still running. */
  alive (): boolean
  /** SIGTERM, then SIGKILL after `graceMs`; removes the temporary folder. */
  stop (graceMs?: number): Promise<void>
}

export interface StartOptions {
  /** Extra node flags for the server process, e.g. ['--cpu-prof', '--cpu-prof-dir=…']. */
  nodeFlags?: string[]
  /** Environment additions. */
  env?: Record<string, string>
  /** How long to wait for the address line. */
  startCapMs?: number
}

/** A free TCP port on 127.0.0.1 (bound and released; a tiny race is acceptable here). */
export const freePort = async (): Promise<number> => await new Promise((resolve, reject) => {
  const srv = createServer()
  srv.once('error', reject)
  srv.listen(0, '127.0.0.1', () => {
    const addr = srv.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0
    srv.close(() => resolve(port))
  })
})

export const randomSecret = (): string => `bench-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}-secret`

const launch = async (kind: ServerKind, args: string[], env: Record<string, string>, addressLine: RegExp, opts: StartOptions): Promise<{ child: ChildProcess, url: string, dir: string, logFile: string }> => {
  const dir = await mkdtemp(join(tmpdir(), `bench-${kind}-`))
  const logFile = join(dir, 'server.log')
  const log = await open(logFile, 'w')
  const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...args.map(a => a.replace('{dir}', dir))], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, ...opts.env },
    stdio: ['ignore', log.fd, log.fd]
  })
  await log.close()
  let exited = false
  child.once('exit', () => { exited = true })
  const cap = opts.startCapMs ?? 30_000
  const start = Date.now()
  for (;;) {
    const text = await readFile(logFile, 'utf8')
    const m = addressLine.exec(text)
    if (m !== null) return { child, url: m[1], dir, logFile }
    if (exited || Date.now() - start > cap) {
      if (!exited) child.kill('SIGKILL')
      await rm(dir, { recursive: true, force: true })
      throw new Error(`${kind} did not start within ${cap} ms:\n${text.slice(-2000)}`)
    }
    await sleep(50)
  }
}

const wrap = (kind: ServerKind, started: { child: ChildProcess, url: string, dir: string, logFile: string }, secret: string): ServerUnderTest => {
  const { child, url, dir, logFile } = started
  let exited = child.exitCode !== null || child.signalCode !== null
  const exit = new Promise<void>(resolve => {
    if (exited) resolve()
    child.once('exit', () => { exited = true; resolve() })
  })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${kind}: no pid`)
  return {
    kind,
    pid,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    secret,
    dir,
    logFile,
    alive: () => !exited,
    async stop (graceMs = 5000) {
      if (!exited) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL') }, graceMs)
        await exit
        clearTimeout(timer)
      }
      await rm(dir, { recursive: true, force: true })
    }
  }
}

export interface ParleyOptions extends StartOptions {
  /** `--postgres URL`: everything durable in PostgreSQL instead of the LevelDB folder. */
  postgres?: string
  /** `--redis URL` (with `postgres`): one node of the cluster sharing that database. */
  redis?: string
  /** The app secret (the nodes of one cluster share one); a random one by default. */
  secret?: string
}

/**
 * Starts Parley on a free port with a known secret: on a fresh LevelDB folder by default, or on
 * PostgreSQL (and Redis) when given. `--data` is always the run's temporary folder (with
 * `--postgres` it holds only uploaded files).
 */
export const startParley = async (opts: ParleyOptions = {}): Promise<ServerUnderTest> => {
  const secret = opts.secret ?? randomSecret()
  const engines = [
    ...(opts.postgres === undefined ? [] : ['--postgres', opts.postgres]),
    ...(opts.redis === undefined ? [] : ['--redis', opts.redis])
  ]
  const started = await launch('parley',
    ['--import', 'tsx', 'server/main.ts', '--host', '127.0.0.1', '--port', '0', '--data', '{dir}/data', '--secret', secret, '--demo', 'off', ...engines],
    {}, /listening on (http:\/\/[^\s"]+)/, opts)
  return wrap('parley', started, secret)
}

/** Starts the reference @y/websocket-server 0.1.1 (in memory) on a free port. */
export const startReference = async (opts: StartOptions = {}): Promise<ServerUnderTest> => {
  const port = await freePort()
  const started = await launch('reference',
    ['node_modules/@y/websocket-server/src/server.js'],
    { HOST: '127.0.0.1', PORT: String(port) }, /running at '[^']*' on port (\d+)/, opts)
  return wrap('reference', { ...started, url: `http://127.0.0.1:${started.url}` }, '')
}

export const startServer = async (kind: ServerKind, opts: StartOptions = {}): Promise<ServerUnderTest> =>
  kind === 'parley' ? await startParley(opts) : await startReference(opts)

/** A REST call with `Authorization: Bearer <auth>`, JSON in and out. */
export const api = async (baseUrl: string, auth: string, method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number, body: unknown }> => {
  const headers: Record<string, string> = { authorization: `Bearer ${auth}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) as unknown }
}

/** An HS256 user token (`sub`, `exp`) for Parley, signed with the app secret. */
export { signUserToken } from './tokens.ts'
