/**
 * Server events: what happened to conversations, messages, participants and users, emitted
 * only once the change is durable. Webhooks, notifications and the per-user inbox index
 * subscribe here; nothing in the sync path waits for a subscriber.
 */
import type { Message, Participant } from '../shared/schema.ts'

export type ServerEvent =
  | { type: 'message.sent', conversationId: string, message: Message }
  | { type: 'message.updated', conversationId: string, message: Message, previous: Message | null }
  | { type: 'message.deleted', conversationId: string, message: Message }
  | { type: 'participant.added', conversationId: string, userId: string, participant: Participant }
  | { type: 'participant.removed', conversationId: string, userId: string }
  | { type: 'reads.updated', conversationId: string, userId: string, readUpTo: number }
  | { type: 'conversation.updated', conversationId: string, subject: string | null }
  | { type: 'conversation.deleted', conversationId: string }
  | { type: 'user.updated', userId: string, user: Record<string, unknown> }

export type ServerEventType = ServerEvent['type']

/** Receives durable events. Must not throw and must not block: queue work elsewhere. */
export interface EventSink {
  emit (event: ServerEvent): void
}

/** A sink that fans events out to subscribers; a subscriber that throws is reported, not fatal. */
export class EventBus implements EventSink {
  private readonly subscribers: Array<(e: ServerEvent) => void> = []
  private readonly onError: (err: unknown, e: ServerEvent) => void

  constructor (onError: (err: unknown, e: ServerEvent) => void) {
    this.onError = onError
  }

  subscribe (fn: (e: ServerEvent) => void): () => void {
    this.subscribers.push(fn)
    return () => {
      const i = this.subscribers.indexOf(fn)
      if (i >= 0) this.subscribers.splice(i, 1)
    }
  }

  emit (event: ServerEvent): void {
    for (const fn of this.subscribers) {
      try {
        fn(event)
      } catch (err) {
        this.onError(err, event)
      }
    }
  }
}
