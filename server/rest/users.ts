/** REST: users and the settings (contract §6); a user's conversation list is in server/inbox/routes.ts. */
import type { FastifyInstance } from 'fastify'
import { ChatError } from '../../shared/errors.ts'
import { toUserId } from '../../shared/ids.ts'
import type { UserRecord } from '../storage/port.ts'
import { requireAdmin, requireBrowserSync } from './permissions.ts'
import { userBody } from './schemas.ts'
import { writeWithEvents } from '../events.ts'
import { checkDisplayText } from '../../shared/text.ts'
import { param, principalOf, type RestDeps } from './deps.ts'

interface UserPatch {
  name?: string
  email?: string | string[]
  phone?: string | string[]
  photoUrl?: string | null
  custom?: Record<string, string>
}

/** What any signed-in user may read of another: how it is shown in a chat, never how it is reached. */
const publicProfile = (u: UserRecord): { id: string, name: string, photoUrl?: string | null } =>
  u.photoUrl === undefined ? { id: u.id, name: u.name } : { id: u.id, name: u.name, photoUrl: u.photoUrl }

const asList = (v: string | string[] | undefined): string[] | undefined => v === undefined ? undefined : Array.isArray(v) ? v : [v]

export const registerUserRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  app.put('/v1/users/:userId', { schema: { body: userBody } }, async (req, reply) => {
    const principal = await principalOf(deps, req)
    requireBrowserSync(principal, deps.settings.current)
    const userId = toUserId(param(req, 'userId'))
    const body = (req.body ?? {}) as UserPatch
    if (body.name !== undefined) checkDisplayText(body.name, 'name')
    const old = await deps.store.getUser(userId)
    // A user token creates other users (to add them as participants) but changes only its own
    // record: otherwise anyone could redirect another user's notification emails.
    if (principal.kind === 'user' && principal.userId !== userId) {
      if (old !== undefined) throw new ChatError('FORBIDDEN', 'A user token may only change its own user')
      // Creating someone else: a name and a photo only. Their email and phone are theirs (or an
      // admin's) to set, since notifications go there.
      if (body.email !== undefined || body.phone !== undefined || body.custom !== undefined) {
        throw new ChatError('FORBIDDEN', 'A user token may set only name and photoUrl of another user')
      }
    }
    if (old === undefined && body.name === undefined) throw new ChatError('INVALID_REQUEST', 'A new user needs a name')
    const next: UserRecord = { ...(old ?? { id: userId, name: '', createdAt: deps.now() }) }
    if (body.name !== undefined) next.name = body.name
    const email = asList(body.email)
    if (email !== undefined) next.email = email
    const phone = asList(body.phone)
    if (phone !== undefined) next.phone = phone
    if (body.photoUrl !== undefined) next.photoUrl = body.photoUrl
    if (body.custom !== undefined) next.custom = body.custom
    await writeWithEvents(deps.events, [{ type: 'user.updated', userId, user: { ...next } }], async staged => {
      await deps.store.putUser(next, staged)
    })
    return await reply.status(old === undefined ? 201 : 200).send(next)
  })

  app.get('/v1/users/:userId', async req => {
    const principal = await principalOf(deps, req)
    const userId = toUserId(param(req, 'userId'))
    const user = await deps.store.getUser(userId)
    if (user === undefined) throw new ChatError('USER_NOT_FOUND')
    // Another user's record: its public profile only (what chats show next to a message).
    if (principal.kind === 'user' && principal.userId !== userId) return publicProfile(user)
    return user
  })

  // GET /v1/users/:userId/conversations is served from the inbox index: server/inbox/routes.ts.

  app.get('/v1/settings', async req => {
    requireAdmin(await principalOf(deps, req))
    return deps.settings.current
  })

  app.patch('/v1/settings', async req => {
    requireAdmin(await principalOf(deps, req))
    return await deps.settings.patch(req.body)
  })
}
