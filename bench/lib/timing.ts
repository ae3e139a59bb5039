/**
 * Bounded waiting and pacing helpers. Every wait has a deadline; nothing here loops forever.
 */
import { performance } from 'node:perf_hooks'

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** Milliseconds since the epoch with sub-millisecond precision; comparable across processes. */
export const epochNow = (): number => performance.timeOrigin + performance.now()

/**
 * Polls `check` every `intervalMs` until it holds or `capMs` passed. Resolves to the elapsed
 * milliseconds when it held, or `null` at the cap.
 */
export const waitUntil = async (check: () => boolean, capMs: number, intervalMs = 10): Promise<number | null> => {
  const start = performance.now()
  for (;;) {
    if (check()) return performance.now() - start
    if (performance.now() - start >= capMs) return null
    await sleep(intervalMs)
  }
}

/** Runs `tasks` with at most `concurrency` in flight; resolves when all settled. */
export const runBounded = async (count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> => {
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      await task(i).catch(() => { /* the task records its own failure */ })
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane))
}

/**
 * Calls `fn(i)` for i = 0..count-1 at `ratePerSecond`, on a fixed schedule from the first call
 * (so timer drift does not accumulate). Resolves after the last call.
 */
export const paced = async (count: number, ratePerSecond: number, fn: (i: number) => void): Promise<void> => {
  const period = 1000 / ratePerSecond
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    const due = start + i * period
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    fn(i)
  }
}
