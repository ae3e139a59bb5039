/**
 * A durable outbox: deliveries (webhook posts, emails) written to the store section `outbox`
 * before they are attempted, retried with exponential backoff, and removed only once delivered,
 * so every one is delivered at least once, across restarts, under a stable id.
 *
 * Layout (JSON values):
 *   v1!o!<id>     OutboxRecord waiting for delivery (attempts so far, next attempt time)
 *   v1!dead!<id>  OutboxRecord that failed `maxAttempts` times, with its last error; kept for
 *                 inspection, never retried
 * Ids sort by creation: `evt_<ms:9 base36><seq:4 base36><random:8 hex>`.
 *
 * Nothing here is awaited by the sync path: `enqueue` is synchronous and returns the id at once;
 * writes are group-committed; at most `concurrency` attempts run at a time, each cut off after
 * `attemptTimeoutMs`. Memory holds the schedule of each waiting record (its payload only until
 * the record is on disk). A slow receiver delays only the outbox.
 *
 * Order: records are attempted oldest first, but a retried record may arrive after newer ones.
 */
import { randomBytes } from 'node:crypto'
import type { Timers } from '../presence/presence-hub.ts'
import type { KvSection } from '../storage/port.ts'
import { isPlainObject } from '../../shared/schema.ts'

export interface OutboxTuning {
  /** Delay before the first retry in ms; doubles with each failure. */
  retryBaseMs: number
  /** Longest delay between two attempts, in ms. */
  retryMaxMs: number
  /** Attempts before a record moves to the dead letters. */
  maxAttempts: number
  /** Attempts in flight at once. */
  concurrency: number
  /** An attempt still running after this many ms is aborted and counts as failed. */
  attemptTimeoutMs: number
}

export const DEFAULT_OUTBOX_TUNING: Readonly<OutboxTuning> = Object.freeze({
  retryBaseMs: 1000,
  retryMaxMs: 60 * 60_000,
  maxAttempts: 15,
  concurrency: 4,
  attemptTimeoutMs: 10_000
})

export interface OutboxRecord<T> {
  id: string
  payload: T
  /** Failed attempts so far. */
  attempts: number
  /** Milliseconds since the epoch. */
  createdAt: number
  /** Earliest time of the next attempt, in ms since the epoch. */
  nextAt: number
  lastError?: string
}

export interface OutboxDeps<T> {
  section: KvSection
  timers: Timers
  now: () => number
  tuning: OutboxTuning
  /** Checks a payload read back from disk. */
  isPayload: (v: unknown) => v is T
  /** Delivers a payload; resolves when delivered, rejects to retry. Must honour `signal`. */
  send: (payload: T, id: string, signal: AbortSignal) => Promise<void>
  /** Reports storage failures and records that moved to the dead letters. */
  onError: (err: unknown, what: string) => void
}

interface Sched<T> {
  nextAt: number
  /** The record, held in memory until it is on disk. */
  record: OutboxRecord<T> | null
  /** Its first write ended (so a delivery never races the write that would re-create it). */
  ready: boolean
}

const recordKey = (id: string): string => `v1!o!${id}`
const deadKey = (id: string): string => `v1!dead!${id}`
const RECORD_PREFIX = 'v1!o!'

export class Outbox<T> {
  readonly #deps: OutboxDeps<T>
  readonly #kv: KvSection
  readonly #due = new Map<string, Sched<T>>()
  readonly #inFlight = new Map<string, { abort: AbortController, done: Promise<void> }>()
  #unwritten: Array<OutboxRecord<T>> = []
  #writing: Promise<void> | null = null
  #timer: unknown = null
  #running = false
  #seq = 0

  constructor (deps: OutboxDeps<T>) {
    this.#deps = deps
    this.#kv = deps.section
  }

  /** Queues a payload for delivery and returns its id. Never throws, never waits. */
  enqueue (payload: T, id = this.newId()): string {
    const now = this.#deps.now()
    const record: OutboxRecord<T> = { id, payload, attempts: 0, createdAt: now, nextAt: now }
    this.#unwritten.push(record)
    this.#due.set(id, { nextAt: now, record, ready: false })
    this.#writing ??= this.#writeLoop().finally(() => { this.#writing = null })
    return id
  }

  /**
   * A record for the caller to write itself, in the same batch as the change it reports (see
   * `StagedWrite`): `committed()` is called once that batch is durable, and only then is the
   * record scheduled. A record whose batch failed is never attempted.
   */
  prepare (payload: T, id = this.newId()): { key: string, value: OutboxRecord<T>, committed: () => void } {
    const now = this.#deps.now()
    const record: OutboxRecord<T> = { id, payload, attempts: 0, createdAt: now, nextAt: now }
    return {
      key: recordKey(id),
      value: record,
      committed: () => {
        this.#due.set(id, { nextAt: now, record: null, ready: true })
        this.#pump()
      }
    }
  }

  /** A fresh id that sorts after the ones made before it by this process. */
  newId (): string {
    this.#seq = (this.#seq + 1) % 36 ** 4
    return `evt_${this.#deps.now().toString(36).padStart(9, '0')}${this.#seq.toString(36).padStart(4, '0')}${randomBytes(4).toString('hex')}`
  }

