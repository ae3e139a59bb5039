/**
 * The fail-stop switch of a store: null while writes are accepted; once tripped, the first
 * failure, and every write refused with STORAGE_UNAVAILABLE until `resume()` (called once the
 * store was reopened and proven consistent). The write queue of LevelStore and PgStore share it.
 */
import { ChatError } from '../../shared/errors.ts'

/** Why writes stopped, told once in the log, on `/healthz` and to every refused writer. */
export interface WriteFailure {
  /** One line for people: "disk full at ./data (ENOSPC)". */
  readonly reason: string
  /** The first error, as the store reported it. */
  readonly error: unknown
  /** When it happened (ms since the epoch). */
  readonly at: number
}

export class FailStop {
  private readonly describe: (error: unknown) => string
  private readonly now: () => number
  private readonly listeners: Array<(f: WriteFailure) => void> = []
  private failed: WriteFailure | null = null

  /** @param describe turns the first error into the failure's one-line reason */
  constructor (describe: (error: unknown) => string, now: () => number = Date.now) {
    this.describe = describe
    this.now = now
  }

  /** Null while writes are accepted. */
  get failure (): WriteFailure | null { return this.failed }

  /** Calls `fn` each time the switch trips (not again until it has been resumed). */
  onFailure (fn: (f: WriteFailure) => void): void { this.listeners.push(fn) }

  /** Stops writes with `error` as the reason. Returns false (and changes nothing) when already tripped. */
  trip (error: unknown): boolean {
    if (this.failed !== null) return false
    this.failed = { reason: this.describe(error), error, at: this.now() }
    for (const fn of this.listeners) fn(this.failed)
    return true
  }

  /** Accepts writes again. */
  resume (): void { this.failed = null }

  /** The error every refused write gets. */
  refusal (): ChatError {
    return new ChatError('STORAGE_UNAVAILABLE', `Storage is failing (${this.failed?.reason ?? 'unknown'}); nothing can be written now, retry later`)
  }

  /** Throws the refusal while tripped. */
  assertWritable (): void {
    if (this.failed !== null) throw this.refusal()
  }
}
