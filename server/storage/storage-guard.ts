/**
 * Watches the store for write failures and brings it back.
 *
 * When the store trips (its first failed write, see write-queue.ts) the guard says so once in
 * the log, counts it, and makes `/healthz` answer 503 with the reason. Then, every `retryMs`, it
 * checks the folder for free space (stores in a folder only, see `DocStore.freeSpace`) and, once
 * there is enough, reopens the store (for PostgreSQL: connects again), checks that it
 * still holds every log entry the loaded rooms wrote (what peers may have seen), and only then
 * lets writes in again and tells the rooms to write what they kept. A store that comes back with
 * acknowledged entries missing stays refused: that needs a person (docs/operations.md).
 */
import type { Logger } from 'pino'
import type { Timers } from '../presence/presence-hub.ts'
import type { Metrics } from '../metrics.ts'
import type { DocStore } from './port.ts'

export interface StorageGuardDeps {
  store: DocStore
  logger: Logger
  metrics: Metrics
  timers: Timers
  /** Log entries the loaded rooms wrote that the reopened store lacks (one line each). */
  findLostWrites: () => Promise<string[]>
  /** Called once writes are accepted again. */
  onResumed: () => void
  /** How often to try again while storage is failing. */
  retryMs: number
  /** Bytes the folder must have free (beyond what LevelDB needs to replay its log) before a retry. */
  minFreeBytes: number
}

export interface StorageHealth {
  ok: boolean
  /** Why not, for people: "disk full at ./data (ENOSPC)". */
  reason?: string
}

export interface StorageGuard {
  health (): StorageHealth
  stop (): void
}

export const createStorageGuard = (deps: StorageGuardDeps): StorageGuard => {
  const { store, logger, metrics, timers } = deps
  let timer: unknown = null
  let stopped = false
  /** Set when the reopened store lacks acknowledged entries: no automatic way back. */
  let lost: string | null = null

  metrics.storageAvailable.set(1)

  const schedule = (): void => {
    if (stopped || timer !== null) return
    timer = timers.setTimeout(() => { timer = null; void retry() }, deps.retryMs)
  }

  const retry = async (): Promise<void> => {
    if (stopped || store.writeFailure === null || lost !== null) return
    try {
      if (store.freeSpace !== undefined) {
        const { free, needed } = await store.freeSpace()
        if (free < needed + deps.minFreeBytes) { schedule(); return }
      }
      await store.reopen()
      const missing = await deps.findLostWrites()
      if (missing.length > 0) {
        lost = `storage at ${store.location} lost acknowledged writes after reopening: ${missing.join('; ')}`
        logger.fatal({ missing }, `${lost}; writes stay refused: stop the server and run the check (docs/operations.md)`)
        return
      }
    } catch (err) {
      logger.debug({ err }, 'storage still failing')
      schedule()
      return
    }
    store.resumeWrites()
    metrics.storageAvailable.set(1)
    logger.warn({ data: store.location }, 'storage recovered: writes are accepted again')
    deps.onResumed()
  }

  store.onWriteFailure(failure => {
    metrics.storageFailures.inc()
    metrics.storageAvailable.set(0)
    logger.error({ err: failure.error, data: store.location }, `storage failed: ${failure.reason}; writes are refused until it recovers (checked every ${deps.retryMs} ms)`)
    schedule()
  })

  return {
    health () {
      if (lost !== null) return { ok: false, reason: lost }
      const failure = store.writeFailure
      return failure === null ? { ok: true } : { ok: false, reason: failure.reason }
    },
    stop () {
      stopped = true
      if (timer !== null) timers.clearTimeout(timer)
      timer = null
    }
  }
}
