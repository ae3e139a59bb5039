/**
 * One store handle's write path: a serial group commit with fail-stop.
 *
 * Every write of the store joins this queue. One batch is in flight at a time; what queues up
 * meanwhile is merged into the next batch (one write, one fsync when syncing). The order of
 * writes is therefore the order in which they completed, so a failure has a clean edge: every
 * write that resolved before it is in the store, and nothing after it is accepted.
 *
 * Fail-stop: the first failed batch trips the queue. That batch and every later write reject
 * with STORAGE_UNAVAILABLE, without touching the store, until `resume()` (called once the store
 * was reopened and proven consistent). This matters for LevelDB, whose log writer moves on after
 * a failed append as if the record were there: later records written through the same handle are
 * misaligned and silently dropped by the next open's recovery (see facts.md).
 */
import { FailStop, type WriteFailure } from './fail-stop.ts'

export type { WriteFailure } from './fail-stop.ts'

interface Waiter<Op> { ops: readonly Op[], durable: boolean, resolve: () => void, reject: (e: unknown) => void }

/** Turns a storage error into one readable line naming the folder (`dir`). */
export const describeStorageError = (error: unknown, dir: string): string => {
  const text = error instanceof Error ? `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}` : String(error)
  const code = (error as { code?: unknown } | null)?.code
  const has = (errno: string, words: RegExp): boolean => code === errno || words.test(text)
  if (has('ENOSPC', /no space left on device/i)) return `disk full at ${dir} (ENOSPC)`
  if (has('EDQUOT', /quota exceeded/i)) return `disk quota exceeded at ${dir} (EDQUOT)`
  if (has('EROFS', /read-only file system/i)) return `${dir} is on a read-only file system (EROFS)`
  if (has('EIO', /input\/output error/i)) return `I/O error at ${dir} (EIO)`
  if (has('EACCES', /permission denied/i)) return `permission denied writing to ${dir} (EACCES)`
  if (/corrupt/i.test(text)) return `storage at ${dir} reports corruption: ${text.split('\n')[0].trim()}`
  return `write to ${dir} failed: ${text.split('\n')[0].trim()}`
}

export class WriteQueue<Op> {
  private readonly write: (ops: Op[], durable: boolean) => Promise<void>
  private readonly stop: FailStop
  private waiting: Array<Waiter<Op>> = []
  private running = false

  /**
   * @param write performs one batch on the store (flushed to the disk when `durable`); must
   *   reject when anything of it may not be stored
   * @param describe turns the first error into the failure's one-line reason
   */
  constructor (write: (ops: Op[], durable: boolean) => Promise<void>, describe: (error: unknown) => string, now: () => number = Date.now) {
    this.write = write
    this.stop = new FailStop(describe, now)
  }

  /** Null while writes are accepted. */
  get failure (): WriteFailure | null { return this.stop.failure }

  /** Calls `fn` each time the queue trips (not again until it has been resumed). */
  onFailure (fn: (f: WriteFailure) => void): void { this.stop.onFailure(fn) }

  /**
   * Resolves once `ops` are written; rejects with STORAGE_UNAVAILABLE once the queue has tripped.
   * `durable` false: the batch need not be flushed to the disk before it resolves (it is, when it
   * shares a group with a durable one); for writes that can be redone from a durable record.
   */
  async enqueue (ops: readonly Op[], durable = true): Promise<void> {
    this.stop.assertWritable()
    if (ops.length === 0) return
    const done = new Promise<void>((resolve, reject) => { this.waiting.push({ ops, durable, resolve, reject }) })
    if (!this.running) void this.drain()
    await done
  }

  /** Throws STORAGE_UNAVAILABLE once the queue has tripped (to refuse before preparing a write). */
  assertWritable (): void { this.stop.assertWritable() }

  /** Accepts writes again (after the store was reopened and checked). */
  resume (): void {
    this.stop.resume()
  }

  /** Trips the queue from outside (e.g. a read found the handle broken). No-op once tripped. */
  trip (error: unknown): void {
    if (!this.stop.trip(error)) return
    const refusal = this.stop.refusal()
    for (const w of this.waiting) w.reject(refusal)
    this.waiting = []
  }

  private async drain (): Promise<void> {
    this.running = true
    try {
      while (this.waiting.length > 0 && this.stop.failure === null) {
        const batch = this.waiting
        this.waiting = []
        try {
          await this.write(batch.flatMap(w => w.ops), batch.some(w => w.durable))
        } catch (error) {
          this.trip(error)
          const refusal = this.stop.refusal()
          for (const w of batch) w.reject(refusal)
          return
        }
        for (const w of batch) w.resolve()
      }
    } finally {
      this.running = false
    }
  }
}
