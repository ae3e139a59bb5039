/**
 * The `parley` process: reads flags and environment (the only module that does), opens the
 * store (the LevelDB folder, or PostgreSQL with --postgres; with --redis too, one node of a
 * cluster), starts the server and handles
 * SIGTERM/SIGINT (close sockets with 1001, flush, exit 0).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, HELP, parseProcessOptions } from './config.ts'
import { createServer, DEFAULT_SERVER_CONFIG, type ParleyServer } from './app.ts'
import { createProcessLogger, logFormatFor } from './log.ts'
import { loadOrCreateSecret, newSecret } from './secret.ts'
import { LevelStore } from './storage/level-store.ts'
import { PgBlobStore } from './storage/pg-blob-store.ts'
import { PgStore } from './storage/pg-store.ts'
import { parsePgUrl } from './storage/pg-url.ts'
import type { DocStore } from './storage/port.ts'
import { removeServerInfo, writeServerInfo } from './server-info.ts'
import { RedisBus } from './bus/redis-bus.ts'
import { RedisPresenceBoard } from './bus/presence-board.ts'
import type { ClusterOptions } from './cluster/cluster-node.ts'
import { randomUUID } from 'node:crypto'

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)

/** A Redis URL without its password, for messages. */
const redactRedis = (url: string): string => {
  try {
    const u = new URL(url)
    u.password = ''
    return u.href
  } catch {
    return 'redis://…'
  }
}

const fail = (message: string): never => {
  process.stderr.write(`parley: ${message}\n`)
  process.exit(1)
}

const main = async (): Promise<void> => {
  let options
  try {
    options = parseProcessOptions(process.argv.slice(2), process.env)
  } catch (e) {
    if (e instanceof ConfigError) return fail(e.message)
    throw e
  }
  if (options.help) {
    process.stdout.write(HELP)
    return
  }
  const format = logFormatFor(process.env.PARLEY_LOG_FORMAT, process.stdout.isTTY === true)
  if (format === null) return fail(`PARLEY_LOG_FORMAT must be json or pretty, got ${JSON.stringify(process.env.PARLEY_LOG_FORMAT)}`)
  const { logger, flush } = createProcessLogger(format, process.env.PARLEY_LOG_LEVEL ?? 'info')
  let store: DocStore
  let secret: string
  let cluster: ClusterOptions | undefined
  let bus: RedisBus | null = null
  let board: RedisPresenceBoard | null = null
  // With --postgres, uploaded files live in PostgreSQL too: any node serves any file.
  let blobs: PgBlobStore | undefined
  const postgres = options.postgres
  if (postgres !== undefined) {
    let pg: PgStore | null = null
    try {
      pg = await PgStore.open({ url: postgres })
      secret = options.secret ?? await pg.loadOrCreateSecret(newSecret())
      blobs = await PgBlobStore.open({ url: postgres })
      store = pg
    } catch (e) {
      await pg?.close().catch(() => {})
      return fail(`cannot use PostgreSQL at ${parsePgUrl(postgres).redacted}: ${(e as Error).message.split('\n')[0]}`)
    }
    if (options.redis !== undefined) {
      const redacted = redactRedis(options.redis)
      try {
        const clusterId = await pg.loadOrCreateClusterId(randomUUID())
        bus = await RedisBus.open({
          url: options.redis,
          prefix: `parley:${clusterId}:`,
          onError: err => logger.debug({ err: err.message }, 'redis connection error')
        })
        board = new RedisPresenceBoard(options.redis, `parley:${clusterId}:`, options.presenceTtlMs)
        cluster = { bus, log: pg, board }
      } catch (e) {
        await pg.close().catch(() => {})
        await blobs?.close().catch(() => {})
        return fail(`cannot use Redis at ${redacted}: ${(e as Error).message.split('\n')[0]}`)
      }
    }
  } else {
    try {
      await mkdir(options.data, { recursive: true })
      store = await LevelStore.open(options.data, { sync: options.fsync, reserveBytes: options.reserveBytes })
      secret = options.secret ?? await loadOrCreateSecret(options.data)
    } catch (e) {
      return fail(`cannot use data folder ${options.data}: ${(e as Error).message.split('\n')[0]}`)
    }
  }
  let server: ParleyServer
  let url: string
  try {
    const demo = options.demo === 'on' || (options.demo === 'auto' && isLoopback(options.host))
    server = await createServer({
      ...DEFAULT_SERVER_CONFIG, host: options.host, port: options.port, secret, demo, demoLoopbackOnly: options.demo === 'auto', smtpUrl: options.smtp ?? null
    }, {
      store,
      logger,
      processMetrics: true,
      cluster,
      // Default: files/ beside LevelDB in the data folder.
      blobs
    })
    if (demo) logger.warn(`DEMO MODE: the web UI can sign in as ANY user without a password (${options.demo === 'on' ? 'turned on with --demo on' : 'on because the server listens on loopback'}); turn it off with --demo off`)
    ;({ url } = await server.listen())
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    await store.close().catch(() => {})
    await Promise.all([bus?.close(), board?.close(), blobs?.close()])
    if (err.code === 'EADDRINUSE') return fail(`port ${options.port} on ${options.host} is already in use`)
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') return fail(`cannot listen on host ${options.host}`)
    if (err.code === 'EACCES') return fail(`not allowed to listen on ${options.host}:${options.port}`)
    return fail(`cannot start: ${err.message.split('\n')[0]}`)
  }
  // The start and stop lines are printed whatever PARLEY_LOG_LEVEL says (contract §1).
  const lifecycle = logger.child({}, { level: 'info' })

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    lifecycle.info({ signal }, 'shutting down')
    const force = setTimeout(() => { logger.error('shutdown took over 4.5 s; exiting'); flush(); process.exit(1) }, 4500)
    force.unref()
    void server.close()
      .then(async () => { if (postgres === undefined) await removeServerInfo(options.data).catch(() => {}) })
      .then(async () => { await Promise.all([bus?.close(), board?.close(), blobs?.close()]) })
      .then(async () => { await store.close() })
      .then(() => { lifecycle.info('stopped'); flush(); process.exit(0) })
      .catch(err => { logger.error({ err }, 'shutdown failed'); flush(); process.exit(1) })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // Lets `npm run backup` find this server (it holds the folder's lock).
  if (postgres === undefined) await writeServerInfo(options.data, url).catch(err => logger.warn({ err }, 'cannot write server.json; backups need --url'))
  // Only now: whoever sees this line may send SIGTERM at once, and must get a clean stop.
  lifecycle.info(postgres === undefined ? { data: options.data } : options.redis === undefined ? { postgres: store.location } : { postgres: store.location, redis: redactRedis(options.redis) }, `listening on ${url}`)
}

await main()
