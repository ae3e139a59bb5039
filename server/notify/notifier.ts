/**
 * Notifications (TalkJS rules, adapted): tells participants about messages they missed, once
 * the conversation has gone quiet.
 *
 * Who. A participant with `notify: true`, or `notify: 'MentionsOnly'` and mentioned as
 * `@userId`, with access other than `None`, other than the sender, that is not viewing the
 * conversation when the message arrives: it has no participant connection there, or every such
 * connection's presence says `viewing: false`. Guests are never participants, so never
 * recipients; their messages notify participants like any other. System messages never notify.
 *
 * When. Per conversation, a pending batch holds, per recipient, every message since the first
 * one it missed (for `MentionsOnly`, since the first that mentions it). The batch is sent once
 * no participant of the conversation has been typing (presence `typing: true`; guests' typing
 * holds nothing) for `notificationDelay` seconds since the last message: while a batch is
 * pending, the notifier listens to the room's typing changes, holds the batch while a
 * participant types, and counts the quiet period from the moment typing stopped (an event, not a
 * sample). Whatever anyone types or sends, a batch is sent at the latest `MAX_HOLD_FACTOR` ×
 * `notificationDelay` after it started.
 *
 * State machine, per conversation: idle -> pending (a missed message) -> pending (more
 * messages, typing: the quiet period restarts) -> fire -> idle. While pending, a recipient
 * leaves the batch when it sends a message, starts viewing, is removed or reads past it; edits
 * replace and deletes drop messages in the batch. When it fires, each recipient still a
 * participant that wants notifications, is not viewing and has unread messages in its batch
 * gets one notification holding them.
 *
 * Pending batches are kept in memory and, when a `PendingStore` is given, written to it after
 * every change (coalesced, off the sync path), so a restart resumes them: a restored batch
 * fires `notificationDelay` after its last activity, as it would have. Delivery itself is
 * durable (the outbox).
 *
 * This is the notifier of one node alone on its store (LevelDB). On a store several nodes share
 * (PostgreSQL), `SharedNotifier` (shared-notifier.ts) applies the same rules, through the pure
 * helpers below (`addSent`, `applyEdit`, `notificationsOf`), to batches kept in the store.
 */
import type * as Y from 'yjs'
import { getParticipant, listParticipants, metaOf, readsOf } from '../../shared/doc.ts'
import type { Message } from '../../shared/schema.ts'
import type { ServerEvent } from '../events.ts'
import type { Timers } from '../presence/presence-hub.ts'
import { isMentioned } from './mentions.ts'

/** What the notifier reads from a loaded conversation (a `Room` is one). */
export interface NotifierRoom {
  readonly doc: Y.Doc
  readonly presence: {
    participantViewing (): Map<string, boolean>
    /** Users (participants and guests) with a state saying `typing: true` now. */
    typingUsers (): Set<string>
    /** Calls `fn` when someone starts or stops typing; returns the unsubscribe function. */
    onTypingChange (fn: () => void): () => void
  }
}

/** A pending batch as stored: JSON. */
export interface StoredPending {
  subject: string | null
  recipients: Array<[string, Message[]]>
  busyAt: number
  /** When the batch started (absent in batches stored before it was kept: then `busyAt`). */
  startedAt?: number
}

/** A pending batch is sent at the latest this many times `notificationDelay` after it started. */
export const MAX_HOLD_FACTOR = 10

/** Where pending batches survive a restart. `save(conv, null)` forgets one. */
export interface PendingStore {
  save (conv: string, pending: StoredPending | null): void
  loadAll (): Promise<Array<[string, StoredPending]>>
}

/** One notification: the messages one recipient missed in one conversation, oldest first. */
export interface Notification {
  conversationId: string
  subject: string | null
  recipientId: string
  messages: Message[]
}

export interface NotifierDeps {
  timers: Timers
  now: () => number
  /** The conversation's room when it is loaded (it is while anyone is connected). */
  peek: (conv: string) => NotifierRoom | undefined
  /** The `notificationDelay` setting, in seconds. */
  delaySeconds: () => number
  /** Hands a notification to delivery; must not throw or wait. */
  deliver: (n: Notification) => void
  /** Keeps pending batches across restarts (optional). */
  store?: PendingStore
}

interface Pending {
  subject: string | null
  /** Recipient to the messages it missed, in arrival order. */
  recipients: Map<string, Message[]>
  /** When the conversation was last busy (a message, or typing starting or stopping), in ms. */
  busyAt: number
  /** When the batch started, in ms: it fires by `startedAt + MAX_HOLD_FACTOR × delay`. */
  startedAt: number
  /** Whether a participant was typing at the last typing change seen. */
  typing: boolean
  timer: unknown
  /** The presence whose typing changes this batch listens to, and how to stop listening. */
  watched: NotifierRoom['presence'] | null
  unwatch: (() => void) | null
}

