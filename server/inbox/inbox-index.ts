/**
 * The inbox index: for each user, the conversations where it is a participant, each with its
 * subject, last message, unread count and last activity, kept in the store section `inbox`
 * (layout in `keys.ts`) and updated from durable server events, so listing a user's
 * conversations is one prefix scan, newest activity first, and never opens a document.
 *
 * Membership follows `participant.added` / `participant.removed` (guests never appear). Unread =
 * messages from others created after the user's read marker (`reads[userId]`, moved by
 * `reads.updated`): each message event adjusts every member's count by one, and a moved marker
 * recounts from the conversation's timeline, which costs the messages after the marker. The
 * last message is the last in document order (contract §4.1), read from the live document.
 *
 * Order and consistency. `handle` runs inside the emitting room's flush (the room is loaded),
 * captures what it needs from the document synchronously, and queues the work; the work runs
 * in event order per conversation, off the sync path: the events that arrive while a
 * conversation's work is being written wait and are applied together (a run of messages is one
 * LevelDB batch, any other event one batch), so a backlog drains in a few writes. `list`
 * first waits for the work queued before it, so a list read after a write sees it.
 *
 * Seeding. The first event for a conversation the index does not know (one that existed before
 * the index, or a new one) seeds it from a full snapshot of the live document: participants,
 * read markers and live messages (archived messages older than the live window are not
 * counted as unread). Users whose memberships predate the index are backfilled once, on their
 * first list read, from the store's membership list. Every handler is idempotent, so a seed
 * that already holds an event's effect is not counted twice.
 */
import type * as Y from 'yjs'
import { isMessage, isPlainObject, type Message } from '../../shared/schema.ts'
import type { ServerEvent } from '../events.ts'
import { isChatError } from '../../shared/errors.ts'
import type { KvSection } from '../storage/port.ts'
import * as keys from './keys.ts'
import { captureSnapshot, type ConvSnapshot } from './snapshot.ts'

/** One row of `GET /v1/users/:userId/conversations`. */
export interface ListItem {
  id: string
  subject: string | null
  lastMessage: Message | null
  unreadCount: number
  /** Milliseconds since the epoch: the newest message's `createdAt`, or when the conversation was created. */
  lastActivityAt: number
}

interface ConvState {
  subject: string | null
  lastMessage: Message | null
  lastActivityAt: number
}

interface MemberState {
  /** The read marker: `createdAt` of the last message read (0: none). */
  readUpTo: number
  unreadCount: number
  /** The key of the member's current list row ('' before the first write). */
  listKey: string
}

export interface InboxDeps {
  section: KvSection
  /** The conversation's document when it is loaded now (it is while its events are emitted). */
  peekDoc: (conv: string) => Y.Doc | undefined
  /** Runs `fn` on a conversation's document, loading it; for the one-time backfill only. */
  withDoc: <T>(conv: string, fn: (doc: Y.Doc) => T) => Promise<T>
  /** The store's membership list of a user (it predates the index). */
  listMemberships: (user: string) => Promise<Array<{ conv: string }>>
  conversationExists: (conv: string) => Promise<boolean>
  now: () => number
  /** Reports a failed index write; the index then lags until the next event of that conversation. */
  onError: (err: unknown, conv: string) => void
}

type ConvEvent = Extract<ServerEvent, { conversationId: string }>
/** An event waiting for its conversation's drain, with the snapshot captured when it was emitted. */
interface Queued { event: ConvEvent, snap: ConvSnapshot | null }
type Op = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

/** The work of one event on one conversation, written as one batch. */
interface Ctx {
  conv: string
  state: ConvState
  snap: ConvSnapshot | null
  ops: Op[]
  members: Map<string, MemberState>
  /** Members whose row must be rewritten; `all` after a change every row shows. */
  touched: Set<string> | 'all'
}

const isConvState = (v: unknown): v is ConvState =>
  isPlainObject(v) && typeof v.lastActivityAt === 'number' &&
  (v.subject === null || typeof v.subject === 'string') && (v.lastMessage === null || isMessage(v.lastMessage, Number.MAX_SAFE_INTEGER))

