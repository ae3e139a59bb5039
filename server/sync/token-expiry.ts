/**
 * Token expiry on live sockets: a connection admitted with a token that expires at `exp` is
 * closed with 4401 `TOKEN_EXPIRED` then (the client renews by reconnecting with a fresh token,
 * see docs/client.md). One timer per connection; delays beyond what a timer holds are chained.
 */
import type { Timers } from '../presence/presence-hub.ts'

/** The longest delay a Node timer keeps (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Calls `onExpired` once `ms` have passed; the returned function cancels it. */
export const armTokenExpiry = (timers: Timers, ms: number, onExpired: () => void): () => void => {
  let handle: unknown = null
  let cancelled = false
  const arm = (left: number): void => {
    handle = timers.setTimeout(() => {
      if (cancelled) return
      if (left > MAX_TIMER_MS) arm(left - MAX_TIMER_MS)
      else onExpired()
    }, Math.max(0, Math.min(left, MAX_TIMER_MS)))
  }
  arm(ms)
  return () => {
    cancelled = true
    if (handle !== null) timers.clearTimeout(handle)
  }
}
