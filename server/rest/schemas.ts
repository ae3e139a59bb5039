/** JSON schemas of request bodies (validated by fastify before a handler runs). */
import { MAX_SLOW_MODE_SECONDS } from '../rate-limit.ts'
const id = { type: 'string', pattern: '^[A-Za-z0-9_\\-.~]{1,128}$' } as const
const stringMap = { type: 'object', additionalProperties: { type: 'string', maxLength: 10000 }, maxProperties: 100 } as const
const stringOrList = { anyOf: [{ type: 'string', maxLength: 320 }, { type: 'array', items: { type: 'string', maxLength: 320 }, maxItems: 20 }] } as const
const nullableString = (max: number) => ({ anyOf: [{ type: 'string', maxLength: max }, { type: 'null' }] }) as const

export const userBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    email: stringOrList,
    phone: stringOrList,
    photoUrl: nullableString(2048),
    custom: stringMap
  }
} as const

export const conversationBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    subject: nullableString(1000),
    photoUrl: nullableString(2048),
    custom: stringMap,
    guestAccess: { enum: ['write', 'read', 'none'] },
    slowMode: { type: 'integer', minimum: 0, maximum: MAX_SLOW_MODE_SECONDS },
    participants: { type: 'array', items: id, maxItems: 1000 }
  }
} as const

export const participantBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    access: { enum: ['ReadWrite', 'Read', 'None'] },
    notify: { enum: [true, false, 'MentionsOnly'] },
    role: { enum: ['moderator', null] }
  }
} as const

export const postMessagesBody = {
  type: 'array',
  minItems: 1,
  maxItems: 10,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['text', 'type'],
    properties: {
      text: { type: 'string' },
      sender: id,
      type: { enum: ['UserMessage', 'SystemMessage'] },
      custom: stringMap,
      referencedMessageId: id,
      attachment: {
        type: 'object',
        additionalProperties: false,
        required: ['fileId', 'name', 'size', 'contentType'],
        properties: {
          fileId: id,
          name: { type: 'string', minLength: 1, maxLength: 255 },
          size: { type: 'integer', minimum: 0 },
          contentType: { type: 'string', minLength: 1, maxLength: 255 }
        }
      }
    }
  }
} as const

export const patchMessageBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    text: { type: 'string' },
    custom: stringMap
  }
} as const

export const banBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    reason: { type: 'string', maxLength: 1000 },
    until: { type: 'integer', minimum: 0 }
  }
} as const
