/**
 * REST search (contract §6, v1.1): `GET /v1/conversations/:id/messages?q=` (wired in
 * rest/messages.ts) and `GET /v1/users/:userId/messages?q=`. Both answer `{ data, hasMore }`,
 * newest first, `limit` as the message list (default 30, at most 100) and `before` a message id
 * (the last of the previous page). The user route searches the conversations the user reads as a
 * participant (its inbox: never conversations it visited as a guest, never access None), and
 * each hit carries its `conversationId`.
 */
import type { FastifyInstance } from 'fastify'
import { ChatError } from '../../shared/errors.ts'
import { toMessageId, toUserId } from '../../shared/ids.ts'
import type { Message } from '../../shared/schema.ts'
import { queryWords } from '../../shared/search-text.ts'
import type { InboxIndex } from '../inbox/inbox-index.ts'
import { requireSelfOrAdmin } from '../rest/permissions.ts'
import { param, principalOf, type RestDeps } from '../rest/deps.ts'
import type { Cursor, SearchIndex } from './search-index.ts'

/** The words of `?q=`, or INVALID_REQUEST when it has none. */
const wordsOfQuery = (q: unknown): string[] => {
  const words = typeof q === 'string' ? queryWords(q) : []
  if (words.length === 0) throw new ChatError('INVALID_REQUEST', 'q must hold at least one word (letters or digits)')
  return words
}

/** The cursor of `before` (a message id) in one of `convs`, or MESSAGE_NOT_FOUND. */
const cursorOf = async (search: SearchIndex, convs: readonly string[], before: unknown): Promise<Cursor | null> => {
  if (before === undefined) return null
  const id = toMessageId(before)
  for (const conv of convs) {
    const c = await search.cursorOf(conv, id)
    if (c !== undefined) return c
  }
  throw new ChatError('MESSAGE_NOT_FOUND', `No message ${id} among the results`)
}

/** Search within one conversation the caller was already allowed to read. */
export const searchConversation = async (search: SearchIndex, conv: string, query: Record<string, unknown>, limit: number): Promise<{ data: Message[], hasMore: boolean }> => {
  const words = wordsOfQuery(query.q)
  const { hits, hasMore } = await search.search([conv], words, limit, await cursorOf(search, [conv], query.before))
  return { data: hits.map(h => h.message), hasMore }
}

export const registerSearchRoutes = (app: FastifyInstance, deps: RestDeps, search: SearchIndex, inbox: InboxIndex, readLimit: (raw: unknown) => number): void => {
  app.get('/v1/users/:userId/messages', async req => {
    const principal = await principalOf(deps, req)
    const userId = toUserId(param(req, 'userId'))
    requireSelfOrAdmin(principal, userId)
    const query = req.query as Record<string, unknown>
    const words = wordsOfQuery(query.q)
    const limit = readLimit(query.limit)
    const convs = (await inbox.list(userId)).map(row => row.id)
    const { hits, hasMore } = await search.search(convs, words, limit, await cursorOf(search, convs, query.before))
    return { data: hits.map(h => ({ ...h.message, conversationId: h.conversationId })), hasMore }
  })
}
