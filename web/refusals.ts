/** Plain-language messages for the refusals a user can meet in the UI. */
import type { ChatError } from '../client/index.ts'

const MESSAGES: Partial<Record<string, string>> = {
  NOT_PARTICIPANT: 'You are not a participant of this conversation. You can open it as a guest instead.',
  ACCESS_NONE: 'Your access to this conversation is set to None: you are not allowed in.',
  FORBIDDEN: 'You are not allowed to do that.',
  GUEST_ACCESS_OFF: 'Guest access is off for this conversation.',
  GUEST_LIMIT: 'This conversation is full: too many guests are watching right now. Try again later.',
  PARTICIPANT_LIMIT: 'This conversation is full: it has reached its participant limit.',
  PARTICIPANT_REMOVED: 'You were removed from this conversation.',
  BANNED: 'You are banned from this conversation.',
  KICKED: 'A moderator closed your guest view of this conversation. You may open it again.',
  READ_ONLY: 'This view is read-only: you can read but not write.',
  CONVERSATION_NOT_FOUND: 'There is no conversation with this id.',
  CONVERSATION_DELETED: 'This conversation was deleted.',
  BROWSER_SYNC_OFF: 'This server does not let the browser create or change conversations (browserSync is off).',
  TOKEN_EXPIRED: 'Your sign-in has expired. Sign in again.',
  TOKEN_INVALID: 'Your sign-in is not valid here. Sign in again.',
  TOKEN_MISSING: 'You need to sign in.',
  INVALID_ID: 'Ids are 1 to 128 characters of letters, digits and _ - . ~',
  TEXT_TOO_LONG: 'That message is too long.'
}

/** What to tell the user about `e`. */
export const describeError = (e: unknown): string => {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const err = e as ChatError
    return MESSAGES[err.code] ?? `${err.message} (${err.code})`
  }
  return e instanceof Error ? e.message : String(e)
}
