/**
 * REST: conversations, their participants and their presence (contract §6).
 * Every change goes through the conversation's live document (`room.transact`), so connected
 * peers see it at once and it is durable before the request is answered.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type * as Y from 'yjs'
import { ChatError } from '../../shared/errors.ts'
import { toConversationId, toUserId } from '../../shared/ids.ts'
import { getGuestAccess, getParticipant, listParticipants, metaOf, participantsOf } from '../../shared/doc.ts'
import type { Access, GuestAccess, Notify, Participant } from '../../shared/schema.ts'
import type { Room } from '../rooms/room.ts'
import { requireAdmin, requireEditor, requireReader, requireBrowserSync } from './permissions.ts'
import { conversationBody, participantBody } from './schemas.ts'
import { writeWithEvents } from '../events.ts'
import { param, principalOf, type RestDeps } from './deps.ts'
import { slowModeOf } from '../rate-limit.ts'

interface ConversationPatch {
  subject?: string | null
  photoUrl?: string | null
  custom?: Record<string, string>
  guestAccess?: GuestAccess
  /** Seconds between one user's messages, 0 = off (admins only; see rate-limit.ts). */
  slowMode?: number
  participants?: string[]
}

/** The `GET /v1/conversations/:id` shape. */
export const conversationView = (id: string, doc: Y.Doc): Record<string, unknown> => {
  const meta = metaOf(doc)
  const participants: Record<string, { access: Access, notify: Notify }> = {}
  for (const [userId, p] of listParticipants(doc)) participants[userId] = { access: p.access, notify: p.notify }
  return {
    id,
    subject: meta.get('subject') ?? null,
    photoUrl: meta.get('photoUrl') ?? null,
    custom: meta.get('custom') ?? {},
    guestAccess: getGuestAccess(doc),
    slowMode: slowModeOf(doc),
    createdAt: meta.get('createdAt') ?? null,
    participants
  }
}

/** True once the conversation's creation is in its document (every create sets `meta.createdAt`). */
export const isCreated = (doc: Y.Doc): boolean => metaOf(doc).has('createdAt')

/**
 * Loads an existing conversation for the duration of `fn`, once everything it holds is durable;
 * 404 when there is none (also when it was deleted while this request waited).
 */
export const withConversation = async <T>(deps: RestDeps, id: string, fn: (room: Room) => Promise<T> | T): Promise<T> => {
  if (!(await deps.store.conversationExists(id))) throw new ChatError('CONVERSATION_NOT_FOUND')
  return await deps.rooms.withRoom(id, async room => {
    if (!isCreated(room.doc)) throw new ChatError('CONVERSATION_NOT_FOUND')
    await room.whenDurable()
    return await fn(room)
  })
}

const checkLimit = (doc: Y.Doc, adding: readonly string[], max: number): void => {
  const current = participantsOf(doc)
  const fresh = new Set(adding.filter(u => !current.has(u)))
  if (current.size + fresh.size > max) {
    throw new ChatError('PARTICIPANT_LIMIT', `A conversation holds at most ${max} participants`)
  }
}

