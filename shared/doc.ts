/**
 * Typed access to a conversation document's roots (contract §4). Pure functions over a Y.Doc:
 * the server uses them for REST writes and admission, clients for reading.
 */
import * as Y from 'yjs'
import {
  ROOT_MESSAGES, ROOT_META, ROOT_PARTICIPANTS, ROOT_REACTIONS, ROOT_READS, isAccess, isGuestAccess, isNotify, isParticipantRole,
  isPlainObject, type GuestAccess, type Message, type Participant
} from './schema.ts'

export const messagesOf = (doc: Y.Doc): Y.Array<Message> => doc.getArray<Message>(ROOT_MESSAGES)
export const participantsOf = (doc: Y.Doc): Y.Map<Participant> => doc.getMap<Participant>(ROOT_PARTICIPANTS)
export const metaOf = (doc: Y.Doc): Y.Map<unknown> => doc.getMap<unknown>(ROOT_META)
export const readsOf = (doc: Y.Doc): Y.Map<number> => doc.getMap<number>(ROOT_READS)
/** `<messageId>/<userId>` -> that user's reactions to that message (see reactions.ts). */
export const reactionsOf = (doc: Y.Doc): Y.Map<string[]> => doc.getMap<string[]>(ROOT_REACTIONS)

/** Creates every root, so that no peer update ever has to name a new one. */
export const ensureRoots = (doc: Y.Doc): void => {
  messagesOf(doc); participantsOf(doc); metaOf(doc); readsOf(doc); reactionsOf(doc)
}

/** The participant entry of `userId`, when it is a well-formed one. */
export const getParticipant = (doc: Y.Doc, userId: string): Participant | undefined => {
  const p: unknown = participantsOf(doc).get(userId)
  if (!isPlainObject(p) || !isAccess(p.access) || !isNotify(p.notify)) return undefined
  const entry: Participant = { access: p.access, notify: p.notify, joinedAt: typeof p.joinedAt === 'number' ? p.joinedAt : 0 }
  if (isParticipantRole(p.role)) entry.role = p.role
  return entry
}

/** True when `userId` is a moderator of the conversation (a participant with role `moderator` and access other than None). */
export const isModerator = (doc: Y.Doc, userId: string): boolean => {
  const p = getParticipant(doc, userId)
  return p !== undefined && p.role === 'moderator' && p.access !== 'None'
}

/** Every participant, keyed by user id. */
export const listParticipants = (doc: Y.Doc): Map<string, Participant> => {
  const out = new Map<string, Participant>()
  for (const userId of participantsOf(doc).keys()) {
    const p = getParticipant(doc, userId)
    if (p !== undefined) out.set(userId, p)
  }
  return out
}

/** The conversation's guest access; `write` unless set otherwise. */
export const getGuestAccess = (doc: Y.Doc): GuestAccess => {
  const v = metaOf(doc).get('guestAccess')
  return isGuestAccess(v) ? v : 'write'
}

/** Position of the message with `id`, or -1. Scans from the newest end. */
export const findMessageIndex = (doc: Y.Doc, id: string): number => {
  const arr = messagesOf(doc)
  for (let i = arr.length - 1; i >= 0; i--) {
    const m: unknown = arr.get(i)
    if (isPlainObject(m) && m.id === id) return i
  }
  return -1
}
