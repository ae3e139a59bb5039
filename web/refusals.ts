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
  INVALID_ID: 'Ids are 1 to 128 characters: letters, digits and _ - . ~ (no spaces).',
  TEXT_TOO_LONG: 'That message is too long. Split it into shorter messages.',
  USER_NOT_FOUND: 'There is no user with this id.',
  MESSAGE_NOT_FOUND: 'That message is gone (it was deleted).',
  SENDER_MISMATCH: 'You can only change your own messages.',
  ADMIN_REQUIRED: 'Only the server administrator can do that.',
  WRITE_FORBIDDEN: 'You are not allowed to write that here.',
  RATE_LIMITED: 'You are sending too fast. Wait a few seconds, then try again.',
  FILE_TOO_LARGE: 'That file is too large for this server. Send a smaller one, or a link to it.',
  UPLOAD_QUOTA_EXCEEDED: 'You have uploaded too much here for now. Try again later, or send a link instead.',
  INVALID_ATTACHMENT: 'That attachment could not be sent. Upload the file again.',
  PARTICIPANT_NOT_FOUND: 'That user is not a participant of this conversation.',
  SHUTTING_DOWN: 'The server is restarting. Parley reconnects by itself in a moment.',
  STORAGE_UNAVAILABLE: 'The server cannot store anything right now. Try again in a minute.'
}

/** A failed `fetch` (the browser says only "Failed to fetch"): the server is out of reach. */
const isNetworkError = (e: unknown): boolean => e instanceof TypeError && /fetch|network|load failed/i.test(e.message)

export const OFFLINE_TEXT = 'Cannot reach the server: check your connection. Parley retries by itself and this notice goes away once it is back.'

/** What to tell the user about `e`. */
export const describeError = (e: unknown): string => {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const err = e as ChatError
    return MESSAGES[err.code] ?? `${err.message} (${err.code})`
  }
  if (isNetworkError(e)) return OFFLINE_TEXT
  return e instanceof Error ? e.message : String(e)
}
