/**
 * Notifications when the store is shared by several nodes (PostgreSQL, a cluster): the same
 * rules as `Notifier` (see notifier.ts), but each conversation's pending batch lives in one row
 * of the store section `notify` (key `v1!p!<conv>`, the JSON of `StoredPending` plus `nextAt`,
 * when it is due),
 * never in a node's memory, and every change to it holds that row's lock (`LockedSection`).
 *
 * Fed by the events of the node that committed each change (a node never reports the events of
 * what others committed), so every message, edit, read and removal reaches the batch once,
 * whichever node committed it: messages of one conversation sent on two nodes go into one
 * batch. A node's changes to one conversation's batch are applied in order, several events per
 * transaction when they come in bursts.
 *
 * Firing. Each node that changed a batch keeps a timer for its `dueAt` (the end of the quiet
 * period, or of the longest hold) and listens to the typing of the room it has loaded (presence
 * that covers the participants of every node, where the presence does): a typing change restarts
 * the quiet period in the row. When the timer ends, the node checks the batch under its lock and,
 * when it is due, deletes it and writes its notifications into the outbox in the same
 * transaction: a batch fires once, and its notifications are delivered through the outbox
 * (claimed, retried under the same id). A batch whose nodes died is found by the others' sweep
 * (every `sweepMs`, batches due for more than `graceMs`) and fired by one of them. Batches
 * written without `nextAt` (by one node on LevelDB, then moved with `npm run migrate`) are
 * given one when the first node starts. Checking a
 * batch while a participant types pushes its `dueAt` by one quiet period.
 */
import { isChatError } from '../../shared/errors.ts'
import type { Message } from '../../shared/schema.ts'
import { isPlainObject } from '../../shared/schema.ts'
import type { ServerEvent, StagedWrite } from '../events.ts'
import type { Timers } from '../presence/presence-hub.ts'
import type { LockedSection, LockedWrite } from '../storage/port.ts'
import { addSent, applyEdit, MAX_HOLD_FACTOR, notificationsOf, participantTyping, type BatchState, type Notification, type NotifierRoom, type StoredPending } from './notifier.ts'

const PREFIX = 'v1!p!'
const isUnavailable = (err: unknown): boolean => isChatError(err) && err.code === 'STORAGE_UNAVAILABLE'
/** How long events wait before they are applied again while the store refuses writes (ms). */
const RETRY_MS = 1000
/** Locked changes in flight at once on one node (see `#change`). */
const MAX_CHANGES = 2
/** The events that change a batch (the others are not worth a transaction). */
const CHANGES_BATCHES = new Set<ServerEvent['type']>(['message.sent', 'message.updated', 'message.deleted', 'reads.updated', 'participant.removed', 'conversation.deleted'])
const keyOf = (conv: string): string => `${PREFIX}${conv}`

/** A batch as stored in the shared row. */
interface SharedBatch extends BatchState {
  busyAt: number
  startedAt: number
}

export interface SharedNotifierDeps {
  /** The section `notify`, with locked changes. */
  rows: LockedSection
  timers: Timers
  now: () => number
  /** The conversation's room when it is loaded on this node. */
  peek: (conv: string) => NotifierRoom | undefined
  /** The `notificationDelay` setting, in seconds. */
  delaySeconds: () => number
  /** The outbox writes that deliver these notifications (committed with the batch's deletion). */
  stage: (notifications: Notification[]) => Promise<StagedWrite[]>
  onError: (err: unknown, conv: string) => void
  /** Conversations whose stored batch has no `nextAt` (written by one node on LevelDB and migrated). */
  unscheduled: () => Promise<string[]>
  /** How often this node looks for due batches no timer of a live node fired (ms). */
  sweepMs: number
  /** How long past its `dueAt` a batch is left to the nodes that changed it before a sweep fires it (ms). */
  graceMs: number
}

interface Local {
  /** This node's changes to the batch, in order. */
  chain: Promise<void>
  events: ServerEvent[]
  timer: unknown
  watched: NotifierRoom['presence'] | null
  unwatch: (() => void) | null
  typing: boolean
  /** When this node last saw a participant start or stop typing (set at once, before the row is). */
  typedAt: number
}

const fromStored = (v: unknown): SharedBatch | undefined => {
  if (!isPlainObject(v) || !Array.isArray(v.recipients) || typeof v.busyAt !== 'number') return undefined
  const s = v as unknown as StoredPending
  return { subject: s.subject, recipients: new Map(s.recipients as Array<[string, Message[]]>), busyAt: s.busyAt, startedAt: s.startedAt ?? s.busyAt }
}

