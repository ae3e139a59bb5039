/**
 * Message rate limits (contract §7): per user per conversation, shared by the sync endpoint and
 * REST. Two rules, both from live values read at each decision:
 *   - `messageRate` (setting): a token bucket of `burst` messages refilled at `perSecond`; a
 *     batch of N messages costs N and is refused as a whole when the bucket holds fewer;
 *   - `slowMode` (the conversation's `meta.slowMode`, seconds, written by the server only):
 *     at most one message per `slowMode` seconds per user, so a batch of two or more is refused.
 * A refusal charges nothing; the caller answers RATE_LIMITED (REST 429 with `Retry-After`,
 * sync close 4429); after a sync refusal the user's new sync connections to that conversation
 * are refused the same way until the wait is over (`block`). Entries of users who are idle long enough to be back at a full bucket are
 * swept, so memory follows the users active recently, not every user ever seen.
 */
import type * as Y from 'yjs'
import { metaOf } from '../shared/doc.ts'
import type { MessageRate } from '../shared/settings.ts'

/** Longest `slowMode`, in seconds (one hour). */
export const MAX_SLOW_MODE_SECONDS = 3600

/** A conversation's slow mode in seconds (0 = off), from `meta.slowMode`. */
export const slowModeOf = (doc: Y.Doc): number => {
  const v: unknown = metaOf(doc).get('slowMode')
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? Math.min(v, MAX_SLOW_MODE_SECONDS) : 0
}

interface Bucket {
  tokens: number
  /** When `tokens` was computed. */
  at: number
  /** When the last message was charged (for slow mode). */
  lastAt: number
  /** Until when a refused writer's new connections are refused too (see `blockedFor`). */
  blockedUntil: number
}

/** Entries kept before the first sweep. */
const SWEEP_FLOOR = 1024

/** Milliseconds until `count` messages fit in `b` (refilled to `now`), 0 when they fit now. */
const waitFor = (b: Bucket, count: number, now: number, { perSecond, burst }: MessageRate, slowModeSeconds: number): number => {
  let wait = 0
  if (slowModeSeconds > 0) {
    wait = Math.max(0, b.lastAt + slowModeSeconds * 1000 - now)
    // A batch never fits in slow mode; the wait says when one message would.
    if (count > 1) wait = Math.max(wait, 1)
  }
  if (count > b.tokens) wait = Math.max(wait, 1, Math.ceil((Math.min(count, burst) - b.tokens) * 1000 / perSecond))
  return wait
}

export class MessageRateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly now: () => number
  private readonly rate: () => MessageRate
  private sweepAt = SWEEP_FLOOR

  constructor (now: () => number, rate: () => MessageRate) {
    this.now = now
    this.rate = rate
  }

  /**
   * Charges each user's messages in `conversationId` under `slowModeSeconds`, all or none.
   * Returns 0 when allowed (and charged), else the milliseconds after which the same writes
   * would be allowed (nothing is charged).
   */
  charge (conversationId: string, writes: ReadonlyMap<string, number>, slowModeSeconds: number): number {
    const now = this.now()
    const rate = this.rate()
    let wait = 0
    const buckets: Array<[string, Bucket, number]> = []
    for (const [userId, count] of writes) {
      if (count <= 0) continue
      const key = `${conversationId}\u0000${userId}`
      const b = this.refill(this.buckets.get(key), now, rate)
      wait = Math.max(wait, waitFor(b, count, now, rate, slowModeSeconds))
      buckets.push([key, b, count])
    }
    if (wait > 0) return wait
    for (const [key, b, count] of buckets) {
      b.tokens -= count
      b.lastAt = now
      this.buckets.set(key, b)
    }
    if (this.buckets.size > this.sweepAt) this.sweep(now, rate)
    return 0
  }

  /** A copy of `b` (or a full new bucket) refilled up to `now`. */
  private refill (b: Bucket | undefined, now: number, { perSecond, burst }: MessageRate): Bucket {
    if (b === undefined) return { tokens: burst, at: now, lastAt: Number.NEGATIVE_INFINITY, blockedUntil: 0 }
    return { tokens: Math.min(burst, b.tokens + (now - b.at) * perSecond / 1000), at: now, lastAt: b.lastAt, blockedUntil: b.blockedUntil }
  }

  /**
   * Refuses `userId`'s new sync connections to `conversationId` for `ms` (after its connection
   * was closed with 4429), so a flooder that reconnects at once is refused at admission, before
   * it costs a sync answer and a presence join.
   */
  block (conversationId: string, userId: string, ms: number): void {
    const key = `${conversationId}\u0000${userId}`
    const now = this.now()
    const b = this.refill(this.buckets.get(key), now, this.rate())
    b.blockedUntil = Math.max(b.blockedUntil, now + ms)
    this.buckets.set(key, b)
  }

  /** Milliseconds left of a `block` (0 = none). */
  blockedFor (conversationId: string, userId: string): number {
    const b = this.buckets.get(`${conversationId}\u0000${userId}`)
    return b === undefined ? 0 : Math.max(0, b.blockedUntil - this.now())
  }

  /** Entries tracked now (for tests and metrics). */
  get size (): number { return this.buckets.size }

  /** Forgets users back at a full bucket and out of any slow mode (at most an hour). */
  private sweep (now: number, rate: MessageRate): void {
    for (const [key, b] of this.buckets) {
      if (this.refill(b, now, rate).tokens >= rate.burst && now - b.lastAt >= MAX_SLOW_MODE_SECONDS * 1000) this.buckets.delete(key)
    }
    this.sweepAt = Math.max(SWEEP_FLOOR, this.buckets.size * 2)
  }
}
