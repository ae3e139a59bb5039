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
import type { Access, GuestAccess, Notify, Participant, ParticipantRole } from '../../shared/schema.ts'
import type { Room, TransactRecords } from '../rooms/room.ts'
import { actorOf, moderates, requireAdmin, requireEditor, requireModerator, requireReader, requireBrowserSync } from './permissions.ts'
import type { Principal } from '../auth.ts'
import { checkDisplayText } from '../../shared/text.ts'
import { conversationBody, participantBody } from './schemas.ts'
import { writeWithEvents } from '../events.ts'
import { param, principalOf, type RestDeps } from './deps.ts'
import { slowModeOf } from '../rate-limit.ts'

interface ConversationPatch {
  subject?: string | null
  photoUrl?: string | null
  custom?: Record<string, string>
  guestAccess?: GuestAccess
  /** Seconds between one user's messages, 0 = off (admins and moderators; see rate-limit.ts). */
  slowMode?: number
  participants?: string[]
}

/** The fields a moderator may change in a conversation without being one of its editors. */
const MODERATOR_FIELDS: ReadonlySet<string> = new Set(['slowMode', 'guestAccess'])

/** The user whose token created the conversation (`meta.createdBy`), or null: created with admin credentials. */
export const createdByOf = (doc: Y.Doc): string | null => {
  const v = metaOf(doc).get('createdBy')
  return typeof v === 'string' ? v : null
}

/** A participant as REST shows it. */
const participantView = (p: Participant): { access: Access, notify: Notify, role?: ParticipantRole } =>
  p.role === undefined ? { access: p.access, notify: p.notify } : { access: p.access, notify: p.notify, role: p.role }

