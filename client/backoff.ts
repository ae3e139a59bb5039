/**
 * Reconnect delays with exponential backoff and jitter. Pure: the caller passes the attempt
 * number and a random source, so a test can replay any sequence.
 *
 * The stock y-websocket provider waits 100 ms × 2ⁿ without jitter, so after a server restart
 * every client retries in lock-step. Here the n-th delay is drawn uniformly from
 * [cap/2, cap) with cap = min(maxMs, baseMs × 2ⁿ) ("equal jitter"): never shorter than half the
 * exponential step, and spread over the other half.
 */

export interface BackoffOptions {
  /** First cap, in ms. */
  baseMs: number
  /** Largest cap, in ms. */
  maxMs: number
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ baseMs: 250, maxMs: 10_000 })

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry), in ms.
 * @param random returns a number in [0, 1), like `Math.random`.
 */
export const backoffDelay = (attempt: number, random: () => number, opts: BackoffOptions = DEFAULT_BACKOFF): number => {
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(attempt, 30))
  return Math.floor(cap / 2 + random() * (cap / 2))
}