const isMemberState = (v: unknown): v is MemberState =>
  isPlainObject(v) && typeof v.readUpTo === 'number' && typeof v.unreadCount === 'number' && typeof v.listKey === 'string'

const isListItem = (v: unknown): v is ListItem =>
  isPlainObject(v) && typeof v.id === 'string' && typeof v.unreadCount === 'number' && typeof v.lastActivityAt === 'number'

/** Whether message `m` counts as unread for `user` with read marker `readUpTo`. */
const isUnreadFor = (m: Message, user: string, readUpTo: number): boolean => m.senderId !== user && m.createdAt > readUpTo

/** Conversations whose index state is kept in memory between events. */
const CACHED_CONVERSATIONS = 1000

export class InboxIndex {
  readonly #deps: InboxDeps
  readonly #kv: KvSection
  /** Per conversation, the tail of its work queue. */
  readonly #queues = new Map<string, Promise<void>>()
  /** Conversations whose state is known to be stored (their events need no full snapshot). */
  readonly #known = new Set<string>()
  #refused: Queued[] = []
  /**
   * The stored state and members of recently updated conversations, exactly as last written
   * (all writes of a conversation go through its queue), so an event costs no reads of them.
   * Least recently used first; an entry is dropped while its write is in flight or failed.
   */
  readonly #cache = new Map<string, { state: ConvState, members: Map<string, MemberState> }>()
  /** Per conversation, the events waiting for its queued drain (taken as a whole when it runs). */
  readonly #waiting = new Map<string, Queued[]>()

  constructor (deps: InboxDeps) {
    this.#deps = deps
    this.#kv = deps.section
  }

  /** Event subscriber: never throws, never waits. */
  handle (event: ServerEvent): void {
    // Reactions never count as messages: nothing in a conversation list changes.
    if (!('conversationId' in event) || event.type === 'message.reacted') return
    const conv = event.conversationId
    if (event.type === 'conversation.deleted') {
      this.#known.delete(conv)
      this.#waiting.delete(conv) // events after the deletion start a new drain behind it
      void this.#enqueue(conv, async () => await this.#deleteConversation(conv))
      return
    }
    const doc = this.#deps.peekDoc(conv)
    const snap = doc === undefined ? null : captureSnapshot(doc, !this.#known.has(conv))
    const waiting = this.#waiting.get(conv)
    if (waiting !== undefined) {
      waiting.push({ event, snap })
      return
    }
    const drain: Queued[] = [{ event, snap }]
    this.#waiting.set(conv, drain)
    void this.#enqueue(conv, async () => {
      if (this.#waiting.get(conv) === drain) this.#waiting.delete(conv)
      await this.#drain(drain)
    })
  }

