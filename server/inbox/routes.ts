/**
 * REST: `GET /v1/users/:userId/conversations` (contract §6), served from the inbox index:
 * `{ data: [{ id, subject, lastMessage, unreadCount, lastActivityAt }] }`, newest activity first.
 * The user itself or an admin.
 */
import type { FastifyInstance } from 'fastify'
import { toUserId } from '../../shared/ids.ts'
import { requireSelfOrAdmin } from '../rest/permissions.ts'
import { param, principalOf, type RestDeps } from '../rest/deps.ts'
import type { InboxIndex } from './inbox-index.ts'

export const registerInboxRoutes = (app: FastifyInstance, deps: RestDeps, inbox: InboxIndex): void => {
  app.get('/v1/users/:userId/conversations', async req => {
    const principal = await principalOf(deps, req)
    const userId = toUserId(param(req, 'userId'))
    requireSelfOrAdmin(principal, userId)
    return { data: await inbox.list(userId) }
  })
}
