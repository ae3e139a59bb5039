/**
 * Builds a Parley server from its configuration and an open store: the HTTP API (fastify), the
 * sync endpoint (ws, on the same port), the rooms and the metrics. `listen` and `close` are
 * separate from building, so tests run many servers in one process on port 0.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { ChatError, isChatError } from '../shared/errors.ts'
import { createAuthenticator, type Authenticator } from './auth.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import type { Timers } from './presence/presence-hub.ts'
import { RoomManager } from './rooms/room-manager.ts'
import { SettingsState } from './settings-state.ts'
import type { DocStore } from './storage/port.ts'
import { createSyncEndpoint, type SyncEndpoint } from './sync/endpoint.ts'
import { registerConversationRoutes } from './rest/conversations.ts'
import { readLimit, registerMessageRoutes } from './rest/messages.ts'
import { registerUserRoutes } from './rest/users.ts'
import { registerModerationRoutes } from './rest/moderation.ts'
import { BanList, BANS_SECTION } from './moderation/bans.ts'
import type { RestDeps } from './rest/deps.ts'
import { registerWebRoutes } from './web/routes.ts'
import { registerSecurityHeaders } from './web/security-headers.ts'
import { EventBus } from './events.ts'
import { createEventServices, DEFAULT_DELIVERY_TUNING, type DeliveryTuning, type EventServices } from './notify/services.ts'
import { registerInboxRoutes } from './inbox/routes.ts'
import { createStorageGuard, type StorageGuard } from './storage/storage-guard.ts'
import { createServerClientIds } from './rooms/server-client-ids.ts'
import { registerBackupRoutes } from './ops/routes.ts'
import { registerOpenApi } from './openapi.ts'
import { clientError, frameworkError } from './http-errors.ts'
import { join } from 'node:path'
import { FileService } from './files/file-service.ts'
import type { BlobStore } from './storage/blob-port.ts'
import { FsBlobStore } from './storage/fs-blob-store.ts'
import { registerFileRoutes } from './rest/files.ts'
import { SearchIndex, SECTION as SEARCH_SECTION } from './search/search-index.ts'
import { registerSearchRoutes } from './search/routes.ts'
import { MessageRateLimiter } from './rate-limit.ts'
import { ClusterNode, type ClusterOptions } from './cluster/cluster-node.ts'
import { SINGLE_NODE, type NodePeers } from './cluster/peers.ts'

export interface ServerConfig {
  host: string
  port: number
  secret: string
  /** Unload a conversation this long after its last peer left. */
  idleUnloadMs: number
  /** Ping interval of the sync endpoint's heartbeat. */
  heartbeatMs: number
  /** A sync socket not admitted this long after its upgrade is closed (contract §7). */
  admissionTimeoutMs: number
  compactAfterUpdates: number
  compactAfterBytes: number
  /** Every peer receives at least one frame this often (the stock client drops a silent one at 30 s). */
  keepaliveMs: number
  /** Messages kept in the live document; older ones move to the archive (paged over REST). */
  historyWindow: number
  /** Messages the live document may hold past the window before a batch moves to the archive. */
  archiveChunk: number
  /** REST request body limit in bytes. */
  bodyLimit: number
  /** Demo mode: the web UI may ask for user tokens (see docs/api.md). */
  demo: boolean
  /**
   * Demo tokens only for requests from a loopback address naming a loopback host (the `auto`
   * mode): a reverse proxy or a DNS-rebinding page gets none.
   */
  demoLoopbackOnly: boolean
  /** SMTP URL for notification emails, or null. */
  smtpUrl: string | null
  /** Webhook/email outbox retries (see server/notify/services.ts). */
  delivery: DeliveryTuning
  /** While storage is failing, how often to check for space and try to reopen it. */
  storageRetryMs: number
  /** Free bytes the data folder needs (beyond LevelDB's log replay) before storage is reopened. */
  storageMinFreeBytes: number
  /** Uploaded files no message carries are deleted this long after their upload. */
  fileOrphanMs: number
  /** How often that sweep runs. */
  fileSweepMs: number
  /** The longest a message change waits before the search index expands it into postings (queries never wait for it). */
  searchExpandDelayMs: number
}

export const DEFAULT_SERVER_CONFIG: Omit<ServerConfig, 'secret'> = {
  host: '127.0.0.1',
  port: 1234,
  idleUnloadMs: 30_000,
  heartbeatMs: 10_000,
  admissionTimeoutMs: 10_000,
  compactAfterUpdates: 500,
  compactAfterBytes: 4 * 1024 * 1024,
  keepaliveMs: 15_000,
  historyWindow: 1000,
  archiveChunk: 500,
  bodyLimit: 256 * 1024,
  demo: false,
  demoLoopbackOnly: true,
  smtpUrl: null,
  delivery: DEFAULT_DELIVERY_TUNING,
  storageRetryMs: 1000,
  storageMinFreeBytes: 1024 * 1024,
  fileOrphanMs: 24 * 3600_000,
  fileSweepMs: 3600_000,
  searchExpandDelayMs: 200
}