export const registerConversationRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  app.put('/v1/conversations/:id', { schema: { body: conversationBody } }, async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const body = (req.body ?? {}) as ConversationPatch
    const settings = deps.settings.current
    requireBrowserSync(principal, settings)
    if (body.slowMode !== undefined) requireAdmin(principal)
    let created = false
    const view = await deps.rooms.withRoom(id, async room => {
      // Decided on the loaded document, with no await before the transaction: of two
      // concurrent creates, the second sees the first's `createdAt` and is an update.
      const existed = isCreated(room.doc)
      if (existed) requireEditor(principal, room.doc, settings)
      const now = deps.now()
      const adding = [...(body.participants ?? [])]
      if (!existed && principal.kind === 'user') adding.push(principal.userId)
      checkLimit(room.doc, adding, settings.maxParticipants)
      const added: string[] = []
      created = !existed
      await room.transact(doc => {
        const meta = metaOf(doc)
        if (!meta.has('createdAt')) meta.set('createdAt', now)
        if (!meta.has('guestAccess')) meta.set('guestAccess', 'write')
        for (const key of ['subject', 'photoUrl', 'custom', 'guestAccess'] as const) {
          if (body[key] !== undefined) meta.set(key, body[key])
        }
        if (body.slowMode !== undefined) meta.set('slowMode', body.slowMode)
        const participants = participantsOf(doc)
        for (const userId of adding) {
          if (participants.has(userId)) continue
          participants.set(userId, { access: 'ReadWrite', notify: true, joinedAt: now })
          added.push(userId)
        }
      })
      if (created) await deps.store.createConversation(id, now)
      await Promise.all(added.map(u => deps.store.setMember(u, id, now)))
      return conversationView(id, room.doc)
    })
    return await reply.status(created ? 201 : 200).send(view)
  })

  app.get('/v1/conversations/:id', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    return await withConversation(deps, id, room => {
      requireReader(principal, room.doc)
      return conversationView(id, room.doc)
    })
  })

  app.delete('/v1/conversations/:id', async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    requireAdmin(principal)
    const members = await withConversation(deps, id, room => [...listParticipants(room.doc).keys()])
    // Nobody may load the conversation again until its data is gone (a load in between would
    // bring the old document back).
    await writeWithEvents(deps.events, [{ type: 'conversation.deleted', conversationId: id }], async staged => {
      await deps.rooms.remove(id, new ChatError('CONVERSATION_DELETED'), async () => {
        await deps.store.deleteConversation(id, members, staged)
      })
    })
    return await reply.status(204).send()
  })

  /**
   * Changes one participant as `principal` (an editor of the conversation), checked and written
   * while the room is held once. `make` returns the new entry, or null to remove it.
   */
  const writeParticipant = async (
    req: FastifyRequest, make: (old: Participant | undefined, now: number) => Participant | null
  ): Promise<Record<string, unknown>> => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const userId = toUserId(param(req, 'userId'))
    return await withConversation(deps, id, async room => {
      requireEditor(principal, room.doc, deps.settings.current)
      const now = deps.now()
      const next = make(getParticipant(room.doc, userId), now)
      if (next === null) {
        await room.transact(doc => { participantsOf(doc).delete(userId) })
        await deps.store.setMember(userId, id, null)
        return {}
      }
      checkLimit(room.doc, [userId], deps.settings.current.maxParticipants)
      await room.transact(doc => { participantsOf(doc).set(userId, next) })
      await deps.store.setMember(userId, id, next.joinedAt)
      return { access: next.access, notify: next.notify }
    })
  }

  const participantPatch = (req: FastifyRequest): { access?: Access, notify?: Notify } => (req.body ?? {}) as { access?: Access, notify?: Notify }

  app.put('/v1/conversations/:id/participants/:userId', { schema: { body: participantBody } }, async req => {
    const body = participantPatch(req)
    return await writeParticipant(req, (old, now) => ({
      access: body.access ?? 'ReadWrite', notify: body.notify ?? true, joinedAt: old?.joinedAt ?? now
    }))
  })

  app.patch('/v1/conversations/:id/participants/:userId', { schema: { body: participantBody } }, async req => {
    const body = participantPatch(req)
    return await writeParticipant(req, old => {
      if (old === undefined) throw new ChatError('PARTICIPANT_NOT_FOUND')
      return { access: body.access ?? old.access, notify: body.notify ?? old.notify, joinedAt: old.joinedAt }
    })
  })

  app.delete('/v1/conversations/:id/participants/:userId', async (req, reply) => {
    await writeParticipant(req, old => {
      if (old === undefined) throw new ChatError('PARTICIPANT_NOT_FOUND')
      return null
    })
    return await reply.status(204).send()
  })

  app.get('/v1/conversations/:id/presence', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    return await withConversation(deps, id, room => {
      requireReader(principal, room.doc)
      const s = room.presence.summary()
      return { participants: s.participants, guestCount: s.guestCount, guests: s.guests.slice(0, 100) }
    })
  })
}