/** The `GET /v1/conversations/:id` shape. */
export const conversationView = (id: string, doc: Y.Doc): Record<string, unknown> => {
  const meta = metaOf(doc)
  const participants: Record<string, ReturnType<typeof participantView>> = {}
  for (const [userId, p] of listParticipants(doc)) participants[userId] = participantView(p)
  return {
    id,
    subject: meta.get('subject') ?? null,
    photoUrl: meta.get('photoUrl') ?? null,
    custom: meta.get('custom') ?? {},
    guestAccess: getGuestAccess(doc),
    slowMode: slowModeOf(doc),
    createdAt: meta.get('createdAt') ?? null,
    createdBy: createdByOf(doc),
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

interface ParticipantPatch { access?: Access, notify?: Notify, role?: ParticipantRole | null }

const withRole = (p: Participant, role: ParticipantRole | null): Participant => role === null ? p : { ...p, role }

/** Removes a participant from the document and its conversation list; `actor` as events name it. */
export const removeParticipant = async (_deps: RestDeps, room: Room, userId: string, actor: string | null): Promise<void> => {
  await room.transact(doc => {
    participantsOf(doc).delete(userId)
    return { members: [{ userId, joinedAt: null }] }
  }, actor)
}

const checkLimit = (doc: Y.Doc, adding: readonly string[], max: number): void => {
  const current = participantsOf(doc)
  const fresh = new Set(adding.filter(u => !current.has(u)))
  if (current.size + fresh.size > max) {
    throw new ChatError('PARTICIPANT_LIMIT', `A conversation holds at most ${max} participants`)
  }
}

/**
 * Deletes a conversation with its messages and bans; live peers are closed with 4404. Nobody
 * may load it again until its data is gone (a load in between would bring the old document back).
 */
const deleteConversation = async (deps: RestDeps, id: string): Promise<void> => {
  const members = await withConversation(deps, id, room => [...listParticipants(room.doc).keys()])
  await writeWithEvents(deps.events, [{ type: 'conversation.deleted', conversationId: id }], async staged => {
    await deps.rooms.remove(id, new ChatError('CONVERSATION_DELETED'), async () => {
      await deps.store.deleteConversation(id, members, staged)
    })
  })
  await deps.bans.deleteAll(id)
  deps.peers.conversationDeleted(id)
}

/**
 * Who may change an existing conversation with `body`: an editor (browserSync on, a ReadWrite
 * participant), or a moderator changing only `slowMode` and `guestAccess`; `slowMode` only an
 * admin or a moderator.
 */
const authorizeConversationChange = (principal: Principal, doc: Y.Doc, body: ConversationPatch, deps: RestDeps): void => {
  const keys = Object.keys(body)
  if (!(keys.every(k => MODERATOR_FIELDS.has(k)) && moderates(principal, doc))) requireEditor(principal, doc, deps.settings.current)
  if (body.slowMode !== undefined) requireModerator(principal, doc)
}

/**
 * Who may change participant `old` into `next` (null: remove): admins; moderators for any change
 * that touches a moderator (removing, demoting, appointing or changing one) and for removing
 * anyone; editors (browserSync on, ReadWrite) for the rest.
 */
const authorizeParticipantChange = (principal: Principal, doc: Y.Doc, old: Participant | undefined, next: Participant | null, deps: RestDeps): void => {
  if (old?.role === 'moderator' || next?.role === 'moderator') {
    requireModerator(principal, doc)
    return
  }
  if (next === null && moderates(principal, doc)) return
  requireEditor(principal, doc, deps.settings.current)
}

export const registerConversationRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  app.put('/v1/conversations/:id', { schema: { body: conversationBody } }, async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const body = (req.body ?? {}) as ConversationPatch
    if (body.subject !== undefined && body.subject !== null) checkDisplayText(body.subject, 'subject')
    const claim = (req.query as Record<string, unknown>).claim === '1'
    if (claim) {
      requireAdmin(principal)
      // Created by a user token: start it over as the admin defines it (bounded: a user could
      // squat the id again between the deletion and the creation).
      for (let i = 0; i < 3; i++) {
        const squatted = await deps.rooms.withRoom(id, room => isCreated(room.doc) && createdByOf(room.doc) !== null)
        if (!squatted) break
        await deleteConversation(deps, id)
      }
    }
    await deps.bans.load(id)
    // A document without its record is a creation that crashed before creations were atomic:
    // this PUT completes it (record and every membership) instead of answering 404 forever.
    let recorded = await deps.store.conversationExists(id)
    let created = false
    const view = await deps.rooms.withRoom(id, async room => {
      // Decided on the loaded document, with no await before the transaction: of two
      // concurrent creates, the second sees the first's `createdAt` and is an update.
      const existed = isCreated(room.doc)
      if (existed && !recorded) {
        // Either a crashed creation or a concurrent one still being written: wait for the latter.
        await room.whenDurable()
        recorded = await deps.store.conversationExists(id)
      }
      if (existed) authorizeConversationChange(principal, room.doc, body, deps)
      else requireBrowserSync(principal, deps.settings.current)
      if (claim && createdByOf(room.doc) !== null) throw new ChatError('CLAIM_CONFLICT')
      const settings = deps.settings.current
      const now = deps.now()
      const adding = [...(body.participants ?? [])]
      const creator = !existed && principal.kind === 'user' ? principal.userId : null
      if (creator !== null) adding.push(creator)
      const banned = adding.find(u => deps.bans.activeBan(id, u) !== undefined)
      if (banned !== undefined) throw new ChatError('BANNED', `${banned} is banned from this conversation; lift the ban first`)
      checkLimit(room.doc, adding, settings.maxParticipants)
      // The document, the conversation's record and the memberships go in one LevelDB batch.
      await room.transact((doc): TransactRecords => {
        // In a cluster this runs inside the lock, on the document as committed: a creation on
        // another node may have won meanwhile; then this is an update, authorized as one.
        const existsNow = isCreated(doc)
        if (existsNow && !existed) {
          authorizeConversationChange(principal, doc, body, deps)
          if (claim && createdByOf(doc) !== null) throw new ChatError('CLAIM_CONFLICT')
        }
        const creator = !existsNow && principal.kind === 'user' ? principal.userId : null
        const adding = [...(body.participants ?? []), ...(creator === null ? [] : [creator])]
        checkLimit(doc, adding, settings.maxParticipants)
        created = !existsNow || !recorded
        const meta = metaOf(doc)
        if (!meta.has('createdAt')) meta.set('createdAt', now)
        if (creator !== null) meta.set('createdBy', creator)
        if (!meta.has('guestAccess')) meta.set('guestAccess', 'write')
        for (const key of ['subject', 'photoUrl', 'custom', 'guestAccess', 'slowMode'] as const) {
          if (body[key] !== undefined) meta.set(key, body[key])
        }
        if (body.slowMode !== undefined) meta.set('slowMode', body.slowMode)
        const participants = participantsOf(doc)
        for (const userId of adding) {
          if (participants.has(userId)) continue
          // A user who creates a conversation moderates it: nobody it adds can remove it.
          const entry: Participant = { access: 'ReadWrite', notify: true, joinedAt: now }
          if (userId === creator) entry.role = 'moderator'
          participants.set(userId, entry)
        }
        // Memberships of the users named here are (re)written, so a repeated PUT repairs them;
        // a completed creation writes everyone's.
        const members = created ? [...listParticipants(doc).keys()] : adding
        const createdAt = meta.get('createdAt')
        return {
          conversation: created ? { createdAt: typeof createdAt === 'number' ? createdAt : now } : undefined,
          members: members.map(userId => ({ userId, joinedAt: getParticipant(doc, userId)?.joinedAt ?? now }))
        }
      }, actorOf(principal))
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
    await deleteConversation(deps, id)
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
      const now = deps.now()
      const old = getParticipant(room.doc, userId)
      const next = make(old, now)
      authorizeParticipantChange(principal, room.doc, old, next, deps)
      if (next === null) {
        await removeParticipant(deps, room, userId, actorOf(principal))
        return {}
      }
      if (await deps.bans.find(id, userId) !== undefined) throw new ChatError('BANNED', `${userId} is banned from this conversation; lift the ban first`)
      checkLimit(room.doc, [userId], deps.settings.current.maxParticipants)
      let written = next
      await room.transact(doc => {
        // Decided again on the document it is written to (in a cluster: inside the lock, caught
        // up with the other nodes, which may have changed or removed that participant meanwhile).
        const current = getParticipant(doc, userId)
        const latest = make(current, now)
        if (latest === null) throw new ChatError('PARTICIPANT_NOT_FOUND')
        authorizeParticipantChange(principal, doc, current, latest, deps)
        checkLimit(doc, [userId], deps.settings.current.maxParticipants)
        participantsOf(doc).set(userId, latest)
        written = latest
        return { members: [{ userId, joinedAt: latest.joinedAt }] }
      }, actorOf(principal))
      return participantView(written)
    })
  }

  const participantPatch = (req: FastifyRequest): ParticipantPatch => (req.body ?? {}) as ParticipantPatch

  app.put('/v1/conversations/:id/participants/:userId', { schema: { body: participantBody } }, async req => {
    const body = participantPatch(req)
    // Overwrites access and notify; the role changes only when `role` is given.
    return await writeParticipant(req, (old, now) => withRole({
      access: body.access ?? 'ReadWrite', notify: body.notify ?? true, joinedAt: old?.joinedAt ?? now
    }, body.role === undefined ? old?.role ?? null : body.role))
  })

  app.patch('/v1/conversations/:id/participants/:userId', { schema: { body: participantBody } }, async req => {
    const body = participantPatch(req)
    return await writeParticipant(req, old => {
      if (old === undefined) throw new ChatError('PARTICIPANT_NOT_FOUND')
      return withRole({ access: body.access ?? old.access, notify: body.notify ?? old.notify, joinedAt: old.joinedAt },
        body.role === undefined ? old.role ?? null : body.role)
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