/** What a pending batch holds, wherever it is kept (this process's memory, or PostgreSQL for a cluster). */
export interface BatchState {
  subject: string | null
  /** Recipient to the messages it missed, in arrival order. */
  recipients: Map<string, Message[]>
}

/** Whether a participant (not a guest) of the room is typing now. */
export const participantTyping = (room: NotifierRoom): boolean => {
  for (const user of room.presence.typingUsers()) if (getParticipant(room.doc, user) !== undefined) return true
  return false
}

/**
 * A message arrived: the sender and the participants viewing leave the batch; every other
 * participant that wants notifications (all, or mentions and is mentioned) gets it added.
 */
export const addSent = (p: BatchState, room: NotifierRoom, m: Message): void => {
  const viewing = room.presence.participantViewing()
  const subject = metaOf(room.doc).get('subject')
  p.subject = typeof subject === 'string' ? subject : null
  if (m.senderId !== null) p.recipients.delete(m.senderId)
  for (const [userId, participant] of listParticipants(room.doc)) {
    if (userId === m.senderId || participant.access === 'None' || participant.notify === false) continue
    if (viewing.get(userId) === true) {
      p.recipients.delete(userId)
      continue
    }
    const batch = p.recipients.get(userId)
    if (batch !== undefined) batch.push(m)
    else if (participant.notify === true || isMentioned(m.text, userId)) p.recipients.set(userId, [m])
  }
}

/** Applies an edit, delete, read, or removal to a batch. */
export const applyEdit = (p: BatchState, e: Extract<ServerEvent, { conversationId: string }>): void => {
  if (e.type === 'message.updated' || e.type === 'message.deleted') {
    const { message } = e
    for (const [userId, batch] of p.recipients) {
      const i = batch.findIndex(m => m.id === message.id)
      if (i < 0) continue
      if (e.type === 'message.updated') batch[i] = message
      else batch.splice(i, 1)
      if (batch.length === 0) p.recipients.delete(userId)
    }
  } else if (e.type === 'reads.updated') {
    const batch = p.recipients.get(e.userId)?.filter(m => m.createdAt > e.readUpTo) ?? []
    if (batch.length > 0) p.recipients.set(e.userId, batch)
    else p.recipients.delete(e.userId)
  } else if (e.type === 'participant.removed') {
    p.recipients.delete(e.userId)
  }
}

/**
 * What a batch that fires sends: one notification per recipient still a participant that wants
 * notifications, is not viewing, and has unread messages in it (checked against `room` when the
 * conversation is loaded).
 */
export const notificationsOf = (conv: string, p: BatchState, room: NotifierRoom | undefined): Notification[] => {
  const out: Notification[] = []
  const viewing = room?.presence.participantViewing()
  for (const [userId, batch] of p.recipients) {
    let messages = batch
    if (room !== undefined) {
      const participant = getParticipant(room.doc, userId)
      if (participant === undefined || participant.notify === false || participant.access === 'None') continue
      if (viewing?.get(userId) === true) continue
      const readUpTo = readsOf(room.doc).get(userId)
      if (typeof readUpTo === 'number') messages = batch.filter(m => m.createdAt > readUpTo)
    }
    if (messages.length > 0) out.push({ conversationId: conv, subject: p.subject, recipientId: userId, messages })
  }
  return out
}

export class Notifier {
  readonly #deps: NotifierDeps
  readonly #pending = new Map<string, Pending>()

  constructor (deps: NotifierDeps) {
    this.#deps = deps
  }

  /** Event subscriber: never throws, never waits. */
  handle (e: ServerEvent): void {
    if (e.type === 'message.sent') this.#onSent(e.conversationId, e.message)
    else if (e.type === 'conversation.deleted') this.#drop(e.conversationId)
    else if ('conversationId' in e) this.#edit(e)
  }

  /** Conversations with a batch pending. */
  get pendingConversations (): number {
    return this.#pending.size
  }

