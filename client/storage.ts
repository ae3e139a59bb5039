/**
 * Local persistence port: what the client keeps of a conversation between runs, so messages
 * sent offline survive an app restart and are delivered exactly once.
 *
 * A conversation's local state is the Y.Doc's own update log plus a little metadata:
 *   updates  every update the local document emitted (local edits and what the server sent),
 *            replayed in order on open, compacted into one snapshot now and then;
 *   meta     the Yjs client id this user used for the conversation, `acked`, the state
 *            vector the server has confirmed durable (a message whose struct lies below it is
 *            `sent`, above it `pending`), and `queued`, messages sent before the document ever
 *            synced (they are not in the document yet, see `view.ts`).
 * Reusing the client id after a restart makes the replayed messages the very same Yjs structs,
 * so the server (which dedupes structs by client id and clock) applies each exactly once.
 *
 * Keys are `userId/conversationId`: a client id is only ever reused by the user that made it
 * (the server binds client ids to users). `claim` is exclusive: two live documents with one
 * client id would write conflicting structs, so a second tab or process gets `null` and runs
 * without persistence.
 */

import type { Message } from '../shared/schema.ts'

export interface LocalMeta {
  clientId: number
  /** Server-confirmed state vector, as [clientId, clock] pairs. */
  acked: Array<[number, number]>
  /** Messages sent before the first sync, in send order, waiting to be written. */
  queued?: Message[]
}

export interface LocalState {
  updates: Uint8Array[]
  meta: LocalMeta | null
}

/** One claimed conversation's local state. Calls are serialized by the caller. */
export interface LocalDoc {
  load (): Promise<LocalState>
  append (update: Uint8Array): Promise<void>
  /** Replaces the whole update log with `snapshot`. */
  compact (snapshot: Uint8Array): Promise<void>
  saveMeta (meta: LocalMeta): Promise<void>
  /** Forgets everything (after the server refused what the log holds). */
  clear (): Promise<void>
  /** Gives up the claim. */
  release (): Promise<void>
}

export interface ClientStore {
  /** Claims `key` for this document; null when another live document holds it. */
  claim (key: string): Promise<LocalDoc | null>
}

/** The key of a user's local state for a conversation. */
export const localKey = (userId: string, conversationId: string): string => `${userId}/${conversationId}`

/** Compact a log once it holds this many updates. */
export const COMPACT_AFTER = 200

/** Keeps everything in memory: survives closing a view, not a restart. For tests and as a fallback. */
export const memoryStore = (): ClientStore => {
  const data = new Map<string, { updates: Uint8Array[], meta: LocalMeta | null }>()
  const held = new Set<string>()
  return {
    async claim (key) {
      if (held.has(key)) return null
      held.add(key)
      let entry = data.get(key)
      if (entry === undefined) data.set(key, entry = { updates: [], meta: null })
      const e = entry
      return {
        load: async () => ({ updates: [...e.updates], meta: e.meta }),
        append: async u => { e.updates.push(u) },
        compact: async s => { e.updates = [s] },
        saveMeta: async m => { e.meta = m },
        clear: async () => { e.updates = []; e.meta = null },
        release: async () => { held.delete(key) }
      }
    }
  }
}
