/**
 * The sync endpoint (contract §3): a WebSocket upgrade on `/<conversationId>?token=…[&guest=1]`.
 *
 * Every socket is accepted first, because the stock client retries a refused HTTP upgrade
 * forever: a refusal is an auth message (type 2, permission denied, JSON reason) followed by a
 * 44xx close, which the stock client treats as final. Frames that arrive while the connection
 * is being admitted are kept and processed, in order, once the room is loaded.
 *
 * Connection limits (docs/api.md, Limits), all refused with 4429 `RATE_LIMITED`: sockets from
 * one address not admitted yet (`maxPendingConnectionsPerAddress`), admitted connections of one
 * user (`maxConnectionsPerUser`) and distinct conversations they hold open
 * (`maxConversationsPerUser`, checked before the room is loaded). A socket not admitted within
 * `admissionTimeoutMs` (10 s) is closed with 1013 `ADMISSION_TIMEOUT`.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import type { Logger } from 'pino'
import { decideAdmission } from '../../shared/access.ts'
import { ChatError, isChatError } from '../../shared/errors.ts'
import { toConversationId } from '../../shared/ids.ts'
import { encodePermissionDenied } from '../../shared/protocol.ts'
import { getGuestAccess, getParticipant } from '../../shared/doc.ts'
import type { Settings } from '../../shared/settings.ts'
import type { Authenticator } from '../auth.ts'
import type { Metrics } from '../metrics.ts'
import type { RoomManager } from '../rooms/room-manager.ts'
import type { DocStore } from '../storage/port.ts'
import type { BanList } from '../moderation/bans.ts'
import type { Timers } from '../presence/presence-hub.ts'
import type { MessageRateLimiter } from '../rate-limit.ts'
import { SyncConnection } from './connection.ts'
import { armTokenExpiry } from './token-expiry.ts'
import { MAX_FRAME_BYTES, mapOversizeFrames } from './frame-limit.ts'

export interface SyncEndpointDeps {
  auth: Authenticator
  rooms: RoomManager
  store: DocStore
  bans: BanList
  logger: Logger
  metrics: Metrics
  timers: Timers
  settings: () => Settings
  /** Ping interval; a connection that missed one pong is closed at the next (so within 2×). */
  heartbeatMs: number
  /** A socket not admitted this long after its upgrade is closed (contract §7: 10 s). */
  admissionTimeoutMs: number
  now: () => number
  limiter: MessageRateLimiter
}

export interface SyncEndpoint {
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll (code: number): void
  /** Open sockets, admitted or not. */
  socketCount (): number
  stop (): void
}

/** What a connection may send before it is admitted (the room loads meanwhile). */
const MAX_PENDING_BYTES = 4 * 1024 * 1024
/** Frames a connection may send before it is admitted (a stock client sends two or three). */
const MAX_PENDING_FRAMES = 1024
/** How long a refused socket may take to finish the closing handshake before it is cut. */
const CLOSE_GRACE_MS = 2000

const toBytes = (data: RawData): Uint8Array => {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data))
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

