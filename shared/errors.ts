/**
 * The one registry of Parley's error codes.
 *
 * Every refusal the server makes, over REST or on the sync endpoint, carries one of these codes.
 * Each entry fixes the HTTP status (REST) and the WebSocket close code (sync endpoint) used for
 * it, so the two surfaces can never disagree. `docs/errors.md` documents every code; a test
 * checks that the table there and this registry hold the same codes.
 */

/** Static description of one error code. */
export interface ErrorSpec {
  /** HTTP status used when the error answers a REST request. */
  readonly status: number
  /** WebSocket close code used when the error ends a sync connection. */
  readonly closeCode: number
  /** Default human-readable message. */
  readonly message: string
}

export const ERRORS = {
  TOKEN_MISSING: { status: 401, closeCode: 4401, message: 'A token is required' },
  TOKEN_INVALID: { status: 401, closeCode: 4401, message: 'The token is invalid' },
  TOKEN_EXPIRED: { status: 401, closeCode: 4401, message: 'The token has expired' },
  ADMIN_REQUIRED: { status: 403, closeCode: 4403, message: 'This request needs admin credentials' },
  FORBIDDEN: { status: 403, closeCode: 4403, message: 'Not allowed' },
  NOT_PARTICIPANT: { status: 403, closeCode: 4403, message: 'The user is not a participant of this conversation' },
  ACCESS_NONE: { status: 403, closeCode: 4403, message: "The participant's access is None" },
  GUEST_ACCESS_OFF: { status: 403, closeCode: 4403, message: 'Guest access is off for this conversation' },
  READ_ONLY: { status: 403, closeCode: 4403, message: 'This connection may not write' },
  BROWSER_SYNC_OFF: { status: 403, closeCode: 4403, message: 'browserSync is off: this needs admin credentials' },
  PARTICIPANT_REMOVED: { status: 403, closeCode: 4403, message: 'The user is no longer a participant' },
  BANNED: { status: 403, closeCode: 4403, message: 'The user is banned from this conversation' },
  KICKED: { status: 403, closeCode: 4403, message: 'A moderator closed this guest connection; the user may join again' },
  WRITE_FORBIDDEN: { status: 403, closeCode: 4403, message: 'The update writes something this connection may not write' },
  INVALID_MESSAGE: { status: 400, closeCode: 4403, message: 'The message does not have the pinned shape' },
  TEXT_TOO_LONG: { status: 400, closeCode: 4403, message: 'The message text is over the limit' },
  DUPLICATE_MESSAGE_ID: { status: 409, closeCode: 4403, message: 'A message with this id already exists' },
  SENDER_MISMATCH: { status: 403, closeCode: 4403, message: 'A message may only be written as its own sender' },
  CLIENT_ID_TAKEN: { status: 403, closeCode: 4403, message: 'This Yjs client id belongs to another user' },
  INVALID_REACTION: { status: 400, closeCode: 4403, message: 'Reactions are 1 to 20 distinct strings of 1 to 32 characters without whitespace, under <messageId>/<userId>' },
  REACTION_TARGET_NOT_FOUND: { status: 404, closeCode: 4403, message: 'A reaction names a message that does not exist in this conversation' },
  REFERENCED_MESSAGE_NOT_FOUND: { status: 400, closeCode: 4403, message: 'referencedMessageId names no message of this conversation' },
  MISSING_DEPENDENCIES: { status: 400, closeCode: 4403, message: 'The update depends on changes the server does not have' },
  INVALID_ID: { status: 400, closeCode: 4400, message: 'Ids are 1 to 128 characters of A-Z a-z 0-9 _ - . ~' },
  INVALID_REQUEST: { status: 400, closeCode: 4400, message: 'The request is malformed' },
  MALFORMED_MESSAGE: { status: 400, closeCode: 4400, message: 'The protocol message is malformed' },
  UNKNOWN_MESSAGE_TYPE: { status: 400, closeCode: 4400, message: 'Unknown protocol message type' },
  USER_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such user' },
  CONVERSATION_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such conversation' },
  CONVERSATION_DELETED: { status: 404, closeCode: 4404, message: 'The conversation was deleted' },
  MESSAGE_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such message' },
  PARTICIPANT_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such participant' },
  BAN_NOT_FOUND: { status: 404, closeCode: 4404, message: 'The user is not banned from this conversation' },
  ROUTE_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such route' },
  PARTICIPANT_LIMIT: { status: 409, closeCode: 4409, message: 'The conversation has reached maxParticipants' },
  GUEST_LIMIT: { status: 409, closeCode: 4409, message: 'The conversation is full of guests' },
  CLAIM_CONFLICT: { status: 409, closeCode: 4409, message: 'A user token created the conversation again while it was being claimed; retry' },
  FRAME_TOO_LARGE: { status: 413, closeCode: 4413, message: 'The frame is over the 1 MiB limit' },
  BODY_TOO_LARGE: { status: 413, closeCode: 4413, message: 'The request body is over the limit' },
  HEADERS_TOO_LARGE: { status: 431, closeCode: 4400, message: 'The request headers are too large' },
  REQUEST_TIMEOUT: { status: 408, closeCode: 4400, message: 'The request took too long to arrive' },
  FILE_TOO_LARGE: { status: 413, closeCode: 4413, message: 'The file is over maxFileSize' },
  FILE_NOT_FOUND: { status: 404, closeCode: 4404, message: 'No such file in this conversation' },
  INVALID_ATTACHMENT: { status: 400, closeCode: 4403, message: 'The attachment does not name a file this sender uploaded to this conversation, with its metadata' },
  RANGE_NOT_SATISFIABLE: { status: 416, closeCode: 4400, message: 'The requested byte range is not within the file' },
  UPLOAD_QUOTA_EXCEEDED: { status: 429, closeCode: 4403, message: 'The user has uploaded maxUploadBytesPerUserPerDay today' },
  RATE_LIMITED: { status: 429, closeCode: 4429, message: 'Too many messages or connections: slow down' },
  SLOW_CONSUMER: { status: 503, closeCode: 1013, message: 'The connection does not read what it is sent; reconnect when it can' },
  ADMISSION_TIMEOUT: { status: 408, closeCode: 1013, message: 'The connection was not admitted in time; retry later' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, closeCode: 4400, message: 'Send application/json' },
  STORAGE_CORRUPT: { status: 500, closeCode: 1011, message: 'The storage folder is damaged; see docs/operations.md (npm run repair)' },
  SHUTTING_DOWN: { status: 503, closeCode: 1001, message: 'The server is shutting down' },
  STORAGE_UNAVAILABLE: { status: 503, closeCode: 1013, message: 'Storage is failing: nothing can be written now; retry later' },
  INTERNAL: { status: 500, closeCode: 1011, message: 'Internal error' }
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

/** True when `code` is one of the registered codes. */
export const isErrorCode = (code: unknown): code is ErrorCode =>
  typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, code)

/**
 * An error with a stable code. Thrown by pure logic and turned into an HTTP answer or a
 * WebSocket refusal at the edge; `status` and `closeCode` come from the registry.
 */
export class ChatError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly closeCode: number

  constructor (code: ErrorCode, message?: string) {
    super(message ?? ERRORS[code].message)
    this.name = 'ChatError'
    this.code = code
    this.status = ERRORS[code].status
    this.closeCode = ERRORS[code].closeCode
  }

  /** The JSON body the REST API answers with, and the reason of a sync refusal. */
  toJSON (): { code: ErrorCode, message: string } {
    return { code: this.code, message: this.message }
  }
}

/** True when `e` is a ChatError. */
export const isChatError = (e: unknown): e is ChatError => e instanceof ChatError
