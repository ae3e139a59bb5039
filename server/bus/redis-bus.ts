/**
 * The bus on Redis pub/sub (ioredis), for `--redis URL`. Two connections: one publishes, one
 * subscribes. Channels are prefixed (`prefix` + name), so several clusters or test runs share a
 * Redis without hearing each other. Pub/sub drops what is sent while a connection is down: on
 * every reconnection of the subscriber the `onGap` listeners run (the cluster catches up from
 * PostgreSQL). Publishing while Redis is unreachable drops the message (never queued, never
 * blocks a write): the receivers' periodic catch-up covers it.
 */
import { Redis } from 'ioredis'
import type { Bus, BusHandler } from './port.ts'

export interface RedisBusOptions {
  url: string
  /** Prefix of every channel name (e.g. `parley:<schema>:`). */
  prefix: string
  onError?: (err: Error) => void
}

export class RedisBus implements Bus {
  private readonly pub: Redis
  private readonly sub: Redis
  private readonly prefix: string
  private readonly channels = new Map<string, Set<BusHandler>>()
  private readonly gapListeners: Array<() => void> = []
  private readyOnce = false

  private constructor (opts: RedisBusOptions) {
    this.prefix = opts.prefix
    const common = {
      // Never queue commands while disconnected: a lost publish is covered by the catch-up.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times: number) => Math.min(100 * times, 1000),
      lazyConnect: true
    }
    this.pub = new Redis(opts.url, common)
    // The subscriber re-subscribes on reconnection (ioredis autoResubscribe, and `ready` below).
    this.sub = new Redis(opts.url, { ...common, enableOfflineQueue: true })
    const onError = opts.onError ?? (() => {})
    this.pub.on('error', onError)
    this.sub.on('error', onError)
    this.sub.on('message', (channel: string, message: string) => {
      const handlers = this.channels.get(channel.slice(this.prefix.length))
      if (handlers !== undefined) for (const h of [...handlers]) h(message)
    })
    this.sub.on('ready', () => {
      if (this.readyOnce) {
        // ioredis renews the subscriptions Redis confirmed; one cut before its answer is renewed here.
        for (const channel of this.channels.keys()) this.sub.subscribe(this.prefix + channel).catch(() => {})
        for (const fn of this.gapListeners) fn()
      }
      this.readyOnce = true
    })
  }

  /** Connects both connections; rejects when Redis cannot be reached. */
  static async open (opts: RedisBusOptions): Promise<RedisBus> {
    const bus = new RedisBus(opts)
    try {
      await Promise.all([bus.pub.connect(), bus.sub.connect()])
    } catch (e) {
      bus.pub.disconnect()
      bus.sub.disconnect()
      throw e
    }
    return bus
  }

  publish (channel: string, message: string): void {
    if (this.pub.status !== 'ready') return
    this.pub.publish(this.prefix + channel, message).catch(() => {})
  }

  subscribe (channel: string, handler: BusHandler): () => void {
    let handlers = this.channels.get(channel)
    if (handlers === undefined) {
      this.channels.set(channel, handlers = new Set())
      this.sub.subscribe(this.prefix + channel).catch(() => {})
    }
    handlers.add(handler)
    return () => {
      handlers.delete(handler)
      if (handlers.size === 0 && this.channels.get(channel) === handlers) {
        this.channels.delete(channel)
        this.sub.unsubscribe(this.prefix + channel).catch(() => {})
      }
    }
  }

  onGap (fn: () => void): void { this.gapListeners.push(fn) }

  hearing (): boolean { return this.sub.status === 'ready' }

  async close (): Promise<void> {
    this.channels.clear()
    await Promise.all([this.pub.quit().catch(() => {}), this.sub.quit().catch(() => {})])
  }
}