  /**
   * Applies the events that waited, in order. A run of consecutive `message.sent` events is
   * one batch (their handlers read nothing the run writes), so a backlog, such as a burst of
   * messages before a shutdown, costs a few writes, not one per message. Any other event is
   * its own batch: its handler may read what the events before it wrote.
   */
  async #drain (items: readonly Queued[]): Promise<void> {
    for (let i = 0; i < items.length;) {
      let j = i + 1
      if (items[i].event.type === 'message.sent') while (j < items.length && items[j].event.type === 'message.sent') j++
      const run = items.slice(i, j)
      i = j
      await this.#apply(run).catch(err => {
        // Storage refused the write (it is failing): keep the run for when it is back. Nothing
        // else of this conversation can change meanwhile, since every change is refused too.
        if (isChatError(err) && err.code === 'STORAGE_UNAVAILABLE') {
          this.#refused.push(...run)
          return
        }
        // Any other failure is reported and the next run goes on, as separate events would.
        this.#deps.onError(err, run[0].event.conversationId)
      })
    }
  }

  /** Applies again, in order, the events whose writes storage refused (call once it is back). */
  retryRefused (): void {
    const refused = this.#refused
    this.#refused = []
    const byConv = new Map<string, Queued[]>()
    for (const q of refused) {
      const conv = q.event.conversationId
      byConv.set(conv, [...(byConv.get(conv) ?? []), q])
    }
    for (const [conv, items] of byConv) void this.#enqueue(conv, async () => await this.#drain(items))
  }

  /** Events refused by failing storage, in order (see `retryRefused`). */
  get refusedCount (): number { return this.#refused.length }

  /** The user's conversations, newest activity first. */
  async list (user: string): Promise<ListItem[]> {
    await this.settled()
    await this.#backfill(user)
    const out: ListItem[] = []
    for await (const [, v] of this.#kv.entries(keys.prefixRange(keys.listPrefix(user)))) if (isListItem(v)) out.push(v)
    return out
  }

  /** Resolves once the work queued so far is written (failed work included). */
  async settled (): Promise<void> {
    await Promise.all(this.#queues.values())
  }

  #enqueue (conv: string, job: () => Promise<void>): Promise<void> {
    const next = (this.#queues.get(conv) ?? Promise.resolve())
      .then(job)
      .catch(err => { this.#deps.onError(err, conv) })
    this.#queues.set(conv, next)
    void next.then(() => { if (this.#queues.get(conv) === next) this.#queues.delete(conv) })
    return next
  }

  /** Applies events of one conversation (see `#drain`) and writes their effect as one batch. */
  async #apply (items: readonly Queued[]): Promise<void> {
    const conv = items[0].event.conversationId
    const cached = this.#cache.get(conv)
    this.#cache.delete(conv)
    let state = cached?.state
    if (state === undefined) {
      const stored = await this.#kv.get(keys.convKey(conv))
      state = isConvState(stored) ? stored : await this.#seed(conv, items[0].snap)
    }
    const ctx: Ctx = {
      conv,
      state,
      snap: items[0].snap,
      ops: [],
      members: cached?.members ?? await this.#loadMembers(conv),
      touched: new Set()
    }
    this.#known.add(conv)
    for (const { event, snap } of items) {
      ctx.snap = snap
      if (snap !== null && snap.subject !== ctx.state.subject) {
        ctx.state.subject = snap.subject
        ctx.touched = 'all'
      }
      await this.#dispatch(ctx, event)
      // The last message is the last one in document order (contract §4.1), which is not always
      // the one whose event came last: Yjs may order a concurrent append before one that arrived
      // earlier, and an edit or delete changes it too. The handlers' own guess stays when the
      // document was not loaded or its live part is empty. Message handlers rewrite every row.
      const last = snap?.last ?? null
      if (last !== null && event.type.startsWith('message.')) ctx.state.lastMessage = last
    }
    const users = ctx.touched === 'all' ? [...ctx.members.keys()] : [...ctx.touched]
    for (const user of users) {
      const member = ctx.members.get(user)
      if (member !== undefined) this.#writeRow(ctx, user, member)
    }
    ctx.ops.push({ type: 'put', key: keys.convKey(conv), value: ctx.state })
    await this.#kv.batch(ctx.ops)
    this.#cache.set(conv, { state: ctx.state, members: ctx.members })
    if (this.#cache.size > CACHED_CONVERSATIONS) this.#cache.delete(this.#cache.keys().next().value as string)
  }

  /** Runs the event's handler; events without one only refresh the subject. */
  async #dispatch (ctx: Ctx, e: ConvEvent): Promise<void> {
    switch (e.type) {
      case 'message.sent': return await this.#onSent(ctx, e.message)
      case 'message.updated': return await this.#onUpdated(ctx, e.message, e.previous)
      case 'message.deleted': return await this.#onDeleted(ctx, e.message)
      case 'reads.updated': return await this.#onRead(ctx, e.userId, e.readUpTo)
      // A participant with access None reads nothing of the conversation: not even its row.
      case 'participant.added': return e.participant.access === 'None' ? undefined : await this.#onAdded(ctx, e.userId)
      case 'participant.updated': return e.participant.access === 'None' ? this.#onRemoved(ctx, e.userId) : await this.#onAdded(ctx, e.userId)
      case 'participant.removed': return this.#onRemoved(ctx, e.userId)
      case 'conversation.deleted': throw new Error('conversation.deleted is handled before dispatch')
    }
  }

  async #onSent (ctx: Ctx, m: Message): Promise<void> {
    const key = keys.timelineKey(ctx.conv, m.createdAt, m.id)
    // Only an event captured with the live messages (before its conversation's state was known)
    // may find its message already there, put by the seed: the others need no read.
    if (ctx.snap?.messages != null && await this.#kv.get(key) !== undefined) return
    ctx.ops.push({ type: 'put', key, value: m })
    ctx.state.lastMessage = m
    ctx.state.lastActivityAt = Math.max(ctx.state.lastActivityAt, m.createdAt)
    for (const [user, member] of ctx.members) if (isUnreadFor(m, user, member.readUpTo)) member.unreadCount++
    ctx.touched = 'all'
  }

  async #onUpdated (ctx: Ctx, m: Message, previous: Message | null): Promise<void> {
    const key = keys.timelineKey(ctx.conv, m.createdAt, m.id)
    const prevKey = previous === null ? null : keys.timelineKey(ctx.conv, previous.createdAt, previous.id)
    const counted = prevKey !== null && previous !== null && await this.#kv.get(prevKey) !== undefined ? previous : null
    if (prevKey !== null && prevKey !== key) ctx.ops.push({ type: 'del', key: prevKey })
    ctx.ops.push({ type: 'put', key, value: m })
    for (const [user, member] of ctx.members) {
      const delta = (isUnreadFor(m, user, member.readUpTo) ? 1 : 0) - (counted !== null && isUnreadFor(counted, user, member.readUpTo) ? 1 : 0)
      member.unreadCount = Math.max(0, member.unreadCount + delta)
    }
    if (ctx.state.lastMessage?.id === m.id) ctx.state.lastMessage = m
    ctx.touched = 'all'
  }

  async #onDeleted (ctx: Ctx, m: Message): Promise<void> {
    const key = keys.timelineKey(ctx.conv, m.createdAt, m.id)
    if (await this.#kv.get(key) !== undefined) {
      ctx.ops.push({ type: 'del', key })
      for (const [user, member] of ctx.members) {
        if (isUnreadFor(m, user, member.readUpTo)) member.unreadCount = Math.max(0, member.unreadCount - 1)
      }
    }
    if (ctx.state.lastMessage?.id === m.id) ctx.state.lastMessage = await this.#newestExcept(ctx.conv, key)
    ctx.touched = 'all'
  }

  async #onRead (ctx: Ctx, user: string, readUpTo: number): Promise<void> {
    const member = ctx.members.get(user)
    if (member === undefined) return
    member.readUpTo = readUpTo
    member.unreadCount = await this.#countUnread(ctx.conv, user, readUpTo)
    this.#touch(ctx, user)
  }

  async #onAdded (ctx: Ctx, user: string): Promise<void> {
    if (ctx.members.has(user)) return
    const readUpTo = ctx.snap?.reads.get(user) ?? 0
    ctx.members.set(user, { readUpTo, unreadCount: await this.#countUnread(ctx.conv, user, readUpTo), listKey: '' })
    this.#touch(ctx, user)
  }

  #onRemoved (ctx: Ctx, user: string): void {
    const member = ctx.members.get(user)
    if (member === undefined) return
    ctx.members.delete(user)
    if (member.listKey !== '') ctx.ops.push({ type: 'del', key: member.listKey })
    ctx.ops.push({ type: 'del', key: keys.memberKey(ctx.conv, user) })
  }

  #touch (ctx: Ctx, user: string): void {
    if (ctx.touched !== 'all') ctx.touched.add(user)
  }

  /** Queues the writes of a member's state and list row (moving the row when activity moved). */
  #writeRow (ctx: Ctx, user: string, member: MemberState): void {
    const key = keys.listKey(user, ctx.state.lastActivityAt, ctx.conv)
    if (member.listKey !== '' && member.listKey !== key) ctx.ops.push({ type: 'del', key: member.listKey })
    member.listKey = key
    const row: ListItem = {
      id: ctx.conv,
      subject: ctx.state.subject,
      lastMessage: ctx.state.lastMessage,
      unreadCount: member.unreadCount,
      lastActivityAt: ctx.state.lastActivityAt
    }
    ctx.ops.push({ type: 'put', key, value: row }, { type: 'put', key: keys.memberKey(ctx.conv, user), value: member })
  }

  /** Writes a conversation's first state from a full snapshot (or an empty one without it). */
  async #seed (conv: string, snap: ConvSnapshot | null): Promise<ConvState> {
    const messages = snap?.messages ?? []
    let lastActivityAt = snap?.createdAt ?? this.#deps.now()
    for (const m of messages) lastActivityAt = Math.max(lastActivityAt, m.createdAt)
    const state: ConvState = {
      subject: snap?.subject ?? null,
      lastMessage: messages.length > 0 ? messages[messages.length - 1] : null,
      lastActivityAt
    }
    const ctx: Ctx = { conv, state, snap, ops: [], members: new Map(), touched: 'all' }
    for (const m of messages) ctx.ops.push({ type: 'put', key: keys.timelineKey(conv, m.createdAt, m.id), value: m })
    for (const user of snap?.participants.keys() ?? []) {
      const readUpTo = snap?.reads.get(user) ?? 0
      let unreadCount = 0
      for (const m of messages) if (isUnreadFor(m, user, readUpTo)) unreadCount++
      const member: MemberState = { readUpTo, unreadCount, listKey: '' }
      this.#writeRow(ctx, user, member)
    }
    ctx.ops.push({ type: 'put', key: keys.convKey(conv), value: state })
    await this.#kv.batch(ctx.ops)
    return state
  }

  async #loadMembers (conv: string): Promise<Map<string, MemberState>> {
    const prefix = keys.memberPrefix(conv)
    const out = new Map<string, MemberState>()
    for await (const [k, v] of this.#kv.entries(keys.prefixRange(prefix))) if (isMemberState(v)) out.set(k.slice(prefix.length), v)
    return out
  }

  /** Messages from others created after `readUpTo`; reads only those. */
  async #countUnread (conv: string, user: string, readUpTo: number): Promise<number> {
    let n = 0
    const range = { gte: keys.timelineAfter(conv, readUpTo), lt: keys.prefixRange(keys.timelinePrefix(conv)).lt }
    for await (const [, v] of this.#kv.entries(range)) if (isPlainObject(v) && v.senderId !== user) n++
    return n
  }

  /** The newest message in the timeline other than the one at `exceptKey`, or null. */
  async #newestExcept (conv: string, exceptKey: string): Promise<Message | null> {
    for await (const [k, v] of this.#kv.entries({ ...keys.prefixRange(keys.timelinePrefix(conv)), reverse: true, limit: 2 })) {
      if (k !== exceptKey && isMessage(v, Number.MAX_SAFE_INTEGER)) return v
    }
    return null
  }

  async #deleteConversation (conv: string): Promise<void> {
    this.#cache.delete(conv)
    const ops: Op[] = [{ type: 'del', key: keys.convKey(conv) }]
    for (const [user, member] of await this.#loadMembers(conv)) {
      if (member.listKey !== '') ops.push({ type: 'del', key: member.listKey })
      ops.push({ type: 'del', key: keys.memberKey(conv, user) })
    }
    await this.#kv.batch(ops)
    // The timeline may be long: delete it in chunks. Each round deletes at least one key.
    const range = keys.prefixRange(keys.timelinePrefix(conv))
    for (;;) {
      const chunk: Op[] = []
      for await (const [k] of this.#kv.entries({ ...range, limit: 1000 })) chunk.push({ type: 'del', key: k })
      if (chunk.length === 0) break
      await this.#kv.batch(chunk)
    }
  }

  /** Once per user: adds memberships the store knows and the index does not (from before it). */
  async #backfill (user: string): Promise<void> {
    if (await this.#kv.get(keys.backfillKey(user)) === true) return
    for (const { conv } of await this.#deps.listMemberships(user)) {
      if (await this.#kv.get(keys.memberKey(conv, user)) !== undefined) continue
      if (!(await this.#deps.conversationExists(conv))) continue
      const snap = await this.#deps.withDoc(conv, doc => captureSnapshot(doc, true))
      if (!snap.participants.has(user)) continue
      await this.#enqueue(conv, async () => {
        await this.#apply([{ event: { type: 'participant.added', conversationId: conv, userId: user, participant: { access: 'ReadWrite', notify: true, joinedAt: snap.participants.get(user) ?? 0 } }, snap }])
      })
    }
    await this.#kv.put(keys.backfillKey(user), true)
  }
}