export class SharedNotifier {
  readonly #deps: SharedNotifierDeps
  readonly #local = new Map<string, Local>()
  #sweeper: unknown = null
  #sweeping = false
  #running = true
  /** Locked changes in flight, and those waiting for a place. */
  #changing = 0
  readonly #waiting: Array<() => void> = []

  constructor (deps: SharedNotifierDeps) {
    this.#deps = deps
  }

  /** Event subscriber: never throws, never waits. */
  handle (e: ServerEvent): void {
    if (!this.#running || !CHANGES_BATCHES.has(e.type) || !('conversationId' in e)) return
    if (e.type === 'message.sent' && e.message.type === 'SystemMessage') return
    const local = this.#localOf(e.conversationId)
    local.events.push(e)
    if (local.events.length === 1) this.#then(e.conversationId, async () => { await this.#apply(e.conversationId) })
  }

  /** Conversations whose batch this node watches (a timer set for it). */
  get pendingConversations (): number {
    let n = 0
    for (const l of this.#local.values()) if (l.timer !== null) n++
    return n
  }

  /** Starts the sweep; fires at once what is due (batches of a node that died, or of a previous run). */
  async restore (): Promise<void> {
    for (const conv of await this.#deps.unscheduled()) this.#then(conv, async () => { await this.#check(conv) })
    this.#sweeper = this.#deps.timers.setInterval(() => { void this.#sweep() }, this.#deps.sweepMs)
    await this.#sweep(true)
  }

  /** Stops timers and listening, after the changes under way; batches stay in the store. */
  async stop (): Promise<void> {
    this.#running = false
    if (this.#sweeper !== null) this.#deps.timers.clearInterval(this.#sweeper)
    this.#sweeper = null
    await Promise.all([...this.#local.values()].map(async l => await l.chain))
    for (const l of this.#local.values()) this.#release(l)
    this.#local.clear()
  }

  #localOf (conv: string): Local {
    let l = this.#local.get(conv)
    if (l === undefined) {
      l = { chain: Promise.resolve(), events: [], timer: null, watched: null, unwatch: null, typing: false, typedAt: 0 }
      this.#local.set(conv, l)
    }
    return l
  }

  /** Runs `task` after this node's earlier changes to the conversation's batch. */
  #then (conv: string, task: () => Promise<void>): void {
    const l = this.#localOf(conv)
    l.chain = l.chain.then(task).catch(err => {
      // Storage refusing writes is the storage guard's to report.
      if (!isUnavailable(err)) this.#deps.onError(err, conv)
    })
  }

  /**
   * A locked change, at most MAX_CHANGES at a time on this node: each holds a connection of the
   * store's pool for its transaction, and firing reads users through another one; unbounded,
   * many batches due at once could take every connection and wait for one forever.
   */
  async #change<R> (conv: string, fn: (current: unknown) => Promise<LockedWrite<R>>): Promise<R> {
    // A place is handed from the change that ends to the next waiting one.
    if (this.#changing >= MAX_CHANGES) await new Promise<void>(resolve => this.#waiting.push(resolve))
    else this.#changing++
    try {
      return await this.#deps.rows.change(keyOf(conv), fn)
    } finally {
      const next = this.#waiting.shift()
      if (next !== undefined) next()
      else this.#changing--
    }
  }

  #delayMs (): number {
    return Math.max(0, Math.min(900, this.#deps.delaySeconds())) * 1000
  }

  #dueAt (p: SharedBatch): number {
    return Math.min(p.busyAt + this.#delayMs(), p.startedAt + MAX_HOLD_FACTOR * this.#delayMs())
  }

  #write (p: SharedBatch): LockedWrite<number | null> {
    if (p.recipients.size === 0) return { del: true, result: null }
    const dueAt = this.#dueAt(p)
    // `nextAt`: when it is due (the store keeps it where a query finds it, as for outbox records).
    const stored: StoredPending & { nextAt: number } = { subject: p.subject, recipients: [...p.recipients], busyAt: p.busyAt, startedAt: p.startedAt, nextAt: dueAt }
    return { put: stored, result: dueAt }
  }

  /** Applies the events this node queued for the conversation, in one locked change. */
  async #apply (conv: string): Promise<void> {
    const l = this.#localOf(conv)
    const events = l.events
    l.events = []
    let dueAt: number | null
    try {
      dueAt = await this.#applied(conv, events)
    } catch (err) {
      if (!isUnavailable(err) || !this.#running) throw err
      // The store is failing (and refuses every write until it is back): keep the events, in
      // order, and try again; nothing newer can be committed meanwhile.
      l.events.unshift(...events)
      this.#deps.timers.setTimeout(() => { this.#then(conv, async () => { if (l.events.length > 0) await this.#apply(conv) }) }, RETRY_MS)
      return
    }
    this.#schedule(conv, dueAt)
  }

  async #applied (conv: string, events: readonly ServerEvent[]): Promise<number | null> {
    return await this.#change(conv, async current => {
      let p = fromStored(current)
      const existed = p !== undefined
      const now = this.#deps.now()
      for (const e of events) {
        if (e.type === 'message.sent') {
          const room = this.#deps.peek(conv)
          if (room === undefined) continue
          p ??= { subject: null, recipients: new Map(), busyAt: now, startedAt: now }
          addSent(p, room, e.message)
          p.busyAt = now
        } else if (e.type === 'conversation.deleted') {
          p = undefined
        } else if (p !== undefined && 'conversationId' in e) {
          applyEdit(p, e)
        }
      }
      if (p === undefined) return existed ? { del: true, result: null } : { result: null }
      if (!existed && p.recipients.size === 0) return { result: null }
      return this.#write(p)
    })
  }

  /** Sets (or clears) this node's timer for the batch, and listens to the room's typing meanwhile. */
  #schedule (conv: string, dueAt: number | null): void {
    const l = this.#localOf(conv)
    if (l.timer !== null) this.#deps.timers.clearTimeout(l.timer)
    l.timer = null
    if (dueAt === null || !this.#running) {
      this.#release(l)
      if (l.events.length === 0) this.#local.delete(conv)
      return
    }
    l.timer = this.#deps.timers.setTimeout(() => {
      l.timer = null
      this.#then(conv, async () => { await this.#check(conv) })
    }, Math.max(0, dueAt - this.#deps.now()))
    this.#watch(conv, l)
  }

  #watch (conv: string, l: Local): void {
    const room = this.#deps.peek(conv)
    if (room === undefined || l.watched === room.presence) return
    l.unwatch?.()
    l.watched = room.presence
    l.typing = participantTyping(room)
    l.unwatch = room.presence.onTypingChange(() => {
      if (this.#local.get(conv) !== l) return
      const typing = participantTyping(room)
      // Only participants' typing counts: a guest could otherwise hold the batch.
      if (typing === l.typing && !typing) return
      l.typing = typing
      // Starting or stopping is a sign of typing: the quiet period starts over from now. Noted
      // at once too: a check already under way must not fire on the row's older time.
      l.typedAt = this.#deps.now()
      this.#then(conv, async () => {
        const dueAt = await this.#change(conv, async current => {
          const p = fromStored(current)
          if (p === undefined) return { result: null }
          p.busyAt = this.#deps.now()
          return this.#write(p)
        })
        this.#schedule(conv, dueAt)
      })
    })
  }

  #release (l: Local): void {
    if (l.timer !== null) this.#deps.timers.clearTimeout(l.timer)
    l.timer = null
    l.unwatch?.()
    l.unwatch = null
    l.watched = null
  }

  /**
   * Under the batch's lock: fires it when it is due and nobody is typing (or it was held as long
   * as it may be), otherwise stores when to look again.
   */
  async #check (conv: string): Promise<void> {
    let fired: StagedWrite[] = []
    const dueAt = await this.#change(conv, async current => {
      const p = fromStored(current)
      if (p === undefined) return { result: null }
      const room = this.#deps.peek(conv)
      const now = this.#deps.now()
      p.busyAt = Math.max(p.busyAt, this.#local.get(conv)?.typedAt ?? 0)
      const delay = this.#delayMs()
      const held = now - p.startedAt >= MAX_HOLD_FACTOR * delay
      const quiet = room === undefined || !participantTyping(room)
      if (held || (quiet && p.busyAt + delay <= now)) {
        fired = await this.#deps.stage(notificationsOf(conv, p, room))
        return { del: true, sections: fired.map(w => ({ section: w.section, key: w.key, value: w.value, del: w.del })), result: null }
      }
      // Typing: the quiet period counts from now (the end of the typing restarts it again).
      if (!quiet) p.busyAt = now
      return this.#write(p)
    })
    for (const w of fired) w.committed()
    this.#schedule(conv, dueAt)
  }

  /** Fires the batches due for longer than the grace period (all due ones at start). */
  async #sweep (atStart = false): Promise<void> {
    if (this.#sweeping || !this.#running) return
    this.#sweeping = true
    try {
      const now = this.#deps.now()
      const keys = await this.#deps.rows.dueKeys(PREFIX, now - (atStart ? 0 : this.#deps.graceMs), 100)
      for (const key of keys) {
        const conv = key.slice(PREFIX.length)
        this.#then(conv, async () => { await this.#check(conv) })
      }
    } catch (err) {
      // Storage refusing reads or writes is the storage guard's to report.
      if (!isUnavailable(err)) this.#deps.onError(err, '')
    } finally {
      this.#sweeping = false
    }
  }
}
