/**
 * Ids of users, conversations and messages (contract §2): 1 to 128 characters of
 * `A-Z a-z 0-9 _ - . ~`. Branded so a user id cannot be passed where a conversation id is meant.
 */
import { ChatError } from './errors.ts'

export type UserId = string & { readonly __userId: true }
export type ConversationId = string & { readonly __conversationId: true }
export type MessageId = string & { readonly __messageId: true }

const ID_PATTERN = /^[A-Za-z0-9_\-.~]{1,128}$/

/** True when `s` is a well-formed id of any kind. */
export const isValidId = (s: unknown): s is string => typeof s === 'string' && ID_PATTERN.test(s)

/** Returns `s` as a user id, or throws `INVALID_ID`. */
export const toUserId = (s: unknown): UserId => {
  if (!isValidId(s)) throw new ChatError('INVALID_ID', `Invalid user id: ${String(s).slice(0, 140)}`)
  return s as UserId
}

/** Returns `s` as a conversation id, or throws `INVALID_ID`. */
export const toConversationId = (s: unknown): ConversationId => {
  if (!isValidId(s)) throw new ChatError('INVALID_ID', `Invalid conversation id: ${String(s).slice(0, 140)}`)
  return s as ConversationId
}

/** Returns `s` as a message id, or throws `INVALID_ID`. */
export const toMessageId = (s: unknown): MessageId => {
  if (!isValidId(s)) throw new ChatError('INVALID_ID', `Invalid message id: ${String(s).slice(0, 140)}`)
  return s as MessageId
}