export interface ServerDeps {
  store: DocStore
  logger: Logger
  timers?: Timers
  now?: () => number
  /** Collect process metrics (off in tests that run many servers). */
  processMetrics?: boolean
  /** Where uploaded files' bytes go (default: `files/` in the store's folder). */
  blobs?: BlobStore
  /** Cluster mode (docs/cluster.md): the bus to the other nodes and the store's locked append. Absent: one node. */
  cluster?: ClusterOptions
}

export interface ParleyServer {
  readonly http: FastifyInstance
  readonly auth: Authenticator
  readonly metrics: Metrics
  readonly rooms: RoomManager
  readonly settings: SettingsState
  /** Durable server events (messages, participants, users); subscribe for webhooks and inboxes. */
  readonly events: EventBus
  /** Inbox index, notifications and the webhook/email outbox, fed by `events`. */
  readonly eventServices: EventServices
  /** Storage health (fail-stop and recovery); `/healthz` answers from it. */
  readonly storage: StorageGuard
  /** Uploaded files: records, attachment checks, life cycle. */
  readonly files: FileService
  /** The message search index, fed by `events`. */
  readonly search: SearchIndex
  /** Starts listening; resolves with the bound address. */
  listen (): Promise<{ host: string, port: number, url: string }>
  /** Stops accepting, closes sockets with 1001, flushes every room. Does not close the store. */
  close (): Promise<void>
}

const nodeTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: h => clearInterval(h as NodeJS.Timeout)
}

/** Seconds a client is asked to wait (`Retry-After`) while storage is failing. */
const STORAGE_RETRY_AFTER_S = 5
/** The router's limit on one path parameter, in characters as sent (see `frameworkErrors`). */
const MAX_PARAM_LENGTH = 1024

/** Maps any error thrown in a route to a ChatError. */
const toChatError = (err: FastifyError, store: DocStore): ChatError => {
  if (isChatError(err)) return err
  // A read while the store is being reopened after a failure.
  if (store.writeFailure !== null) return new ChatError('STORAGE_UNAVAILABLE')
  if (err.validation !== undefined) return new ChatError('INVALID_REQUEST', err.message)
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return new ChatError('BODY_TOO_LARGE')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new ChatError('UNSUPPORTED_MEDIA_TYPE')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return new ChatError('INVALID_REQUEST', err.message)
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new ChatError('INVALID_REQUEST', err.message)
  }
  return new ChatError('INTERNAL')
}

