/**
 * Webhook events: which server events are posted, and their JSON body
 * `{ id, type, createdAt, data }`. `id` is stable across retries and restarts (receivers
 * dedupe on it); `data` is the server event without its `type`.
 */
import type { ServerEvent } from '../events.ts'

export const WEBHOOK_EVENT_TYPES = [
  'message.sent', 'message.updated', 'message.deleted', 'message.reacted', 'conversation.deleted',
  'participant.added', 'participant.removed', 'user.updated', 'notification.triggered',
  'conversation.user_banned', 'conversation.user_unbanned', 'conversation.guest_kicked'
] as const

export type WebhookEventType = typeof WEBHOOK_EVENT_TYPES[number]

export interface WebhookEvent {
  id: string
  type: WebhookEventType
  /** Milliseconds since the epoch, when the event was queued. */
  createdAt: number
  data: Record<string, unknown>
}

export const isWebhookEventType = (v: unknown): v is WebhookEventType =>
  (WEBHOOK_EVENT_TYPES as readonly unknown[]).includes(v)

/** The webhook type and data of a server event, or null when that event is not posted. */
export const webhookDataOf = (e: ServerEvent): { type: WebhookEventType, data: Record<string, unknown> } | null => {
  if (!isWebhookEventType(e.type)) return null
  const { type: _type, ...data } = e
  return { type: e.type, data }
}
