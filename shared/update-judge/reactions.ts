/**
 * The judge's rules for reactions and replies (contract §4.2), kept apart from the core judge.
 *
 *   reactions  a key `<messageId>/<writer>` only (never another user's), set to a well-formed
 *              value (see shared/reactions.ts) or deleted, by a writer that may write; the
 *              message must exist after the update.
 *   replies    a new `referencedMessageId` names another message that exists after the update
 *              (an edit may keep the reference it had).
 *
 * The judge knows the live window only: a target that is neither live before nor added by the
 * update is reported (`ArchiveChecks`) for the caller to look up in the archive. A target that
 * was live and that the update deletes does not exist afterwards: refused here.
 */
import { ROOT_REACTIONS, type Message } from '../schema.ts'
import { parseReactionKey, reactionValueProblem } from '../reactions.ts'
import type { ErrorCode } from '../errors.ts'
import type { NewPart, Place } from './simulate.ts'

/** Message ids an update names that the live document does not hold: the caller checks the archive. */
export interface ArchiveChecks {
  /** Targets of new reactions. */
  reactionTargets: string[]
  /** `referencedMessageId` of new messages (and of edits that change it). */
  references: string[]
}

interface WriterLike { userId: string, canWrite: boolean }

type Refuse = (code: ErrorCode, message: string) => never

/** Whether a place is a key of the reactions root. */
export const isReactionPlace = (place: Place): place is { kind: 'item', root: string, parentSub: string } =>
  place.kind === 'item' && place.root === ROOT_REACTIONS && place.parentSub !== null

/** The key a writer may write: its own, of a well-formed message id. */
const ownKeyTarget = (key: string, writer: WriterLike, refuse: Refuse): string => {
  const parsed = parseReactionKey(key)
  if (parsed === null) return refuse('INVALID_REACTION', 'a reactions key is <messageId>/<userId>')
  if (parsed.userId !== writer.userId) return refuse('WRITE_FORBIDDEN', 'a peer writes only its own reactions')
  return parsed.messageId
}

/**
 * A new part in the reactions root: its key and content. Returns the message it reacts to, or
 * null for content without a value (a deleted part).
 */
export const judgeReactionPart = (place: Place, part: NewPart, writer: WriterLike, refuse: Refuse): string | null => {
  if (!isReactionPlace(place)) return refuse('WRITE_FORBIDDEN', 'reactions is a map: keys only')
  const target = ownKeyTarget(place.parentSub, writer, refuse)
  const content = part.content
  if (content?.kind === 'deleted') return null
  if (content?.kind !== 'any' || content.values.length !== 1) return refuse('INVALID_REACTION', 'a reactions value is one JSON array')
  if (content.tainted?.[0] === true) refuse('INVALID_REACTION', 'a reactions value must not hold a __proto__ key')
  const problem = reactionValueProblem(content.values[0])
  if (problem !== null) refuse('INVALID_REACTION', problem)
  return target
}

/** Deleting a stored key of the reactions root: only the writer's own. */
export const judgeReactionDelete = (place: Place, writer: WriterLike, refuse: Refuse): void => {
  if (!isReactionPlace(place)) refuse('WRITE_FORBIDDEN', 'a deletion in reactions outside a key')
  else ownKeyTarget(place.parentSub, writer, refuse)
}

/** How the update changes which message ids are live. */
export interface Liveness {
  /** Live before the update. */
  before: (id: string) => boolean
  /** Live after it. */
  after: (id: string) => boolean
  /** The live message with this id before the update (for edits). */
  current: (id: string) => Message | undefined
}

/**
 * Checks the targets of reactions and the references of new messages; returns those the
 * caller must find in the archive.
 */
export const checkTargets = (
  reactionTargets: readonly string[],
  messages: ReadonlyArray<{ message: Message, edited: boolean }>,
  live: Liveness,
  refuse: Refuse
): ArchiveChecks => {
  const out: ArchiveChecks = { reactionTargets: [], references: [] }
  for (const id of new Set(reactionTargets)) {
    if (live.after(id)) continue
    if (live.before(id)) refuse('REACTION_TARGET_NOT_FOUND', `message ${id} is deleted`)
    out.reactionTargets.push(id)
  }
  const references = new Set<string>()
  for (const { message, edited } of messages) {
    const ref = message.referencedMessageId
    if (ref === undefined) continue
    if (ref === message.id) refuse('REFERENCED_MESSAGE_NOT_FOUND', 'a message cannot reply to itself')
    if (edited && live.current(message.id)?.referencedMessageId === ref) continue
    if (live.after(ref)) continue
    if (live.before(ref)) refuse('REFERENCED_MESSAGE_NOT_FOUND', `message ${ref} is deleted`)
    references.add(ref)
  }
  out.references = [...references]
  return out
}
