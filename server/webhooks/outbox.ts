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
 *
 * Claims (`OutboxQueue`). Every attempt first claims its record, so on a store several nodes
 * share (PostgreSQL) one record is attempted by one node at a time, and each event is delivered
 * once by the cluster in normal operation. The node whose change raised an event claims it at
 * once (its memory holds the schedule of what it created); every node also sweeps the store
 * every `sweepMs` for due records nobody holds: those a node left when it died (due again when
 * their lease ends) and retries whose node is gone. A failed attempt writes the record back
 * with its next time and the same id; the next attempt may be another node's. Delivery stays at
 * least once: a node that dies after the receiver got the event but before deleting the record
 * leaves it to be delivered again, under the same id (receivers deduplicate on it). On LevelDB
 * claims are in memory and nothing sweeps: this process is the only deliverer.
 */
import { randomBytes } from 'node:crypto'
import type { Timers } from '../presence/presence-hub.ts'
import { isChatError } from '../../shared/errors.ts'
import type { KvSection, OutboxClaim, OutboxQueue } from '../storage/port.ts'
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
  /**
   * How long a claim keeps a record from every other deliverer (a shared store: PostgreSQL).
   * A node that dies holding claims delays those records by at most this much; at least
   * `attemptTimeoutMs` plus 5 s is used, so a live node's attempt always ends within its lease.
   */
  leaseMs: number
  /** How often a node sharing the store looks for due records nobody holds (those of a node that died, retries), in ms. */
  sweepMs: number
}

