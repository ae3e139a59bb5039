/**
 * The conversation document (contract §4): root names, value shapes and the pure checks that
 * decide whether a JSON value is a well-formed message, participant or read marker.
 *
 * Roots:
 *   messages      Y.Array of plain JSON message objects (peers append, edit and delete their own)
 *   participants  Y.Map userId -> { access, notify, joinedAt, role? }   (server only)
 *   meta          Y.Map subject?, photoUrl?, custom?, createdAt, guestAccess (server only)
 *   reads         Y.Map userId -> newest createdAt read (each participant, own key)
 *   reactions     Y.Map `<messageId>/<userId>` -> reaction strings (each writer, own keys; see reactions.ts)
 */

export const ROOT_MESSAGES = 'messages'
export const ROOT_PARTICIPANTS = 'participants'
export const ROOT_META = 'meta'
export const ROOT_READS = 'reads'
export const ROOT_REACTIONS = 'reactions'

/** Roots that peers may write to (the server writes all of them). */
export const PEER_WRITABLE_ROOTS: ReadonlySet<string> = new Set([ROOT_MESSAGES, ROOT_READS, ROOT_REACTIONS])

export const ACCESS_VALUES = ['ReadWrite', 'Read', 'None'] as const
export type Access = typeof ACCESS_VALUES[number]
export const isAccess = (v: unknown): v is Access => (ACCESS_VALUES as readonly unknown[]).includes(v)

export type Notify = boolean | 'MentionsOnly'
export const isNotify = (v: unknown): v is Notify => v === true || v === false || v === 'MentionsOnly'

export const GUEST_ACCESS_VALUES = ['write', 'read', 'none'] as const
export type GuestAccess = typeof GUEST_ACCESS_VALUES[number]
export const isGuestAccess = (v: unknown): v is GuestAccess => (GUEST_ACCESS_VALUES as readonly unknown[]).includes(v)

export type Role = 'participant' | 'guest'

export type MessageType = 'UserMessage' | 'SystemMessage'

/**
 * A participant's role (v1.1): a `moderator` deletes any message, bans and lifts bans, removes
 * guests and non-moderator participants and sets `slowMode` and `guestAccess` (docs/api.md).
 */
export type ParticipantRole = 'moderator'
export const isParticipantRole = (v: unknown): v is ParticipantRole => v === 'moderator'

/** A participant entry, the value under its user id in `participants`. */
export interface Participant {
  access: Access
  notify: Notify
  /** Milliseconds since the epoch. */
  joinedAt: number
  /** Absent for an ordinary participant. */
  role?: ParticipantRole
}

/** A message, one element of `messages`. */
export interface Message {
  id: string
  senderId: string | null
  text: string
  /** Milliseconds since the epoch. */
  createdAt: number
  type: MessageType
  custom?: Record<string, string>
  editedAt?: number
  referencedMessageId?: string
  attachment?: Attachment
}

/**
 * A file a message carries (contract §4.2): what the upload answered, copied as it is. The server
 * checks it against the upload (same conversation, same sender, same metadata).
 */
export interface Attachment {
  fileId: string
  /** The file name the uploader gave, 1 to 255 characters. */
  name: string
  /** Bytes. */
  size: number
  /** The type the server sniffed from the bytes (`application/octet-stream` when unknown). */
  contentType: string
}

/** The keys of an attachment, all required. */
export const ATTACHMENT_KEYS: ReadonlySet<string> = new Set(['fileId', 'name', 'size', 'contentType'])

/** Why `v` is not a well-formed attachment, or null. */
export const attachmentShapeProblem = (v: unknown): string | null => {
  if (!isPlainObject(v) || Object.getPrototypeOf(v) !== Object.prototype) return 'attachment must be a plain object'
  for (const k of Object.keys(v)) if (!ATTACHMENT_KEYS.has(k)) return `unknown attachment key ${JSON.stringify(k.slice(0, 40))}`
  if (typeof v.fileId !== 'string' || !ID_PATTERN.test(v.fileId)) return 'attachment.fileId must be a valid id'
  if (typeof v.name !== 'string' || v.name.length < 1 || v.name.length > 255) return 'attachment.name must be 1 to 255 characters'
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) return 'attachment.size must be a byte count'
  if (typeof v.contentType !== 'string' || v.contentType.length < 1 || v.contentType.length > 255) return 'attachment.contentType must be 1 to 255 characters'
  return null
}

/** The keys a message object may have, and nothing else. */
export const MESSAGE_KEYS: ReadonlySet<string> = new Set([
  'id', 'senderId', 'text', 'createdAt', 'type', 'custom', 'editedAt', 'referencedMessageId', 'attachment'
])

/** Default maximum text length in characters (configurable per server). */
export const DEFAULT_MAX_TEXT_LENGTH = 10_000

const ID_PATTERN = /^[A-Za-z0-9_\-.~]{1,128}$/

/** True when `v` is a plain object whose prototype is Object.prototype or null. */
export const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** True when `v` is a plain object of string values with well-formed keys. */
export const isStringMap = (v: unknown): v is Record<string, string> => {
  if (!isPlainObject(v)) return false
  for (const k of Object.keys(v)) {
    if (k === '__proto__' || typeof v[k] !== 'string') return false
  }
  return true
}

const isTimestamp = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * Why `v` is not a well-formed message, or `null` when it is. Checks own keys only: a key that
 * would come from a prototype is never trusted (lib0 decodes objects by assignment, so a
 * `__proto__` key can forge one).
 */
export const messageShapeProblem = (v: unknown, maxTextLength: number): string | null => {
  if (!isPlainObject(v)) return 'a message must be a plain object'
  if (Object.getPrototypeOf(v) !== Object.prototype) return 'a message must not carry a prototype'
  for (const k of Object.keys(v)) {
    if (!MESSAGE_KEYS.has(k)) return `unknown message key ${JSON.stringify(k.slice(0, 40))}`
  }
  const has = (k: string): boolean => Object.prototype.hasOwnProperty.call(v, k)
  if (!has('id') || typeof v.id !== 'string' || !ID_PATTERN.test(v.id)) return 'id must be a valid id'
  if (!has('type') || (v.type !== 'UserMessage' && v.type !== 'SystemMessage')) return 'type must be UserMessage or SystemMessage'
  if (!has('senderId')) return 'senderId is required'
  if (v.type === 'UserMessage' && (typeof v.senderId !== 'string' || !ID_PATTERN.test(v.senderId))) return 'senderId must be a valid id'
  if (v.type === 'SystemMessage' && v.senderId !== null) return 'a system message has senderId null'
  if (!has('text') || typeof v.text !== 'string') return 'text must be a string'
  if (v.text.length > maxTextLength) return 'text is over the limit'
  if (!has('createdAt') || !isTimestamp(v.createdAt)) return 'createdAt must be milliseconds since the epoch'
  if (has('custom') && !isStringMap(v.custom)) return 'custom must be a map of strings'
  if (has('editedAt') && !isTimestamp(v.editedAt)) return 'editedAt must be milliseconds since the epoch'
  if (has('referencedMessageId') && (typeof v.referencedMessageId !== 'string' || !ID_PATTERN.test(v.referencedMessageId))) return 'referencedMessageId must be a valid id'
  if (has('attachment')) return attachmentShapeProblem(v.attachment)
  return null
}

/** True when `v` is a well-formed message. */
export const isMessage = (v: unknown, maxTextLength = DEFAULT_MAX_TEXT_LENGTH): v is Message =>
  messageShapeProblem(v, maxTextLength) === null