export const createServer = async (config: ServerConfig, deps: ServerDeps): Promise<ParleyServer> => {
  const timers = deps.timers ?? nodeTimers
  const now = deps.now ?? Date.now
  const { store, logger } = deps
  const metrics = createMetrics(deps.processMetrics ?? false)
  const auth = createAuthenticator(config.secret, now)
  const events = new EventBus((err, event) => logger.error({ err, event: event.type }, 'event subscriber failed'))
  const newId = (): string => randomUUID()
  const files = new FileService({
    section: store.section('files'),
    blobs: deps.blobs ?? await FsBlobStore.open(join(store.location, 'files')),
    settings: () => settings.current,
    timers,
    now,
    newId,
    orphanMs: config.fileOrphanMs,
    sweepMs: config.fileSweepMs,
    // Other nodes judge attachments too: claims must be seen by them (file-service.ts).
    durableClaims: deps.cluster !== undefined,
    onError: (err, what) => logger.error({ err }, `${what} failed`)
  })
  events.subscribe(e => { files.handle(e) })
  const search = new SearchIndex({
    section: store.section(SEARCH_SECTION),
    withDoc: async (conv, fn) => await rooms.withRoom(conv, room => fn(room.doc)),
    readArchive: async (conv, beforePos, limit) => await store.readArchive(conv, beforePos, limit),
    onError: err => logger.error({ err }, 'search index update failed'),
    timers,
    expandDelayMs: config.searchExpandDelayMs
  })
  await search.open()
  events.addStager(evs => search.stage(evs))
  events.subscribe(e => { search.handle(e) })
  // The one place where cluster mode is chosen: its rooms, and whom changes are told to.
  const cluster = deps.cluster === undefined ? null : new ClusterNode(deps.cluster, logger, timers)
  const peers: NodePeers = cluster ?? SINGLE_NODE
  const rooms: RoomManager = new RoomManager({
    store,
    logger,
    metrics,
    timers,
    now,
    settings: () => settings.current,
    events,
    idleUnloadMs: config.idleUnloadMs,
    compactAfterUpdates: config.compactAfterUpdates,
    compactAfterBytes: config.compactAfterBytes,
    historyWindow: config.historyWindow,
    archiveChunk: config.archiveChunk,
    keepaliveMs: config.keepaliveMs,
    serverClientIds: createServerClientIds(config.secret),
    checkAttachments: async (conv, claims) => { await files.check(conv, claims) },
    loadRoom: cluster?.loadRoom
  })
  const settings: SettingsState = await SettingsState.load(store, () => {
    for (const room of rooms.loaded()) room.reevaluate()
  }, () => { peers.settingsChanged() })
  const bans = new BanList(store.section(BANS_SECTION), now, conv => { peers.bansChanged(conv) })
  const limiter = new MessageRateLimiter(now, () => settings.current.messageRate)
  const sync: SyncEndpoint = createSyncEndpoint({
    auth, rooms, store, bans, logger, metrics, timers, now, limiter, settings: () => settings.current,
    heartbeatMs: config.heartbeatMs, admissionTimeoutMs: config.admissionTimeoutMs
  })

  const http = Fastify({
    bodyLimit: config.bodyLimit,
    // Path parameters are ids (at most 128 characters, contract §2); the router's own limit sits
    // well above that so every longer one reaches its route and is refused there as INVALID_ID.
    // Past this limit, and for a parameter that is not valid percent-encoding, the router answers
    // through `frameworkErrors` (server/http-errors.ts), in the project's error shape.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } }
  })
  // JSON in and out: any other body type is refused with 415.
  http.removeContentTypeParser('text/plain')
  http.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toChatError(err, store)
    if (e.code === 'INTERNAL') logger.error({ err, method: req.method, url: req.url }, 'request failed')
    else logger.info({ method: req.method, url: req.url.split('?')[0], status: e.status, code: e.code }, 'request refused')
    if (e.code === 'STORAGE_UNAVAILABLE') void reply.header('retry-after', String(STORAGE_RETRY_AFTER_S))
    void reply.status(e.status).send({ error: e.toJSON() })
  })
  http.setNotFoundHandler((req, reply) => {
    const e = new ChatError('ROUTE_NOT_FOUND', `No route ${req.method} ${req.url.split('?')[0]}`)
    void reply.status(e.status).send({ error: e.toJSON() })
  })
  await registerSecurityHeaders(http)
  await registerOpenApi(http)
  const storage = createStorageGuard({
    store,
    logger,
    metrics,
    timers,
    findLostWrites: async () => await rooms.findLostWrites(),
    onResumed: () => {
      rooms.resumeWrites()
      eventServices.inbox.retryRefused()
    },
    retryMs: config.storageRetryMs,
    minFreeBytes: config.storageMinFreeBytes
  })
  http.get('/healthz', async (_req, reply) => {
    const health = storage.health()
    if (health.ok) return { ok: true }
    const e = new ChatError('STORAGE_UNAVAILABLE', health.reason)
    void reply.status(e.status).header('retry-after', String(STORAGE_RETRY_AFTER_S))
    return { ok: false, error: e.toJSON() }
  })
  http.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
  registerWebRoutes(http, { auth, config, logger })
  const restDeps: RestDeps = { auth, rooms, store, settings, events, bans, peers, now, newId, files, search, limiter }
  registerUserRoutes(http, restDeps)
  registerModerationRoutes(http, restDeps)
  registerConversationRoutes(http, restDeps)
  registerMessageRoutes(http, restDeps)
  registerBackupRoutes(http, restDeps)
  await registerFileRoutes(http, restDeps, files)
  const eventServices = createEventServices({
    secret: config.secret, smtpUrl: config.smtpUrl, tuning: config.delivery,
    store, logger, timers, now, rooms, settings: () => settings.current, events
  })
  registerInboxRoutes(http, restDeps, eventServices.inbox)
  registerSearchRoutes(http, restDeps, search, eventServices.inbox, readLimit)
  metrics.delivery.outboxPending = () => eventServices.outbox.pending
  metrics.delivery.notificationsPending = () => eventServices.notifier.pendingConversations

  http.server.on('upgrade', (req, socket, head) => {
    sync.handleUpgrade(req, socket, head)
  })

  let closing: Promise<void> | null = null
  return {
    http,
    auth,
    metrics,
    rooms,
    settings,
    events,
    eventServices,
    storage,
    files,
    search,
    async listen () {
      await http.listen({ host: config.host, port: config.port })
      await eventServices.start()
      files.start()
      cluster?.start({
        rooms,
        reloadSettings: async () => { await settings.reload() },
        forgetBans: conv => { bans.forget(conv) },
        forgetAllBans: () => { bans.forgetAll() },
        conversationExists: async conv => await store.conversationExists(conv),
        isBanned: async (conv, userId) => await bans.find(conv, userId) !== undefined,
        maxGuests: () => settings.current.maxGuests
      })
      const addr = http.server.address() as AddressInfo
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      return { host: addr.address, port: addr.port, url: `http://${host}:${addr.port}` }
    },
    async close () {
      closing ??= (async () => {
        sync.stop()
        cluster?.stop()
        storage.stop()
        sync.closeAll(1001)
        await Promise.all([http.close(), rooms.unloadAll()])
        await eventServices.stop()
        search.stop()
        await Promise.all([files.stop(), search.settled()])
        metrics.stop()
      })()
      await closing
    }
  }
}
