/**
 * The message ids an update mentions, read from its bytes without judging it: the `id` and
 * `referencedMessageId` of every object it inserts, and the message part of every reaction key
 * it names. A superset of what judging it may look up in the archive (its new messages, the
 * targets of its reactions, the messages it replies to), for a caller that reads them all at once
 * beforehand (a cluster flush, which holds the conversation's lock while it judges). Reaction
 * overwrites name their key through the value they replace, not in the bytes: the judge may still
 * ask for a few more. Bytes that are not a well-formed update mention nothing (the judge refuses
 * them).
 */
import { isPlainObject } from '../schema.ts'
import { parseReactionKey } from '../reactions.ts'
import { MalformedUpdate, readUpdateV1 } from './read-update.ts'

export const mentionedMessageIds = (update: Uint8Array): string[] => {
  let parsed
  try {
    parsed = readUpdateV1(update)
  } catch (e) {
    if (e instanceof MalformedUpdate) return []
    throw e
  }
  const out = new Set<string>()
  for (const { structs } of parsed.clients) {
    for (const s of structs) {
      if (s.parentSub !== null) {
        const key = parseReactionKey(s.parentSub)
        if (key !== null) out.add(key.messageId)
      }
      if (s.content?.kind !== 'any') continue
      for (const v of s.content.values) {
        if (!isPlainObject(v)) continue
        if (typeof v.id === 'string') out.add(v.id)
        if (typeof v.referencedMessageId === 'string') out.add(v.referencedMessageId)
      }
    }
  }
  return [...out]
}
