/**
 * Reactions (contract §4.2): the `reactions` root is a Y.Map keyed `<messageId>/<userId>`, each
 * value the JSON array of that user's reactions to that message: 1 to 20 distinct strings of 1 to
 * 32 characters (Unicode code points) without whitespace. Ids never contain `/`, so a key splits
 * in one way only.
 *
 * Pure: key and value checks, an index of who reacted to which message, and the summary REST and
 * the client show (`{ "👍": ["alice", "bob"] }`).
 */
import * as Y from 'yjs'
import { messagesOf, reactionsOf } from './doc.ts'
import { isValidId } from './ids.ts'
import { messageIdOf } from './update-judge/message-index.ts'
import { findStructIndex } from './update-judge/simulate.ts'

export const MAX_REACTIONS_PER_USER = 20
export const MAX_REACTION_LENGTH = 32

/** Reactions to one message: reaction -> the users who chose it (sorted). */
export type Reactions = Record<string, string[]>

export const reactionKey = (messageId: string, userId: string): string => `${messageId}/${userId}`

/** The message and user a key names, or null when it is not `<id>/<id>`. */
export const parseReactionKey = (key: string): { messageId: string, userId: string } | null => {
  const slash = key.indexOf('/')
  if (slash < 0) return null
  const messageId = key.slice(0, slash)
  const userId = key.slice(slash + 1)
  return isValidId(messageId) && isValidId(userId) ? { messageId, userId } : null
}

const WHITESPACE = /\s/u

/** True when `v` is one reaction string: 1 to 32 code points, no whitespace. */
export const isReaction = (v: unknown): v is string => {
  if (typeof v !== 'string' || v.length === 0 || WHITESPACE.test(v)) return false
  let n = 0
  for (const _ of v) if (++n > MAX_REACTION_LENGTH) return false
  return true
}

/** Why `v` is not a well-formed reactions value, or null when it is. */
export const reactionValueProblem = (v: unknown): string | null => {
  if (!Array.isArray(v)) return 'reactions are a JSON array'
  if (v.length === 0) return 'an empty reactions array: delete the key instead'
  if (v.length > MAX_REACTIONS_PER_USER) return `at most ${MAX_REACTIONS_PER_USER} reactions per user and message`
  for (const r of v) if (!isReaction(r)) return `a reaction is 1 to ${MAX_REACTION_LENGTH} characters without whitespace`
  if (new Set(v).size !== v.length) return 'reactions must be distinct'
  return null
}

/**
 * Which users reacted to which message, kept up to date from every transaction. It listens to
 * `beforeObserverCalls`, so observers of the document (and code that runs after a transaction)
 * already see it current.
 */
export class ReactionIndex {
  private readonly byMessage = new Map<string, Set<string>>()
  private readonly doc: Y.Doc
  private readonly map: Y.Map<string[]>
  private readonly onTransaction = (tr: Y.Transaction): void => {
    const keys = tr.changed.get(this.map as unknown as Y.AbstractType<Y.YEvent<Y.Map<string[]>>>)
    if (keys !== undefined) for (const key of keys) if (key !== null) this.track(key)
  }

  constructor (doc: Y.Doc) {
    this.doc = doc
    this.map = reactionsOf(doc)
    for (const key of this.map.keys()) this.track(key)
    doc.on('beforeObserverCalls', this.onTransaction)
  }

  /** The users holding a key for `messageId`. */
  usersOf (messageId: string): readonly string[] {
    return [...this.byMessage.get(messageId) ?? []]
  }

  /** The reactions to `messageId`, or undefined when it has none. */
  summary (messageId: string): Reactions | undefined {
    const users = this.byMessage.get(messageId)
    if (users === undefined) return undefined
    const out: Reactions = {}
    for (const userId of [...users].sort()) {
      const value: unknown = this.map.get(reactionKey(messageId, userId))
      if (reactionValueProblem(value) !== null) continue
      for (const r of value as string[]) (out[r] ??= []).push(userId)
    }
    return Object.keys(out).length === 0 ? undefined : out
  }

  destroy (): void {
    this.doc.off('beforeObserverCalls', this.onTransaction)
    this.byMessage.clear()
  }

  private track (key: string): void {
    const parsed = parseReactionKey(key)
    if (parsed === null) return
    const { messageId, userId } = parsed
    let users = this.byMessage.get(messageId)
    if (this.map.has(key)) {
      if (users === undefined) this.byMessage.set(messageId, users = new Set())
      users.add(userId)
    } else if (users !== undefined) {
      users.delete(userId)
      if (users.size === 0) this.byMessage.delete(messageId)
    }
  }
}

/** `message` with its reactions, when it has any (what REST and the client show). */
export const withReactions = <M extends { id: string }>(message: M, index: ReactionIndex): M & { reactions?: Reactions } => {
  const reactions = index.summary(message.id)
  return reactions === undefined ? message : { ...message, reactions }
}

/**
 * Deletes every reaction to the given messages, inside the caller's transaction (returns how many keys): the keys the
 * index knows and those this transaction wrote (the index follows transactions once they end).
 */
export const removeReactionsTo = (doc: Y.Doc, tr: Y.Transaction, index: ReactionIndex, messageIds: Iterable<string>): number => {
  const map = reactionsOf(doc)
  const ids = new Set(messageIds)
  if (ids.size === 0) return 0
  const keys = new Set<string>()
  for (const id of ids) for (const userId of index.usersOf(id)) keys.add(reactionKey(id, userId))
  const written = tr.changed.get(map as unknown as Y.AbstractType<Y.YEvent<Y.Map<string[]>>>)
  for (const key of written ?? []) {
    const parsed = key === null ? null : parseReactionKey(key)
    if (parsed !== null && ids.has(parsed.messageId)) keys.add(key as string)
  }
  let removed = 0
  for (const key of keys) {
    if (!map.has(key)) continue
    map.delete(key)
    removed++
  }
  return removed
}

/**
 * Ids of the messages a transaction removed from `messages`, inside that transaction: deleted
 * elements whose id no element the transaction added (an edit, a move) carries again.
 */
export const messagesRemovedIn = (doc: Y.Doc, tr: Y.Transaction): string[] => {
  const messages = messagesOf(doc)
  const store = doc.store
  const deleted = new Set<string>()
  for (const [client, ranges] of tr.deleteSet.clients) {
    const structs = store.clients.get(client)
    if (structs === undefined) continue
    for (const { clock, len } of ranges) {
      for (let i = Math.max(0, findStructIndex(structs, clock)); i < structs.length; i++) {
        const s = structs[i]
        if (s.id.clock >= clock + len) break
        if (s instanceof Y.Item && s.parent === messages && s.content instanceof Y.ContentAny) {
          for (const v of s.content.arr) {
            const id = messageIdOf(v)
            if (id !== undefined) deleted.add(id)
          }
        }
      }
    }
  }
  if (deleted.size === 0) return []
  for (const [client, structs] of store.clients) {
    const first = findStructIndex(structs, tr.beforeState.get(client) ?? 0)
    if (first < 0) continue // nothing new under this client
    for (let i = first; i < structs.length; i++) {
      const s = structs[i]
      if (s.deleted || !(s instanceof Y.Item) || s.parent !== messages || !(s.content instanceof Y.ContentAny)) continue
      for (const v of s.content.arr) {
        const id = messageIdOf(v)
        if (id !== undefined) deleted.delete(id)
      }
    }
  }
  return [...deleted]
}
