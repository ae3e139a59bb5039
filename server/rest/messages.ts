/**
 * REST: a conversation's messages (contract §6). Reads page through the live document; writes
 * (admins only) go through it too, so peers see them at once, durable before the answer.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { ChatError } from '../../shared/errors.ts'
import { toConversationId, toMessageId } from '../../shared/ids.ts'
import { findMessageIndex, getParticipant, messagesOf } from '../../shared/doc.ts'
import type { Attachment, Message, MessageType } from '../../shared/schema.ts'
import { withReactions } from '../../shared/reactions.ts'
import type { Room } from '../rooms/room.ts'
import { claimOf, type AttachmentClaim } from '../../shared/update-judge/attachments.ts'
import type { ArchivedMessage } from '../storage/port.ts'
import { actorOf, requireAdmin, requireHistoryReader, requireModerator } from './permissions.ts'
import { patchMessageBody, postMessagesBody } from './schemas.ts'
import { param, principalOf, type RestDeps } from './deps.ts'
import { withConversation } from './conversations.ts'
import { writeWithEvents } from '../events.ts'
import { searchConversation } from '../search/routes.ts'
import { slowModeOf } from '../rate-limit.ts'

interface NewMessage { text: string, sender?: string, type: MessageType, custom?: Record<string, string>, referencedMessageId?: string, attachment?: Attachment }

const DEFAULT_LIMIT = 30
const MAX_LIMIT = 100

/** Reads `limit` from the query: default 30; above 100 counts as 100; otherwise a positive integer. */
export const readLimit = (raw: unknown): number => {
  if (raw === undefined || raw === '') return DEFAULT_LIMIT
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new ChatError('INVALID_REQUEST', 'limit must be a positive integer')
  return Math.min(n, MAX_LIMIT)
}

/** An archived message by id, or MESSAGE_NOT_FOUND. */
const findArchived = async (deps: RestDeps, conv: string, messageId: string): Promise<ArchivedMessage> => {
  const pos = await deps.store.archivePosOf(conv, messageId)
  if (pos === undefined) throw new ChatError('MESSAGE_NOT_FOUND')
  const page = await deps.store.readArchive(conv, pos + 1, 1)
  const hit = page.messages[0]
  if (hit === undefined || hit.pos !== pos) throw new ChatError('MESSAGE_NOT_FOUND')
  return hit
}

/**
 * Changes a live message with `change`, which finds it by id in the document it runs on (in a
 * cluster: inside the conversation's lock, caught up with every other node). Undefined when the
 * message is no longer live there (deleted or archived meanwhile): the caller looks in the
 * archive, which answers MESSAGE_NOT_FOUND for a deleted one, so a message deleted elsewhere a
 * moment ago is never brought back by an edit.
 */
const liveChange = async <T>(room: Room, messageId: string, change: (doc: Room['doc']) => T, actor: string | null = null): Promise<T | undefined> => {
  const gone = new ChatError('MESSAGE_NOT_FOUND')
  let out: { value: T } | undefined
  try {
    await room.transact(doc => {
      if (findMessageIndex(doc, messageId) < 0) throw gone // before changing anything
      out = { value: change(doc) }
    }, actor)
  } catch (e) {
    if (e === gone) return undefined
    throw e
  }
  return out?.value
}

/** Refuses a reply whose `referencedMessageId` is not a message of this conversation (live or archived). */
const checkReferences = async (room: Room, items: readonly NewMessage[]): Promise<void> => {
  for (const ref of new Set(items.map(i => i.referencedMessageId))) {
    if (ref !== undefined && !await room.messageExists(ref)) throw new ChatError('REFERENCED_MESSAGE_NOT_FOUND', `No message ${ref} in this conversation`)
  }
}