  /** Loads the records left from before and starts delivering. */
  async start (): Promise<void> {
    if (this.#running) return
    for await (const [k, v] of this.#kv.entries({ gte: RECORD_PREFIX, lt: `${RECORD_PREFIX}\xff` })) {
      const id = k.slice(RECORD_PREFIX.length)
      if (isPlainObject(v) && typeof v.nextAt === 'number' && !this.#due.has(id)) this.#due.set(id, { nextAt: v.nextAt, record: null, ready: true })
    }
    this.#running = true
    this.#pump()
  }

  /**
   * Stops delivering: writes what is queued, aborts the attempts in flight (they stay in the
   * outbox and are attempted again after the next start) and waits for them to end.
   */
  async stop (): Promise<void> {
    this.#running = false
    this.#clearTimer()
    while (this.#writing !== null) await this.#writing
    for (const f of this.#inFlight.values()) f.abort.abort()
    await Promise.all([...this.#inFlight.values()].map(f => f.done))
  }

  /** Records waiting for delivery (in flight included). */
  get pending (): number {
    return this.#due.size
  }

  async #writeLoop (): Promise<void> {
    await Promise.resolve() // let the current burst of events queue up: one batch for all
    while (this.#unwritten.length > 0) {
      const batch = this.#unwritten
      this.#unwritten = []
      try {
        await this.#kv.batch(batch.map(r => ({ type: 'put' as const, key: recordKey(r.id), value: r })))
        for (const r of batch) {
          const s = this.#due.get(r.id)
          if (s !== undefined && s.record === r) s.record = null
        }
      } catch (err) {
        // Still delivered from memory, but a restart before delivery loses these.
        this.#deps.onError(err, 'outbox write failed')
      }
      for (const r of batch) {
        const s = this.#due.get(r.id)
        if (s !== undefined) s.ready = true
      }
      this.#pump()
    }
  }

  /** Starts due attempts up to the concurrency limit, and sets the timer for the next one. */
  #pump (): void {
    if (!this.#running) return
    this.#clearTimer()
    const now = this.#deps.now()
    let next = Number.POSITIVE_INFINITY
    for (const [id, s] of this.#due) {
      if (this.#inFlight.has(id) || !s.ready) continue
      if (s.nextAt > now) {
        next = Math.min(next, s.nextAt)
        continue
      }
      if (this.#inFlight.size >= this.#deps.tuning.concurrency) break
      this.#attempt(id, s)
    }
    if (next !== Number.POSITIVE_INFINITY && this.#inFlight.size < this.#deps.tuning.concurrency) {
      this.#timer = this.#deps.timers.setTimeout(() => { this.#timer = null; this.#pump() }, Math.max(0, next - now))
    }
  }

  #attempt (id: string, s: Sched<T>): void {
    const abort = new AbortController()
    const timeout = this.#deps.timers.setTimeout(() => abort.abort(new Error('attempt timed out')), this.#deps.tuning.attemptTimeoutMs)
    const done = this.#deliver(id, s, abort.signal)
      .catch(err => { this.#deps.onError(err, 'outbox bookkeeping failed') })
      .finally(() => {
        this.#deps.timers.clearTimeout(timeout)
        this.#inFlight.delete(id)
        this.#pump()
      })
    this.#inFlight.set(id, { abort, done })
  }

  async #deliver (id: string, s: Sched<T>, signal: AbortSignal): Promise<void> {
    const stored = s.record ?? await this.#kv.get(recordKey(id))
    const record = this.#asRecord(stored)
    if (record === null) {
      this.#due.delete(id)
      return
    }
    try {
      await this.#deps.send(record.payload, id, signal)
    } catch (err) {
      if (!this.#running) return // stopping: the record stays for the next start
      await this.#failed(record, s, err)
      return
    }
    this.#due.delete(id)
    await this.#kv.del(recordKey(id))
  }

  async #failed (record: OutboxRecord<T>, s: Sched<T>, err: unknown): Promise<void> {
    const { tuning } = this.#deps
    const attempts = record.attempts + 1
    const lastError = err instanceof Error ? err.message : String(err)
    if (attempts >= tuning.maxAttempts) {
      this.#due.delete(record.id)
      await this.#kv.batch([
        { type: 'del', key: recordKey(record.id) },
        { type: 'put', key: deadKey(record.id), value: { ...record, attempts, lastError } }
      ])
      this.#deps.onError(err, `outbox record ${record.id} dropped after ${attempts} attempts`)
      return
    }
    const nextAt = this.#deps.now() + Math.min(tuning.retryMaxMs, tuning.retryBaseMs * 2 ** (attempts - 1))
    const next: OutboxRecord<T> = { ...record, attempts, nextAt, lastError }
    s.nextAt = nextAt
    await this.#kv.put(recordKey(record.id), next)
  }

  #asRecord (v: unknown): OutboxRecord<T> | null {
    if (!isPlainObject(v) || typeof v.id !== 'string' || typeof v.attempts !== 'number' ||
      typeof v.createdAt !== 'number' || typeof v.nextAt !== 'number' || !this.#deps.isPayload(v.payload)) return null
    return { id: v.id, payload: v.payload, attempts: v.attempts, createdAt: v.createdAt, nextAt: v.nextAt }
  }

  #clearTimer (): void {
    if (this.#timer !== null) {
      this.#deps.timers.clearTimeout(this.#timer)
      this.#timer = null
    }
  }
}
