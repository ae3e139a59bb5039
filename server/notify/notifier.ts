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
 * pending, presence is sampled every `typingPollMs`. Whatever anyone types or sends, a batch is
 * sent at the latest `MAX_HOLD_FACTOR` × `notificationDelay` after it started.
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
    typingUsers (): Set<string>
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
  /** How often presence is sampled for typing while a batch is pending, in ms. */
  typingPollMs: number
  /** Hands a notification to delivery; must not throw or wait. */
  deliver: (n: Notification) => void
  /** Keeps pending batches across restarts (optional). */
  store?: PendingStore
}

interface Pending {
  subject: string | null
  /** Recipient to the messages it missed, in arrival order. */
  recipients: Map<string, Message[]>
  /** When the conversation was last seen busy (a message, or someone typing), in ms. */
  busyAt: number
  /** When the batch started, in ms: it fires by `startedAt + MAX_HOLD_FACTOR × delay`. */
  startedAt: number
  timer: unknown
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
      const p: Pending = { subject: stored.subject, recipients: new Map(stored.recipients), busyAt: stored.busyAt, startedAt: stored.startedAt ?? stored.busyAt, timer: null }
      this.#pending.set(conv, p)
      this.#schedule(conv, p, 0)
    }
  }

  /** Clears every timer; pending batches stay in the store for the next start. */
  stop (): void {
    for (const p of this.#pending.values()) if (p.timer !== null) this.#deps.timers.clearTimeout(p.timer)
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
    const viewing = room.presence.participantViewing()
    const subject = metaOf(room.doc).get('subject')
    const p = this.#pending.get(conv) ?? { subject: null, recipients: new Map(), busyAt: 0, startedAt: this.#deps.now(), timer: null }
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
    if (p.recipients.size === 0) {
      if (this.#pending.has(conv)) this.#drop(conv)
      return
    }
    this.#pending.set(conv, p)
    p.busyAt = this.#deps.now()
    this.#save(conv)
    this.#schedule(conv, p, Math.min(this.#deps.typingPollMs, this.#delayMs()))
  }

  /** Applies an edit, delete, read, or removal to the pending batch. */
  #edit (e: Extract<ServerEvent, { conversationId: string }>): void {
    const p = this.#pending.get(e.conversationId)
    if (p === undefined) return
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

  /**
   * Fires when the conversation has been quiet long enough, or the batch was held as long as it
   * may be; otherwise samples again.
   */
  #check (conv: string, p: Pending): void {
    if (this.#pending.get(conv) !== p) return
    const now = this.#deps.now()
    const room = this.#deps.peek(conv)
    // Only participants' typing holds a batch: a guest could otherwise hold it forever.
    const typing = room !== undefined && [...room.presence.typingUsers()].some(u => getParticipant(room.doc, u) !== undefined)
    if (typing) p.busyAt = now
    const remaining = p.busyAt + this.#delayMs() - now
    const held = now - p.startedAt >= MAX_HOLD_FACTOR * this.#delayMs()
    if (held || (!typing && remaining <= 0)) this.#fire(conv, p)
    else this.#schedule(conv, p, typing ? this.#deps.typingPollMs : Math.min(this.#deps.typingPollMs, remaining))
  }

  #fire (conv: string, p: Pending): void {
    this.#pending.delete(conv)
    this.#save(conv)
    const room = this.#deps.peek(conv)
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
      if (messages.length > 0) this.#deps.deliver({ conversationId: conv, subject: p.subject, recipientId: userId, messages })
    }
  }

  #drop (conv: string): void {
    const p = this.#pending.get(conv)
    if (p === undefined) return
    if (p.timer !== null) this.#deps.timers.clearTimeout(p.timer)
    this.#pending.delete(conv)
    this.#save(conv)
  }
}