export const DEFAULT_OUTBOX_TUNING: Readonly<OutboxTuning> = Object.freeze({
  retryBaseMs: 1000,
  retryMaxMs: 60 * 60_000,
  maxAttempts: 15,
  concurrency: 4,
  attemptTimeoutMs: 10_000,
  leaseMs: 30_000,
  sweepMs: 1000
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
  /** Where records are written (`enqueue`) and, for records whose write failed, retried from. */
  section: KvSection
  /** The claims on that section's records (`DocStore.outboxQueue` of the same section). */
  queue: OutboxQueue
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
  readonly #queue: OutboxQueue
  readonly #leaseMs: number
  /** What this node knows it should attempt (and when): records it created, and its retries. */
  readonly #due = new Map<string, Sched<T>>()
  readonly #inFlight = new Map<string, { abort: AbortController, done: Promise<void> }>()
  #unwritten: Array<OutboxRecord<T>> = []
  #writing: Promise<void> | null = null
  #timer: unknown = null
  #sweeper: unknown = null
  #sweeping: Promise<void> | null = null
  /** The last sweep filled every free place: more may be due (a dead node's backlog); sweep again as places free up. */
  #backlog = false
  #running = false
  #seq = 0

  constructor (deps: OutboxDeps<T>) {
    this.#deps = deps
    this.#kv = deps.section
    this.#queue = deps.queue
    this.#leaseMs = Math.max(deps.tuning.leaseMs, deps.tuning.attemptTimeoutMs + 5000)
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

  /**
   * Starts delivering what is stored: alone on the store, by loading the schedule of every
   * record; sharing it, by sweeping for due records now and every `sweepMs`.
   */
  async start (): Promise<void> {
    if (this.#running) return
    if (!this.#queue.shared) {
      for await (const [k, v] of this.#kv.entries({ gte: RECORD_PREFIX, lt: `${RECORD_PREFIX}\xff` })) {
        const id = k.slice(RECORD_PREFIX.length)
        if (isPlainObject(v) && typeof v.nextAt === 'number' && !this.#due.has(id)) this.#due.set(id, { nextAt: v.nextAt, record: null, ready: true })
      }
    }
    this.#running = true
    this.#pump()
    if (this.#queue.shared) {
      this.#sweep()
      this.#sweeper = this.#deps.timers.setInterval(() => { this.#sweep() }, this.#deps.tuning.sweepMs)
    }
  }

  /**
   * Stops delivering: writes what is queued, aborts the attempts in flight (they stay in the
   * outbox, given back to the other nodes at once, and are attempted again after the next start)
   * and waits for them to end.
   */
  async stop (): Promise<void> {
    this.#running = false
    this.#clearTimer()
    if (this.#sweeper !== null) this.#deps.timers.clearInterval(this.#sweeper)
    this.#sweeper = null
    while (this.#writing !== null) await this.#writing
    await this.#sweeping
    for (const f of this.#inFlight.values()) f.abort.abort()
    await Promise.all([...this.#inFlight.values()].map(f => f.done))
  }

  /** Records waiting for delivery that this node knows of (in flight included). */
  get pending (): number {
    return this.#due.size + [...this.#inFlight.keys()].filter(id => !this.#due.has(id)).length
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
    const start: Array<[string, Sched<T>]> = []
    for (const [id, s] of this.#due) {
      if (this.#inFlight.has(id) || !s.ready) continue
      if (s.nextAt > now) {
        next = Math.min(next, s.nextAt)
        continue
      }
      if (this.#inFlight.size + start.length >= this.#deps.tuning.concurrency) break
      start.push([id, s])
    }
    if (start.length > 0) this.#launch(start)
    if (next !== Number.POSITIVE_INFINITY && this.#inFlight.size < this.#deps.tuning.concurrency) {
      this.#timer = this.#deps.timers.setTimeout(() => { this.#timer = null; this.#pump() }, Math.max(0, next - now))
    }
  }

  /** Claims the records of these due entries (one call for all) and attempts those it got. */
  #launch (entries: Array<[string, Sched<T>]>): void {
    const slots = entries.map(([id]) => [id, this.#slot(id)] as const)
    void (async () => {
      const now = this.#deps.now()
      const claimed = new Map<string, OutboxClaim>()
      const keys = entries.filter(([, s]) => s.record === null).map(([id]) => recordKey(id))
      let failed = false
      try {
        if (keys.length > 0) for (const c of await this.#queue.claim(keys, now, this.#leaseMs)) claimed.set(c.key, c)
      } catch (err) {
        failed = true
        this.#reportStorage(err, 'outbox claim failed')
      }
      for (const [id, slot] of slots) {
        const s = this.#due.get(id)
        const claim = claimed.get(recordKey(id))
        if (s?.record != null) {
          this.#run(id, slot, null, s.record) // its write failed: delivered from memory
        } else if (claim !== undefined) {
          this.#run(id, slot, claim, null)
        } else {
          // Failed to claim: try again after a pause. Not claimable: delivered, or another node holds it.
          if (failed && s !== undefined) s.nextAt = now + this.#deps.tuning.retryBaseMs
          else this.#due.delete(id)
          slot.end()
        }
      }
    })()
  }

  /** Reserves an attempt's place in flight (so nothing starts it twice); `end` frees it. */
  #slot (id: string): { abort: AbortController, end: () => void } {
    const abort = new AbortController()
    let end = (): void => {}
    const done = new Promise<void>(resolve => {
      end = () => {
        this.#inFlight.delete(id)
        resolve()
        this.#pump()
        if (this.#backlog) this.#sweep()
      }
    })
    this.#inFlight.set(id, { abort, done })
    return { abort, end }
  }

  #run (id: string, slot: { abort: AbortController, end: () => void }, claim: OutboxClaim | null, memory: OutboxRecord<T> | null): void {
    const timeout = this.#deps.timers.setTimeout(() => slot.abort.abort(new Error('attempt timed out')), this.#deps.tuning.attemptTimeoutMs)
    this.#deliver(id, claim, memory, slot.abort.signal)
      .catch(err => { this.#reportStorage(err, 'outbox bookkeeping failed') })
      .finally(() => {
        this.#deps.timers.clearTimeout(timeout)
        slot.end()
      })
  }

  /** A shared store: claims due records nobody holds, up to the free places in flight. */
  #sweep (): void {
    if (!this.#running || this.#sweeping !== null) return
    const free = this.#deps.tuning.concurrency - this.#inFlight.size
    if (free <= 0) return
    this.#sweeping = (async () => {
      const claims = await this.#queue.claimDue(RECORD_PREFIX, this.#deps.now(), free, this.#leaseMs)
      this.#backlog = claims.length === free
      for (const c of claims) {
        const id = c.key.slice(RECORD_PREFIX.length)
        if (!this.#running || this.#inFlight.has(id)) await this.#queue.release(c, this.#deps.now())
        else this.#run(id, this.#slot(id), c, null)
      }
    })()
      .catch(err => {
        this.#backlog = false
        this.#reportStorage(err, 'outbox sweep failed')
      })
      .finally(() => { this.#sweeping = null })
  }

  /** Storage refusing writes is the storage guard's to report (once); anything else is reported here. */
  #reportStorage (err: unknown, what: string): void {
    if (isChatError(err) && err.code === 'STORAGE_UNAVAILABLE') return
    this.#deps.onError(err, what)
  }

  async #deliver (id: string, claim: OutboxClaim | null, memory: OutboxRecord<T> | null, signal: AbortSignal): Promise<void> {
    const record = memory ?? this.#asRecord(claim?.value)
    if (record === null) {
      // Unreadable (written by a newer version, or damaged): kept aside, never attempted again.
      this.#due.delete(id)
      if (claim !== null) await this.#queue.settle(claim, [{ type: 'del', key: claim.key }, { type: 'put', key: deadKey(id), value: { unreadable: claim.value } }])
      return
    }
    try {
      await this.#deps.send(record.payload, id, signal)
    } catch (err) {
      if (!this.#running) {
        // Stopping: the record stays for the next start, and any other node may take it now.
        if (claim !== null) await this.#queue.release(claim, this.#deps.now())
        return
      }
      await this.#failed(record, claim, err)
      return
    }
    this.#due.delete(id)
    if (claim !== null) await this.#queue.settle(claim, [{ type: 'del', key: claim.key }])
    else await this.#kv.del(recordKey(id))
  }

  async #failed (record: OutboxRecord<T>, claim: OutboxClaim | null, err: unknown): Promise<void> {
    const { tuning } = this.#deps
    const attempts = record.attempts + 1
    const lastError = err instanceof Error ? err.message : String(err)
    const key = recordKey(record.id)
    if (attempts >= tuning.maxAttempts) {
      this.#due.delete(record.id)
      const ops = [
        { type: 'del' as const, key },
        { type: 'put' as const, key: deadKey(record.id), value: { ...record, attempts, lastError } }
      ]
      if (claim !== null) await this.#queue.settle(claim, ops)
      else await this.#kv.batch(ops)
      this.#deps.onError(err, `outbox record ${record.id} dropped after ${attempts} attempts`)
      return
    }
    const nextAt = this.#deps.now() + Math.min(tuning.retryMaxMs, tuning.retryBaseMs * 2 ** (attempts - 1))
    const next: OutboxRecord<T> = { ...record, attempts, nextAt, lastError }
    // This node tries again at `nextAt` (whoever claims it first then attempts it).
    const s = this.#due.get(record.id)
    if (s !== undefined) s.nextAt = nextAt
    else this.#due.set(record.id, { nextAt, record: null, ready: true })
    if (claim !== null) {
      if (!await this.#queue.settle(claim, [{ type: 'put', key, value: next }])) this.#due.delete(record.id)
    } else {
      if (s?.record != null) s.record = next
      await this.#kv.put(key, next)
    }
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
