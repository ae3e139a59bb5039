/**
 * REST: moderation of a conversation (contract §6, v1.1), by an admin or one of its moderators:
 *
 *   PUT    /v1/conversations/:id/bans/:userId   `{ reason?, until? }` ban (replaces an earlier one)
 *   DELETE /v1/conversations/:id/bans/:userId   lift the ban
 *   GET    /v1/conversations/:id/bans           the bans in force
 *   DELETE /v1/conversations/:id/guests/:userId close that user's guest connections (a kick:
 *                                               it may join again)
 *
 * A ban closes the user's live connections at once (4403 `BANNED`, participant or guest) and
 * removes it from the participants; until it ends the user joins in no role and every REST
 * request of its token about that conversation is refused (403 `BANNED`, the guard below).
 * Every action emits an event (and webhook) naming who did it.
 */
import type { FastifyInstance } from 'fastify'
import { ChatError } from '../../shared/errors.ts'
import { isValidId, toConversationId, toUserId } from '../../shared/ids.ts'
import { getParticipant, isModerator } from '../../shared/doc.ts'
import { checkDisplayText } from '../../shared/text.ts'
import { writeWithEvents, type ServerEvent, type StagedWrite } from '../events.ts'
import type { Ban } from '../moderation/bans.ts'
import { actorOf, requireModerator } from './permissions.ts'
import { banBody } from './schemas.ts'
import { param, principalOf, type RestDeps } from './deps.ts'
import { removeParticipant, withConversation } from './conversations.ts'

/** Writes staged puts (a webhook's outbox entries) in one batch, for a change that stores nothing else. */
const putStaged = async (deps: RestDeps, staged: readonly StagedWrite[]): Promise<void> => {
  if (staged.length > 0) await deps.store.section(staged[0].section).batch([], staged)
}

const banView = (b: Ban): Record<string, unknown> => ({ userId: b.userId, reason: b.reason, until: b.until, createdAt: b.createdAt, by: b.by })

export const registerModerationRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  // A banned user's token may not read or write anything of that conversation over REST.
  app.addHook('preHandler', async req => {
    const route = req.routeOptions.url
    if (route === undefined || !route.startsWith('/v1/conversations/:id')) return
    const header = req.headers.authorization
    if (header === undefined) return // the route refuses it
    const principal = await deps.auth.fromAuthorizationHeader(header).catch(() => null)
    if (principal === null || principal.kind !== 'user') return
    const id = param(req, 'id')
    if (!isValidId(id)) return // the route refuses it
    if (await deps.bans.find(id, principal.userId) !== undefined) throw new ChatError('BANNED')
  })

  app.put('/v1/conversations/:id/bans/:userId', { schema: { body: banBody } }, async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const userId = toUserId(param(req, 'userId'))
    const body = (req.body ?? {}) as { reason?: string, until?: number }
    if (body.reason !== undefined) checkDisplayText(body.reason, 'reason')
    const now = deps.now()
    if (body.until !== undefined && body.until <= now) throw new ChatError('INVALID_REQUEST', 'until must be in the future (milliseconds since the epoch)')
    return await withConversation(deps, id, async room => {
      requireModerator(principal, room.doc)
      if (principal.kind === 'user' && isModerator(room.doc, userId)) {
        throw new ChatError('FORBIDDEN', 'A moderator is banned only by an admin (remove its role first)')
      }
      const by = actorOf(principal)
      const ban: Ban = { userId, reason: body.reason ?? null, until: body.until ?? null, createdAt: now, by }
      const event: ServerEvent = { type: 'conversation.user_banned', conversationId: id, userId, reason: ban.reason, until: ban.until, by }
      await writeWithEvents(deps.events, [event], async staged => { await deps.bans.put(id, ban, staged) })
      room.closeUser(userId, new ChatError('BANNED'))
      deps.peers.closeUser(id, userId, 'BANNED')
      if (getParticipant(room.doc, userId) !== undefined) await removeParticipant(deps, room, userId, by)
      return banView(ban)
    })
  })

  app.delete('/v1/conversations/:id/bans/:userId', async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const userId = toUserId(param(req, 'userId'))
    await withConversation(deps, id, async room => {
      requireModerator(principal, room.doc)
      if (await deps.bans.find(id, userId) === undefined) throw new ChatError('BAN_NOT_FOUND')
      const event: ServerEvent = { type: 'conversation.user_unbanned', conversationId: id, userId, by: actorOf(principal) }
      await writeWithEvents(deps.events, [event], async staged => { await deps.bans.lift(id, userId, staged) })
    })
    return await reply.status(204).send()
  })

  app.get('/v1/conversations/:id/bans', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    return await withConversation(deps, id, async room => {
      requireModerator(principal, room.doc)
      return { data: (await deps.bans.list(id)).map(banView) }
    })
  })

  app.delete('/v1/conversations/:id/guests/:userId', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const userId = toUserId(param(req, 'userId'))
    return await withConversation(deps, id, async room => {
      requireModerator(principal, room.doc)
      const closed = room.closeUser(userId, new ChatError('KICKED'), 'guest')
      deps.peers.closeUser(id, userId, 'KICKED', 'guest')
      if (closed > 0) {
        const event: ServerEvent = { type: 'conversation.guest_kicked', conversationId: id, userId, connections: closed, by: actorOf(principal) }
        await writeWithEvents(deps.events, [event], async staged => { await putStaged(deps, staged) })
      }
      return { closed }
    })
  })
}