/** A page of the conversation's messages before `before` (or the newest): live window, then archive. */
const readPage = async (deps: RestDeps, room: Room, before: string | undefined, limit: number): Promise<{ data: Message[], hasMore: boolean }> => {
  const id = room.id
  const arr = messagesOf(room.doc)
  let end = arr.length
  if (before !== undefined) {
    end = findMessageIndex(room.doc, before)
    if (end < 0) {
      // Not live: page the archive from that message on.
      const pos = await deps.store.archivePosOf(id, before)
      if (pos === undefined) throw new ChatError('MESSAGE_NOT_FOUND', `No message ${before} in this conversation`)
      const page = await deps.store.readArchive(id, pos, limit)
      return { data: page.messages.map(a => a.message), hasMore: page.hasMore }
    }
  }
  const start = Math.max(0, end - limit)
  const live = arr.slice(start, end)
  if (live.length === limit || start > 0 || room.archivedCount === 0) return { data: live, hasMore: start > 0 || room.archivedCount > 0 && live.length === limit }
  const page = await deps.store.readArchive(id, null, limit - live.length)
  return { data: [...page.messages.map(a => a.message), ...live], hasMore: page.hasMore }
}

/**
 * Charges the user messages of a post to their senders' rate limits (contract §7); refuses the
 * whole post with 429 `RATE_LIMITED` and `Retry-After` when one sender is over. System messages
 * (no sender) are not limited. A refused post charges nobody.
 */
const chargeSenders = (deps: RestDeps, room: Room, messages: Message[], reply: FastifyReply): void => {
  const perSender = new Map<string, number>()
  for (const m of messages) if (m.senderId !== null) perSender.set(m.senderId, (perSender.get(m.senderId) ?? 0) + 1)
  const wait = deps.limiter.charge(room.id, perSender, slowModeOf(room.doc))
  if (wait > 0) {
    void reply.header('retry-after', String(Math.ceil(wait / 1000)))
    throw new ChatError('RATE_LIMITED', `Too many messages from ${[...perSender.keys()].join(', ')}: retry in ${Math.ceil(wait / 1000)} s`)
  }
}