export const createSyncEndpoint = (deps: SyncEndpointDeps): SyncEndpoint => {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false })
  const live = new Map<WebSocket, SyncConnection | null>()
  let nextConnId = 1
  /** Sockets not admitted yet, per remote address. */
  const pendingByAddress = new Map<string, number>()
  /** Connections being admitted or admitted, per user, per conversation. */
  const held = new Map<string, Map<string, number>>()

  const countDown = <K>(map: Map<K, number>, key: K): void => {
    const n = (map.get(key) ?? 0) - 1
    if (n > 0) map.set(key, n)
    else map.delete(key)
  }

  /** Reserves a connection slot for `userId` in `conversationId`, or throws RATE_LIMITED. */
  const hold = (userId: string, conversationId: string): void => {
    const settings = deps.settings()
    const byConversation = held.get(userId) ?? new Map<string, number>()
    let total = 0
    for (const n of byConversation.values()) total += n
    if (total >= settings.maxConnectionsPerUser) {
      throw new ChatError('RATE_LIMITED', `A user may hold at most ${settings.maxConnectionsPerUser} connections at once`)
    }
    if (!byConversation.has(conversationId) && byConversation.size >= settings.maxConversationsPerUser) {
      throw new ChatError('RATE_LIMITED', `A user may hold at most ${settings.maxConversationsPerUser} conversations open at once`)
    }
    byConversation.set(conversationId, (byConversation.get(conversationId) ?? 0) + 1)
    held.set(userId, byConversation)
  }

  const release = (userId: string, conversationId: string): void => {
    const byConversation = held.get(userId)
    if (byConversation === undefined) return
    countDown(byConversation, conversationId)
    if (byConversation.size === 0) held.delete(userId)
  }

  /** The auth frame (type 2, permission denied) that explains a close. */
  const sendRefusal = (ws: WebSocket, error: ChatError): void => {
    ws.send(encodePermissionDenied(error.code, error.message))
    deps.metrics.framesSent.inc()
  }

  const refuse = (ws: WebSocket, error: ChatError, context: Record<string, unknown>): void => {
    deps.logger.info({ ...context, code: error.code, closeCode: error.closeCode }, 'connection refused')
    if (ws.readyState !== ws.OPEN) return
    // 44xx refusals are final and explained; others (1011, 1013) ask the peer to come back.
    if (error.closeCode >= 4000) sendRefusal(ws, error)
    closeSoon(ws, error.closeCode, error.code)
  }

  /** Starts the closing handshake, and cuts the socket if the peer does not finish it soon. */
  const closeSoon = (ws: WebSocket, code: number, reason: string): void => {
    ws.close(code, reason)
    const timer = deps.timers.setTimeout(() => ws.terminate(), CLOSE_GRACE_MS)
    ws.once('close', () => deps.timers.clearTimeout(timer))
  }

  const admit = async (ws: WebSocket, req: IncomingMessage): Promise<void> => {
    const address = req.socket.remoteAddress ?? ''
    let awaitingAdmission = true
    const admitted = (): void => {
      if (!awaitingAdmission) return
      awaitingAdmission = false
      countDown(pendingByAddress, address)
      deps.timers.clearTimeout(admissionTimer)
    }
    pendingByAddress.set(address, (pendingByAddress.get(address) ?? 0) + 1)
    const admissionTimer = deps.timers.setTimeout(() => {
      if (conn !== null || refused) return
      refused = true
      pending.length = 0
      refuse(ws, new ChatError('ADMISSION_TIMEOUT'), context)
    }, deps.admissionTimeoutMs)
    const pending: Array<[Uint8Array, boolean]> = []
    let pendingBytes = 0
    let refused = false
    let conn: SyncConnection | null = null
    let oversize = false
    mapOversizeFrames(ws, 4413, () => {
      oversize = true
      const e = new ChatError('FRAME_TOO_LARGE')
      if (conn !== null) conn.markClosed()
      if (ws.readyState === ws.OPEN) sendRefusal(ws, e)
    })
    ws.on('message', (data, isBinary) => {
      if (refused) return
      if (conn !== null) {
        conn.receive(toBytes(data), isBinary)
        return
      }
      const bytes = toBytes(data)
      pendingBytes += bytes.byteLength
      if (pendingBytes > MAX_PENDING_BYTES) {
        refused = true
        pending.length = 0
        refuse(ws, new ChatError('FRAME_TOO_LARGE', 'Too much data sent before the connection was admitted'), context)
        return
      }
      if (pending.length >= MAX_PENDING_FRAMES) {
        refused = true
        pending.length = 0
        refuse(ws, new ChatError('RATE_LIMITED', 'Too many frames sent before the connection was admitted'), context)
        return
      }
      pending.push([bytes, isBinary])
    })
    ws.on('pong', data => { conn?.pong(data) })
    ws.on('error', () => { /* the close event follows; nothing to add */ })
    live.set(ws, null)

    const url = new URL(req.url ?? '/', 'http://localhost')
    const context: Record<string, unknown> = { path: url.pathname }
    let room: Awaited<ReturnType<RoomManager['acquire']>> | null = null
    let closed = false
    let holding: { userId: string, conversationId: string } | null = null
    ws.on('close', (code) => {
      closed = true
      admitted()
      if (holding !== null) release(holding.userId, holding.conversationId)
      live.delete(ws)
      if (conn !== null) {
        conn.markClosed()
        deps.metrics.connections.dec({ role: conn.role })
        deps.logger.info({ user: conn.userId, conversation: room?.id, role: conn.role, closeCode: oversize ? 4413 : code }, 'connection closed')
      }
      if (room !== null) {
        if (conn !== null) room.detach(conn)
        deps.rooms.release(room)
      }
    })

    try {
      let rawId: string
      try {
        rawId = decodeURIComponent(url.pathname.slice(1))
      } catch {
        throw new ChatError('INVALID_ID', 'The conversation id is not valid percent-encoding')
      }
      const conversationId = toConversationId(rawId)
      context.conversation = conversationId
      if ((pendingByAddress.get(address) ?? 0) > deps.settings().maxPendingConnectionsPerAddress) {
        throw new ChatError('RATE_LIMITED', 'Too many connections from this address are waiting to be admitted')
      }
      const { userId, expiresInMs } = await deps.auth.verifySocketToken(url.searchParams.get('token'))
      context.user = userId
      if (closed || refused) return
      const blocked = deps.limiter.blockedFor(conversationId, userId)
      if (blocked > 0) throw new ChatError('RATE_LIMITED', `Too many messages: retry in ${Math.ceil(blocked / 1000)} s`)
      hold(userId, conversationId)
      holding = { userId, conversationId }
      if (deps.rooms.peek(conversationId) === undefined && !(await deps.store.conversationExists(conversationId))) {
        throw new ChatError('CONVERSATION_NOT_FOUND')
      }
      const [record] = await Promise.all([deps.store.getUser(userId), deps.bans.load(conversationId)])
      if (closed || refused) return
      // Not strict: in a cluster, a commit still on its way from another node follows the first sync.
      const acquired = await deps.rooms.acquire(conversationId, { strict: false })
      if (closed || refused) { deps.rooms.release(acquired); return }
      room = acquired
      // Every created conversation has `meta.createdAt`; a document without it was deleted (or
      // is being created) while this connection waited.
      if (!room.doc.getMap('meta').has('createdAt')) throw new ChatError('CONVERSATION_NOT_FOUND')
      const settings = deps.settings()
      const asGuest = url.searchParams.get('guest') === '1'
      const admission = decideAdmission({
        participant: getParticipant(room.doc, userId),
        asGuest,
        browserSync: settings.browserSync,
        guestAccess: getGuestAccess(room.doc),
        banned: deps.bans.activeBan(conversationId, userId) !== undefined
      })
      // A user counts once, however many tabs it opens.
      if (admission.role === 'guest' && !room.presence.hasGuest(userId) &&
        room.presence.distinctGuestUsers() >= settings.maxGuests) {
        throw new ChatError('GUEST_LIMIT')
      }
      const connection = conn = new SyncConnection(ws, room, { connId: nextConnId++, userId, recordName: record?.name, ...admission }, deps)
      room.attach(conn)
      ws.once('close', armTokenExpiry(deps.timers, expiresInMs, () => connection.close(new ChatError('TOKEN_EXPIRED'))))
      live.set(ws, conn)
      deps.metrics.connections.inc({ role: conn.role })
      admitted()
      deps.logger.info({ user: userId, conversation: conversationId, role: conn.role, canWrite: conn.canWrite }, 'connection opened')
      conn.start()
      for (const [frame, isBinary] of pending) conn.receive(frame, isBinary)
      pending.length = 0
    } catch (e) {
      if (refused) return
      refused = true
      pending.length = 0
      // A read failing while storage is being reopened after a failure is not a bug: come back later.
      const error = isChatError(e) ? e : new ChatError(deps.store.writeFailure !== null ? 'STORAGE_UNAVAILABLE' : 'INTERNAL')
      if (error.code === 'INTERNAL') deps.logger.error({ err: e, ...context }, 'admission failed')
      refuse(ws, error, context)
    }
  }

  const heartbeat = deps.timers.setInterval(() => {
    for (const [ws, conn] of live) {
      if (conn === null) continue
      if (!conn.heartbeat()) { conn.markClosed(); ws.terminate() }
    }
  }, deps.heartbeatMs)

  return {
    handleUpgrade (req, socket, head) {
      wss.handleUpgrade(req, socket, head, ws => { void admit(ws, req) })
    },
    closeAll (code) {
      for (const [ws, conn] of live) {
        conn?.markClosed()
        if (ws.readyState === ws.OPEN) ws.close(code, 'server shutting down')
        else ws.terminate()
      }
    },
    socketCount: () => live.size,
    stop () {
      deps.timers.clearInterval(heartbeat)
      wss.close()
    }
  }
}
