/**
 * Message search (contract §6): an inverted index in the store section `search` (layout in
 * `keys.ts`), fed from durable server events, so a query reads a few posting ranges and never
 * opens a document.
 *
 * Writes. A message event costs the write path one key: its entry in a write-ahead log
 * (`v1!w!<seq>`: the event's conversation, kind and message), staged (an
 * EventBus stager) into the same LevelDB batch as the change, so nothing acknowledged is ever
 * missing from the index, not even after a power cut. Off the sync path, one queue expands the log
 * into postings: a batch of everything logged so far, at most `expandDelayMs` after an event (so
 * a busy conversation costs a few index writes per second, not one fsync per message), at once
 * when a query asks, and at start for what a crash left. Each expansion writes its postings and
 * deletes its log entries in one batch, not fsynced on its own (a machine crash loses the batch
 * whole, and the durable log is expanded again at the next start); every step is an upsert (or
 * delete) that reads the indexed copy first, so replaying an entry twice is harmless. The same queue runs, in order,
 * `conversation.deleted` (range deletes) and the one-time backfill of conversations whose
 * history predates the index (from the live document and the archive). Archiving emits no
 * events: an archived message stays indexed as it was.
 *
 * Reads. A query first expands the log up to now and waits for the queue (`settled`), so it sees
 * every acknowledged edit and delete, then backfills the conversations it reads that never were.
 *
 * Matching. Each query word has a posting list, newest first; the lists are intersected by
 * walking them together (every step advances the lists whose head is newer than the oldest
 * head), so the cost is the postings read up to the `limit`-th hit, not the whole history.
 */
import type * as Y from 'yjs'
import { isMessage, isPlainObject, type Message } from '../../shared/schema.ts'
import { wordsOf } from '../../shared/search-text.ts'
import type { ServerEvent, StagedWrite } from '../events.ts'
import type { ArchivedMessage, KvSection } from '../storage/port.ts'
import * as keys from './keys.ts'
import type { Timers } from '../presence/presence-hub.ts'
import { messagesOf } from '../../shared/doc.ts'

export interface SearchDeps {
  section: KvSection
  /** Runs `fn` on a conversation's live document (loading it); for the one-time backfill. */
  withDoc: <T>(conv: string, fn: (doc: Y.Doc) => T) => Promise<T>
  /** Pages of archived messages, as `DocStore.readArchive`. */
  readArchive: (conv: string, beforePos: number | null, limit: number) => Promise<{ messages: ArchivedMessage[], hasMore: boolean }>
  onError: (err: unknown) => void
  timers: Timers
  /** The longest a logged event waits before it is expanded into postings (a query does not wait for it). */
  expandDelayMs: number
}

/** One search hit. */
export interface Hit { conversationId: string, message: Message }

/** A position in the newest-first order of hits: hits strictly older than it. */
export interface Cursor { createdAt: number, messageId: string }

type Op = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }
type Job = { kind: 'expand', upTo: number } | { kind: 'backfill', conv: string, done: () => void } | { kind: 'clear', conv: string }

/** A message event as logged (`v1!w!<seq>`). */
interface Logged { conversationId: string, kind: 'upsert' | 'remove', message: Message }

const isLogged = (v: unknown): v is Logged =>
  isPlainObject(v) && typeof v.conversationId === 'string' && (v.kind === 'upsert' || v.kind === 'remove') && isIndexed(v.message)

/** The store section the index lives in. */
export const SECTION = 'search'

const ARCHIVE_PAGE = 500
/** Log entries expanded per batch. */
const EXPAND_CHUNK = 25
const CLEAR_CHUNK = 1000

const isIndexed = (v: unknown): v is Message => isMessage(v, Number.MAX_SAFE_INTEGER)

const nextOf = async (gen: AsyncGenerator<string, void, undefined>): Promise<string | null> => {
  const r = await gen.next()
  return r.done === true ? null : r.value
}

export class SearchIndex {
  readonly #deps: SearchDeps
  readonly #kv: SearchDeps['section']
  #pending: Job[] = []
  #draining: Promise<void> | null = null
  #stopped = false
  /** Conversations known to be backfilled (or being backfilled: the promise). */
  readonly #backfilled = new Map<string, Promise<void> | true>()
  /** The last log sequence number given out. */
  #seq = 0
  /** The last log sequence number expanded (or queued to be). */
  #expandQueued = 0
  #expandTimer: unknown = null