export const registerMessageRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  app.get('/v1/conversations/:id/messages', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const query = req.query as Record<string, unknown>
    const limit = readLimit(query.limit)
    if (query.q !== undefined) {
      await withConversation(deps, id, room => { requireHistoryReader(principal, room.doc, deps.settings.current) })
      return await searchConversation(deps.search, id, query, limit)
    }
    const before = query.before === undefined ? undefined : toMessageId(query.before)
    return await withConversation(deps, id, async room => {
      requireHistoryReader(principal, room.doc, deps.settings.current)
      const page = await readPage(deps, room, before, limit)
      return { data: page.data.map(m => withReactions(m, room.reactions)), hasMore: page.hasMore }
    })
  })

  app.get('/v1/conversations/:id/messages/:messageId', async req => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const messageId = toMessageId(param(req, 'messageId'))
    return await withConversation(deps, id, async room => {
      requireHistoryReader(principal, room.doc, deps.settings.current)
      const i = findMessageIndex(room.doc, messageId)
      const message = i >= 0 ? messagesOf(room.doc).get(i) : (await findArchived(deps, id, messageId)).message
      return withReactions(message, room.reactions)
    })
  })

  app.post('/v1/conversations/:id/messages', { schema: { body: postMessagesBody } }, async (req, reply) => {
    const principal = await principalOf(deps, req)
    requireAdmin(principal)
    const id = toConversationId(param(req, 'id'))
    const items = req.body as NewMessage[]
    const { maxTextLength } = deps.settings.current
    const created = await withConversation(deps, id, async room => {
      await checkReferences(room, items)
      const now = deps.now()
      const messages: Message[] = items.map(item => {
        if (item.text.length > maxTextLength) throw new ChatError('TEXT_TOO_LONG', `A text holds at most ${maxTextLength} characters`)
        if (item.type === 'SystemMessage' && item.sender !== undefined) throw new ChatError('INVALID_REQUEST', 'A SystemMessage has no sender')
        if (item.type === 'UserMessage') {
          if (item.sender === undefined) throw new ChatError('INVALID_REQUEST', 'A UserMessage needs a sender')
          if (getParticipant(room.doc, item.sender) === undefined) throw new ChatError('NOT_PARTICIPANT', `${item.sender} is not a participant`)
        }
        const m: Message = { id: deps.newId(), senderId: item.sender ?? null, text: item.text, createdAt: now, type: item.type }
        if (item.custom !== undefined) m.custom = item.custom
        if (item.referencedMessageId !== undefined) m.referencedMessageId = item.referencedMessageId
        if (item.attachment !== undefined) m.attachment = item.attachment
        return m
      })
      const claims = messages.map(claimOf).filter((c): c is AttachmentClaim => c !== null)
      if (claims.length > 0) await deps.files.check(id, claims)
      chargeSenders(deps, room, messages, reply)
      await room.transact(doc => {
        // Judged again where it is written (in a cluster: on the document as committed).
        for (const m of messages) {
          if (m.senderId !== null && getParticipant(doc, m.senderId) === undefined) throw new ChatError('NOT_PARTICIPANT', `${m.senderId} is not a participant`)
        }
        messagesOf(doc).push(messages)
      })
      return messages
    })
    return await reply.status(201).send(created)
  })

  app.patch('/v1/conversations/:id/messages/:messageId', { schema: { body: patchMessageBody } }, async req => {
    const principal = await principalOf(deps, req)
    requireAdmin(principal)
    const id = toConversationId(param(req, 'id'))
    const messageId = toMessageId(param(req, 'messageId'))
    const body = (req.body ?? {}) as { text?: string, custom?: Record<string, string> }
    if (body.text !== undefined && body.text.length > deps.settings.current.maxTextLength) throw new ChatError('TEXT_TOO_LONG')
    return await withConversation(deps, id, async room => {
      const edit = (old: Message): Message => {
        const next: Message = { ...old, editedAt: deps.now() }
        if (body.text !== undefined) next.text = body.text
        if (body.custom !== undefined) next.custom = body.custom
        return next
      }
      if (findMessageIndex(room.doc, messageId) >= 0) {
        const edited = await liveChange(room, messageId, doc => {
          const i = findMessageIndex(doc, messageId)
          const next = edit(messagesOf(doc).get(i))
          const arr = messagesOf(doc)
          arr.delete(i, 1)
          arr.insert(i, [next])
          return next
        })
        if (edited !== undefined) return withReactions(edited, room.reactions)
      }
      const archived = await findArchived(deps, id, messageId)
      const next = edit(archived.message)
      await writeWithEvents(deps.events, [{ type: 'message.updated', conversationId: id, message: next, previous: archived.message }], async staged => {
        await deps.store.updateArchived(id, archived.pos, next, staged)
      })
      // Deleted from the archive meanwhile (by another node): the update found nothing to change.
      if (await deps.store.archivePosOf(id, messageId) === undefined) throw new ChatError('MESSAGE_NOT_FOUND')
      return withReactions(next, room.reactions)
    })
  })

  app.delete('/v1/conversations/:id/messages/:messageId', async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const messageId = toMessageId(param(req, 'messageId'))
    const actor = actorOf(principal)
    await withConversation(deps, id, async room => {
      // Admins and the conversation's moderators (v1.1) delete any message.
      requireModerator(principal, room.doc)
      if (findMessageIndex(room.doc, messageId) >= 0) {
        const deleted = await liveChange(room, messageId, doc => { messagesOf(doc).delete(findMessageIndex(doc, messageId), 1); return true }, actor)
        if (deleted !== undefined) return
      }
      // With its reactions (in the document) and its webhook in the same batch.
      await room.deleteArchived(await findArchived(deps, id, messageId), actor)
    })
    return await reply.status(204).send()
  })
}
