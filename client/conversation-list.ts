/**
 * The user's live conversation list (`GET /v1/users/:userId/conversations`: participant
 * conversations only, newest activity first, with unread counts and the last message).
 *
 * Kept fresh by polling every `intervalMs`, and sooner (after `soonMs`) when a view of this
 * session saw activity. A failed fetch backs off with jitter up to `maxIntervalMs`; a 44xx-like
 * refusal (token, browserSync) is reported as `error` and polling goes on at the slow pace.
 */
import { ObservableV2 } from 'lib0/observable'
import { isChatError, type ChatError } from '../shared/errors.ts'
import { backoffDelay } from './backoff.ts'
import type { ConversationSummary, RestClient } from './rest.ts'
import type { ClientTimers } from './transport.ts'

export interface ConversationListOptions {
  /** Poll interval while all is well, in ms; default 10 s. */
  intervalMs?: number
  /** Longest interval after failures, in ms; default 60 s. */
  maxIntervalMs?: number
  /** Delay of a refresh triggered by activity, in ms; default 300. */
  soonMs?: number
}

export interface ConversationListEvents {
  /** The list changed, or (the first time) it is known, even when empty: see `loaded`. */
  change: (items: readonly ConversationSummary[]) => void
  error: (error: ChatError | Error) => void
}

export class ConversationList extends ObservableV2<ConversationListEvents> {
  private readonly rest: RestClient
  private readonly userId: string
  private readonly timers: ClientTimers
  private readonly random: () => number
  private readonly opts: Required<ConversationListOptions>
  private itemsValue: ConversationSummary[] = []
  private timer: unknown = null
  private failures = 0
  private inflight: Promise<void> | null = null
  private closed = false
  private loadedOnce = false
  private readonly onClose: () => void

  constructor (rest: RestClient, userId: string, timers: ClientTimers, random: () => number, opts: ConversationListOptions, onClose: () => void) {
    super()
    this.rest = rest
    this.userId = userId
    this.timers = timers
    this.random = random
    this.onClose = onClose
    this.opts = { intervalMs: opts.intervalMs ?? 10_000, maxIntervalMs: opts.maxIntervalMs ?? 60_000, soonMs: opts.soonMs ?? 300 }
    this.schedule(0)
  }

  get items (): readonly ConversationSummary[] { return this.itemsValue }
  get loaded (): boolean { return this.loadedOnce }

  /** Fetches now; resolves when the list is current. */
  async refresh (): Promise<void> {
    this.inflight ??= this.fetch().finally(() => { this.inflight = null })
    await this.inflight
  }

  /** Asks for a refresh shortly (coalesces bursts of activity). */
  refreshSoon (): void {
    if (this.closed) return
    this.schedule(this.opts.soonMs)
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    if (this.timer !== null) this.timers.clearTimeout(this.timer)
    this.timer = null
    this.onClose()
    this.destroy()
  }

  private schedule (ms: number): void {
    if (this.closed) return
    if (this.timer !== null) this.timers.clearTimeout(this.timer)
    this.timer = this.timers.setTimeout(() => {
      this.timer = null
      void this.refresh().finally(() => this.scheduleNext())
    }, ms)
  }

  private scheduleNext (): void {
    if (this.closed || this.timer !== null) return
    const delay = this.failures === 0
      ? this.opts.intervalMs
      : Math.max(this.opts.intervalMs, backoffDelay(this.failures, this.random, { baseMs: this.opts.intervalMs, maxMs: this.opts.maxIntervalMs }))
    this.schedule(delay)
  }

  private async fetch (): Promise<void> {
    try {
      const { data } = await this.rest.conversationsOf(this.userId)
      this.failures = 0
      const first = !this.loadedOnce
      this.loadedOnce = true
      if (this.closed) return
      // The first answer is news even when it is the initial empty list: the list is now known.
      if (first || JSON.stringify(data) !== JSON.stringify(this.itemsValue)) {
        this.itemsValue = data
        this.emit('change', [data])
      }
    } catch (e) {
      this.failures++
      if (!this.closed) this.emit('error', [isChatError(e) ? e : e instanceof Error ? e : new Error(String(e))])
    }
  }
}
