/** What the REST routes are built from. */
import type { FastifyRequest } from 'fastify'
import type { Authenticator, Principal } from '../auth.ts'
import type { RoomManager } from '../rooms/room-manager.ts'
import type { SettingsState } from '../settings-state.ts'
import type { DocStore } from '../storage/port.ts'
import type { EventSink } from '../events.ts'
import type { BanList } from '../moderation/bans.ts'
import type { FileService } from '../files/file-service.ts'
import type { SearchIndex } from '../search/search-index.ts'
import type { MessageRateLimiter } from '../rate-limit.ts'
import type { NodePeers } from '../cluster/peers.ts'

export interface RestDeps {
  auth: Authenticator
  rooms: RoomManager
  store: DocStore
  settings: SettingsState
  events: EventSink
  bans: BanList
  /** The other nodes of a cluster (nobody on one node). */
  peers: NodePeers
  now: () => number
  newId: () => string
  /** Uploaded files (checks attachments of REST messages). */
  files: FileService
  /** The message search index. */
  search: SearchIndex
  /** Message rate limits, shared with the sync endpoint. */
  limiter: MessageRateLimiter
}

/** The principal of a request, from its Authorization header. */
export const principalOf = async (deps: RestDeps, req: FastifyRequest): Promise<Principal> =>
  await deps.auth.fromAuthorizationHeader(req.headers.authorization)

/** A route parameter, as a string (fastify types params as unknown). */
export const param = (req: FastifyRequest, name: string): string => {
  const v = (req.params as Record<string, unknown>)[name]
  return typeof v === 'string' ? v : ''
}