  /** Resumes the batches a previous run left pending. */
  async restore (): Promise<void> {
    if (this.#deps.store === undefined) return
    for (const [conv, stored] of await this.#deps.store.loadAll()) {
      if (this.#pending.has(conv) || stored.recipients.length === 0) continue
      const p: Pending = { subject: stored.subject, recipients: new Map(stored.recipients), busyAt: stored.busyAt, startedAt: stored.startedAt ?? stored.busyAt, typing: false, timer: null, watched: null, unwatch: null }
      this.#pending.set(conv, p)
      this.#schedule(conv, p, 0)
    }
  }

  /** Clears every timer; pending batches stay in the store for the next start. */
  stop (): void {
    for (const p of this.#pending.values()) this.#release(p)
    this.#pending.clear()
  }

  #save (conv: string): void {
    const p = this.#pending.get(conv)
    this.#deps.store?.save(conv, p === undefined ? null : { subject: p.subject, recipients: [...p.recipients], busyAt: p.busyAt, startedAt: p.startedAt })
  }

  #onSent (conv: string, m: Message): void {
    if (m.type === 'SystemMessage') return
    const room = this.#deps.peek(conv)
    if (room === undefined) return
    const p: Pending = this.#pending.get(conv) ?? { subject: null, recipients: new Map(), busyAt: 0, startedAt: this.#deps.now(), typing: false, timer: null, watched: null, unwatch: null }
    addSent(p, room, m)
    if (p.recipients.size === 0) {
      if (this.#pending.has(conv)) this.#drop(conv)
      return
    }
    this.#pending.set(conv, p)
    p.busyAt = this.#deps.now()
    this.#save(conv)
    this.#watch(conv, p, room)
    this.#schedule(conv, p, this.#nextCheckIn(p))
  }

  /** Applies an edit, delete, read, or removal to the pending batch. */
  #edit (e: Extract<ServerEvent, { conversationId: string }>): void {
    const p = this.#pending.get(e.conversationId)
    if (p === undefined) return
    applyEdit(p, e)
    if (p.recipients.size === 0) this.#drop(e.conversationId)
    else this.#save(e.conversationId)
  }

  #delayMs (): number {
    return Math.max(0, Math.min(900, this.#deps.delaySeconds())) * 1000
  }

  #schedule (conv: string, p: Pending, ms: number): void {
    if (p.timer !== null) this.#deps.timers.clearTimeout(p.timer)
    p.timer = this.#deps.timers.setTimeout(() => {
      p.timer = null
      this.#check(conv, p)
    }, ms)
  }

  /** Listens to the typing changes of the conversation's room (again, when it was reloaded). */
  #watch (conv: string, p: Pending, room: NotifierRoom | undefined): void {
    if (room === undefined || p.watched === room.presence) return
    p.unwatch?.()
    p.watched = room.presence
    p.typing = participantTyping(room)
    p.unwatch = room.presence.onTypingChange(() => {
      if (this.#pending.get(conv) !== p) return
      const typing = participantTyping(room)
      // Only participants' typing counts: a guest could otherwise hold the batch.
      if (typing === p.typing && !typing) return
      p.typing = typing
      // Starting or stopping is a sign of typing: the quiet period starts over from now.
      p.busyAt = this.#deps.now()
      this.#save(conv)
      this.#schedule(conv, p, this.#nextCheckIn(p))
    })
  }

  /** Until the end of the quiet period, or of the longest hold, whichever comes first. */
  #nextCheckIn (p: Pending): number {
    const now = this.#deps.now()
    return Math.max(0, Math.min(p.busyAt + this.#delayMs(), p.startedAt + MAX_HOLD_FACTOR * this.#delayMs()) - now)
  }

  /**
   * At the end of a quiet period: fires unless a participant is typing now or the period was
   * extended meanwhile; and, whatever anyone types, once the batch was held as long as it may be.
   */
  #check (conv: string, p: Pending): void {
    if (this.#pending.get(conv) !== p) return
    const room = this.#deps.peek(conv)
    this.#watch(conv, p, room)
    const now = this.#deps.now()
    const held = now - p.startedAt >= MAX_HOLD_FACTOR * this.#delayMs()
    const quiet = room === undefined || !participantTyping(room)
    if (held || (quiet && p.busyAt + this.#delayMs() <= now)) this.#fire(conv, p)
    else if (quiet) this.#schedule(conv, p, this.#nextCheckIn(p))
    else this.#schedule(conv, p, Math.max(0, p.startedAt + MAX_HOLD_FACTOR * this.#delayMs() - now))
  }

  /** Stops the batch's timer and its listening. */
  #release (p: Pending): void {
    if (p.timer !== null) this.#deps.timers.clearTimeout(p.timer)
    p.timer = null
    p.unwatch?.()
    p.unwatch = null
    p.watched = null
  }

  #fire (conv: string, p: Pending): void {
    this.#release(p)
    this.#pending.delete(conv)
    this.#save(conv)
    for (const n of notificationsOf(conv, p, this.#deps.peek(conv))) this.#deps.deliver(n)
  }

  #drop (conv: string): void {
    const p = this.#pending.get(conv)
    if (p === undefined) return
    this.#release(p)
    this.#pending.delete(conv)
    this.#save(conv)
  }
}
