/**
 * What the inbox index reads from a loaded conversation document, captured synchronously while
 * an event is emitted (the room is loaded then): subject, creation time, participants and read
 * markers (small: at most `maxParticipants` each), the last message in document order, and the
 * live messages only when asked (the index seeds a conversation it does not know yet from them).
 */
import type * as Y from 'yjs'
import { listParticipants, messagesOf, metaOf, readsOf } from '../../shared/doc.ts'
import { isMessage, type Message } from '../../shared/schema.ts'

export interface ConvSnapshot {
  subject: string | null
  /** `meta.createdAt` in milliseconds, when set. */
  createdAt: number | null
  /** Participant user id to its `joinedAt`. */
  participants: Map<string, number>
  /** User id to read marker (`createdAt` of the last message read). */
  reads: Map<string, number>
  /** The live document's messages in document order (older ones may be archived), or null when not captured. */
  messages: Message[] | null
  /** The last live message in document order (contract §4.1: the conversation's order), if any. */
  last: Message | null
}

/** The last well-formed message of the live array, scanning back from its end. */
const lastMessageOf = (doc: Y.Doc): Message | null => {
  const arr = messagesOf(doc)
  for (let i = arr.length - 1; i >= 0; i--) {
    const m: unknown = arr.get(i)
    if (isMessage(m, Number.MAX_SAFE_INTEGER)) return m
  }
  return null
}

/** Reads a snapshot of `doc`; copies the messages only when `withMessages`. */
export const captureSnapshot = (doc: Y.Doc, withMessages: boolean): ConvSnapshot => {
  const meta = metaOf(doc)
  const subject = meta.get('subject')
  const createdAt = meta.get('createdAt')
  const participants = new Map<string, number>()
  for (const [userId, p] of listParticipants(doc)) if (p.access !== 'None') participants.set(userId, p.joinedAt)
  const reads = new Map<string, number>()
  for (const [userId, v] of readsOf(doc).entries()) if (typeof v === 'number') reads.set(userId, v)
  let messages: Message[] | null = null
  if (withMessages) {
    messages = []
    for (const m of messagesOf(doc).toArray()) if (isMessage(m, Number.MAX_SAFE_INTEGER)) messages.push(m)
  }
  return {
    subject: typeof subject === 'string' ? subject : null,
    createdAt: typeof createdAt === 'number' ? createdAt : null,
    participants,
    reads,
    messages,
    last: lastMessageOf(doc)
  }
}