  constructor (deps: SearchDeps) {
    this.#deps = deps
    this.#kv = deps.section
  }

  /** Reads where the log ends and queues the expansion of what a previous run left in it. */
  async open (): Promise<void> {
    for await (const [k] of this.#kv.entries({ ...keys.prefixRange(keys.LOG_PREFIX), reverse: true, limit: 1 })) this.#seq = keys.parseLogSeq(k)
    if (this.#seq > 0) this.#queueExpand()
  }

  /** Stager: one log entry per message event, written in the same batch as the change. */
  stage (events: readonly ServerEvent[]): StagedWrite[] {
    const out: StagedWrite[] = []
    for (const e of events) {
      if (e.type !== 'message.sent' && e.type !== 'message.updated' && e.type !== 'message.deleted') continue
      const value: Logged = { conversationId: e.conversationId, kind: e.type === 'message.deleted' ? 'remove' : 'upsert', message: e.message }
      out.push({ section: SECTION, key: keys.logKey(++this.#seq), value, committed: () => {} })
    }
    return out
  }

  /** Event subscriber (after the change is durable): schedules the log's expansion. Never throws, never waits. */
  handle (event: ServerEvent): void {
    if (event.type === 'conversation.deleted') {
      this.#backfilled.delete(event.conversationId)
      this.#queueExpand()
      this.#push({ kind: 'clear', conv: event.conversationId })
      return
    }
    if (event.type !== 'message.sent' && event.type !== 'message.updated' && event.type !== 'message.deleted') return
    this.#expandTimer ??= this.#deps.timers.setTimeout(() => {
      this.#expandTimer = null
      this.#queueExpand()
    }, this.#deps.expandDelayMs)
  }

  /** Expands the log (what is logged now) and resolves once the queue is done; for queries and shutdown. */
  async flushed (): Promise<void> {
    this.#queueExpand()
    await this.settled()
  }

  /**
   * Cancels the expansion timer and cuts an expansion under way short after its current batch:
   * what is logged stays in the durable log, expanded at the next start. So a shutdown right
   * after a burst waits for one batch, not for the index of the whole burst.
   */
  stop (): void {
    if (this.#expandTimer !== null) this.#deps.timers.clearTimeout(this.#expandTimer)
    this.#expandTimer = null
    this.#stopped = true
  }

  #queueExpand (): void {
    if (this.#seq <= this.#expandQueued) return
    this.#expandQueued = this.#seq
    this.#push({ kind: 'expand', upTo: this.#seq })
  }

  /** Resolves once every event queued so far is written (failed writes included). */
  async settled (): Promise<void> {
    while (this.#draining !== null) await this.#draining
  }

  /**
   * Writes a conversation's messages into the index directly (upserts) and marks it backfilled;
   * for the backfill and for building an index in bulk (the benchmark). Not concurrent with events
   * of the same conversation.
   */
  async indexMessages (conv: string, messages: readonly Message[], markBackfilled: boolean): Promise<void> {
    const overlay = new Map<string, Message | null>()
    const ops: Op[] = []
    for (const m of messages) await this.#upsert(conv, m, ops, overlay)
    if (markBackfilled) ops.push({ type: 'put', key: keys.backfillKey(conv), value: true })
    await this.#kv.batch(ops)
  }

  /**
   * Hits in conversation `conv` holding every word of `words`, newest first, strictly older than
   * `before`, at most `limit` (plus whether there are more).
   */
  async search (convs: readonly string[], words: readonly string[], limit: number, before: Cursor | null): Promise<{ hits: Hit[], hasMore: boolean }> {
    await this.flushed()
    await Promise.all(convs.map(async c => { await this.#ensureBackfilled(c) }))
    // A lazy merge of the conversations' hit streams, newest first: each stream reads only as
    // far as the hits taken from it (plus its head).
    const streams = convs.map(conv => ({ conv, gen: this.#matches(conv, words, before), head: null as string | null }))
    const picked: Array<{ conv: string, tail: string }> = []
    try {
      await Promise.all(streams.map(async st => { st.head = await nextOf(st.gen) }))
      while (picked.length <= limit) {
        let best: typeof streams[number] | null = null
        for (const st of streams) {
          if (st.head === null) continue
          if (best === null || st.head > (best.head as string) || (st.head === best.head && st.conv > best.conv)) best = st
        }
        if (best === null) break
        picked.push({ conv: best.conv, tail: best.head as string })
        best.head = await nextOf(best.gen)
      }
    } finally {
      await Promise.all(streams.map(async st => { await st.gen.return(undefined) }))
    }
    const page = picked.slice(0, limit)
    const found = await Promise.all(page.map(async ({ conv, tail }) => await this.#kv.get(keys.docKey(conv, tail.slice(17)))))
    const hits: Hit[] = []
    page.forEach(({ conv }, i) => { const m = found[i]; if (isIndexed(m)) hits.push({ conversationId: conv, message: m }) })
    return { hits, hasMore: picked.length > limit }
  }

  /** Where message `messageId` of `conv` sits in the order of hits, if it is indexed. */
  async cursorOf (conv: string, messageId: string): Promise<Cursor | undefined> {
    await this.flushed()
    await this.#ensureBackfilled(conv)
    const m = await this.#kv.get(keys.docKey(conv, messageId))
    return isIndexed(m) ? { createdAt: m.createdAt, messageId: m.id } : undefined
  }

  /** Posting tails of messages of `conv` holding every word, newest first, older than `before`. */
  async * #matches (conv: string, words: readonly string[], before: Cursor | null): AsyncGenerator<string, void, undefined> {
    const upper = before === null ? null : keys.postingTail(before.createdAt, before.messageId)
    // Longer words first: usually the rarer, so the walk is led by the shortest list.
    const sorted = [...words].sort((a, b) => b.length - a.length)
    const its = sorted.map(word => {
      const prefix = keys.wordPrefix(conv, word)
      const range = { gte: prefix, lt: upper === null ? prefix + '\xff' : prefix + upper, reverse: true }
      return { prefix, it: this.#kv.entries(range)[Symbol.asyncIterator]() }
    })
    const heads: Array<string | null> = []
    const next = async (i: number): Promise<string | null> => {
      const r = await its[i].it.next()
      heads[i] = r.done === true ? null : (r.value[0]).slice(its[i].prefix.length)
      return heads[i]
    }
    try {
      for (let i = 0; i < its.length; i++) if (await next(i) === null) return
      for (;;) {
        // Every list's head is its newest remaining hit: a common hit is at most the oldest head.
        let target = heads[0] as string
        for (const h of heads) if ((h as string) < target) target = h as string
        let aligned = true
        for (let i = 0; i < its.length; i++) {
          while ((heads[i] as string) > target) if (await next(i) === null) return
          if (heads[i] !== target) aligned = false
        }
        if (!aligned) continue
        yield target
        for (let i = 0; i < its.length; i++) if (await next(i) === null) return
      }
    } finally {
      await Promise.all(its.map(async ({ it }) => { await it.return?.() }))
    }
  }

  async #ensureBackfilled (conv: string): Promise<void> {
    const known = this.#backfilled.get(conv)
    if (known === true) return
    if (known !== undefined) return await known
    const p = (async () => {
      if (await this.#kv.get(keys.backfillKey(conv)) === true) return
      await new Promise<void>(resolve => { this.#push({ kind: 'backfill', conv, done: resolve }) })
    })()
    this.#backfilled.set(conv, p)
    try {
      await p
      if (this.#backfilled.get(conv) === p) this.#backfilled.set(conv, true)
    } catch (e) {
      if (this.#backfilled.get(conv) === p) this.#backfilled.delete(conv)
      throw e
    }
  }

  #push (job: Job): void {
    this.#pending.push(job)
    this.#draining ??= this.#drainLoop().finally(() => { this.#draining = null })
  }

  async #drainLoop (): Promise<void> {
    await Promise.resolve() // let a burst of jobs queue up
    while (this.#pending.length > 0) {
      const job = this.#pending.shift() as Job
      const work = job.kind === 'expand' ? this.#expand(job.upTo) : job.kind === 'backfill' ? this.#backfill(job.conv) : this.#clear(job.conv)
      await work.catch(err => { this.#deps.onError(err) })
      if (job.kind === 'backfill') job.done()
    }
  }

  /** Applies the log up to `upTo` and deletes those entries, in batches of about EXPAND_CHUNK entries. */
  async #expand (upTo: number): Promise<void> {
    for (let guard = 0; guard < 1e9 && !this.#stopped; guard++) {
      const ops: Op[] = []
      const overlay = new Map<string, Message | null>()
      let n = 0
      for await (const [k, v] of this.#kv.entries({ gte: keys.LOG_PREFIX, lte: keys.logKey(upTo), limit: EXPAND_CHUNK })) {
        n++
        ops.push({ type: 'del', key: k })
        if (!isLogged(v)) continue
        if (v.kind === 'upsert') await this.#upsert(v.conversationId, v.message, ops, overlay)
        else await this.#remove(v.conversationId, v.message.id, ops, overlay)
      }
      if (n === 0) return
      // Not flushed on its own: a machine crash loses it with its log entries' deletion, and the
      // log (durable) is expanded again at the next start.
      await this.#kv.batch(ops, [], { durable: false })
    }
  }

  /** The indexed copy of a message, from the batch being built first. */
  async #indexed (conv: string, id: string, overlay: Map<string, Message | null>): Promise<Message | null> {
    const key = keys.docKey(conv, id)
    if (overlay.has(key)) return overlay.get(key) ?? null
    const v = await this.#kv.get(key)
    return isIndexed(v) ? v : null
  }

  async #upsert (conv: string, m: Message, ops: Op[], overlay: Map<string, Message | null>): Promise<void> {
    const old = await this.#indexed(conv, m.id, overlay)
    const words = wordsOf(m.text)
    if (old !== null) {
      const keep = old.createdAt === m.createdAt ? new Set(words) : new Set<string>()
      for (const w of wordsOf(old.text)) if (!keep.has(w)) ops.push({ type: 'del', key: keys.postingKey(conv, w, old.createdAt, old.id) })
    }
    for (const w of words) ops.push({ type: 'put', key: keys.postingKey(conv, w, m.createdAt, m.id), value: 1 })
    ops.push({ type: 'put', key: keys.docKey(conv, m.id), value: m })
    overlay.set(keys.docKey(conv, m.id), m)
  }

  async #remove (conv: string, id: string, ops: Op[], overlay: Map<string, Message | null>): Promise<void> {
    const old = await this.#indexed(conv, id, overlay)
    if (old === null) return
    for (const w of wordsOf(old.text)) ops.push({ type: 'del', key: keys.postingKey(conv, w, old.createdAt, old.id) })
    ops.push({ type: 'del', key: keys.docKey(conv, id) })
    overlay.set(keys.docKey(conv, id), null)
  }

  /** Indexes the whole history of a conversation (live and archived), then marks it. */
  async #backfill (conv: string): Promise<void> {
    if (await this.#kv.get(keys.backfillKey(conv)) === true) return
    const live = await this.#deps.withDoc(conv, doc => messagesOf(doc).toArray())
    const archived: Message[] = []
    let before: number | null = null
    for (let guard = 0; guard < 1e7; guard++) {
      const page = await this.#deps.readArchive(conv, before, ARCHIVE_PAGE)
      archived.push(...page.messages.map(a => a.message))
      if (!page.hasMore || page.messages.length === 0) break
      before = page.messages[0].pos
      if (archived.length >= ARCHIVE_PAGE * 4) {
        await this.indexMessages(conv, archived.splice(0), false)
      }
    }
    await this.indexMessages(conv, [...archived, ...live], true)
  }

  async #clear (conv: string): Promise<void> {
    for (const prefix of [keys.convPostingsPrefix(conv), keys.docPrefix(conv)]) {
      for (let guard = 0; guard < 1e9; guard++) {
        const chunk: Op[] = []
        for await (const [k] of this.#kv.entries({ ...keys.prefixRange(prefix), limit: CLEAR_CHUNK })) chunk.push({ type: 'del', key: k })
        if (chunk.length === 0) break
        await this.#kv.batch(chunk)
      }
    }
    await this.#kv.del(keys.backfillKey(conv))
  }
}
