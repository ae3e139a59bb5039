/**
 * Server events: what happened to conversations, messages, participants and users, emitted
 * only once the change is durable. Webhooks, notifications and the per-user inbox index
 * subscribe here; nothing in the sync path waits for a subscriber.
 */
import type { Message, Participant } from '../shared/schema.ts'

export type ServerEvent =
  | { type: 'message.sent', conversationId: string, message: Message }
  | { type: 'message.updated', conversationId: string, message: Message, previous: Message | null }
  /** `deletedBy`: the user whose token deleted it (its sender or a moderator); null for admin credentials. */
  | { type: 'message.deleted', conversationId: string, message: Message, deletedBy: string | null }
  /** A user's reactions to a message changed: `reactions` is the new array, [] when removed. */
  | { type: 'message.reacted', conversationId: string, messageId: string, userId: string, reactions: string[] }
  | { type: 'participant.added', conversationId: string, userId: string, participant: Participant }
  | { type: 'participant.updated', conversationId: string, userId: string, participant: Participant }
  /** `by`: the user whose token removed it; null for admin credentials (or the server, on a ban). */
  | { type: 'participant.removed', conversationId: string, userId: string, by: string | null }
  | { type: 'reads.updated', conversationId: string, userId: string, readUpTo: number }
  | { type: 'conversation.updated', conversationId: string, subject: string | null }
  | { type: 'conversation.deleted', conversationId: string }
  /** Moderation (v1.1); `by` is the moderator's user id, or null for admin credentials. */
  | { type: 'conversation.user_banned', conversationId: string, userId: string, reason: string | null, until: number | null, by: string | null }
  | { type: 'conversation.user_unbanned', conversationId: string, userId: string, by: string | null }
  | { type: 'conversation.guest_kicked', conversationId: string, userId: string, connections: number, by: string | null }
  | { type: 'user.updated', userId: string, user: Record<string, unknown> }

export type ServerEventType = ServerEvent['type']

/**
 * A write that must land in the same LevelDB batch as the change its events describe, so a
 * crash can never keep the change and lose the write (the webhook outbox uses it).
 */
export interface StagedWrite {
  /** The store section (`DocStore.section(name)`) the key belongs to. */
  section: string
  key: string
  value: unknown
  /** Deletes the key instead of putting `value`. */
  del?: boolean
  /** Called once the batch holding the write is durable. */
  committed: () => void
}

/** Receives durable events. Must not throw and must not block: queue work elsewhere. */
export interface EventSink {
  emit (event: ServerEvent): void
  /** Writes to make in the same batch as the change that produces `events` (before `emit`). */
  stage (events: readonly ServerEvent[]): StagedWrite[]
}

/**
 * Writes a change together with what its events stage (`write` receives the staged puts to
 * include in its batch), then, once durable, commits the staged writes and emits the events.
 */
export const writeWithEvents = async (sink: EventSink, events: readonly ServerEvent[], write: (staged: StagedWrite[]) => Promise<void>): Promise<void> => {
  const staged = sink.stage(events)
  await write(staged)
  for (const w of staged) w.committed()
  for (const e of events) sink.emit(e)
}

/** A sink that fans events out to subscribers; a subscriber that throws is reported, not fatal. */
export class EventBus implements EventSink {
  private readonly subscribers: Array<(e: ServerEvent) => void> = []
  private readonly stagers: Array<(events: readonly ServerEvent[]) => StagedWrite[]> = []
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

  /** Adds a stager: it returns the writes to make atomically with the change behind `events`. */
  addStager (fn: (events: readonly ServerEvent[]) => StagedWrite[]): () => void {
    this.stagers.push(fn)
    return () => {
      const i = this.stagers.indexOf(fn)
      if (i >= 0) this.stagers.splice(i, 1)
    }
  }

  stage (events: readonly ServerEvent[]): StagedWrite[] {
    if (events.length === 0 || this.stagers.length === 0) return []
    const out: StagedWrite[] = []
    for (const fn of this.stagers) {
      try {
        out.push(...fn(events))
      } catch (err) {
        for (const e of events) this.onError(err, e)
      }
    }
    return out
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
