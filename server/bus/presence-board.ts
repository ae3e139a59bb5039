/**
 * Where the nodes of a cluster pool who is connected (the guests of each conversation), on
 * Redis: each node writes, once per tick, one key per conversation it serves guests of
 * (`<prefix>presence:<conv>:<node>`, the guest user ids as JSON, expiring after `ttlMs` unless
 * the next tick renews it) and reads the other nodes' keys. A node that dies stops renewing: its
 * guests vanish everywhere within `ttlMs`. One round of pipelined commands per tick, never one
 * message per awareness change.
 */
import { Redis } from 'ioredis'

export interface PresenceBoard {
  /**
   * Publishes this node's guests per conversation (an empty list withdraws it) and returns, for
   * the same conversations, the guests the other nodes publish.
   */
  exchange (node: string, local: ReadonlyMap<string, readonly string[]>): Promise<Map<string, Set<string>>>
  close (): Promise<void>
}

export class RedisPresenceBoard implements PresenceBoard {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly ttlMs: number

  constructor (url: string, prefix: string, ttlMs: number, onError: (err: Error) => void = () => {}) {
    this.redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: times => Math.min(100 * times, 1000) })
    this.redis.on('error', onError)
    this.prefix = prefix
    this.ttlMs = ttlMs
  }

  private nodesKey (conv: string): string { return `${this.prefix}presence-nodes:${conv}` }
  private key (conv: string, node: string): string { return `${this.prefix}presence:${conv}:${node}` }

  async exchange (node: string, local: ReadonlyMap<string, readonly string[]>): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>()
    if (local.size === 0 || this.redis.status !== 'ready') return out
    const convs = [...local.keys()]
    const write = this.redis.pipeline()
    for (const conv of convs) {
      const guests = local.get(conv) ?? []
      if (guests.length > 0) {
        write.set(this.key(conv, node), JSON.stringify(guests), 'PX', this.ttlMs)
        write.sadd(this.nodesKey(conv), node)
        write.pexpire(this.nodesKey(conv), this.ttlMs * 4)
      } else {
        write.del(this.key(conv, node))
      }
      write.smembers(this.nodesKey(conv))
    }
    const written = await write.exec() ?? []
    const nodesOf = new Map<string, string[]>()
    let i = 0
    for (const conv of convs) {
      i += (local.get(conv) ?? []).length > 0 ? 3 : 1
      const [err, members] = written[i++] ?? [null, []]
      nodesOf.set(conv, err === null ? (members as string[]).filter(n => n !== node) : [])
    }
    const read = this.redis.pipeline()
    for (const conv of convs) for (const other of nodesOf.get(conv) ?? []) read.get(this.key(conv, other))
    const values = await read.exec() ?? []
    const gone = this.redis.pipeline()
    let j = 0
    for (const conv of convs) {
      const guests = new Set<string>()
      for (const other of nodesOf.get(conv) ?? []) {
        const [err, value] = values[j++] ?? [null, null]
        if (err !== null) continue
        if (value === null) { gone.srem(this.nodesKey(conv), other); continue } // expired: that node stopped
        for (const g of JSON.parse(value as string) as string[]) guests.add(g)
      }
      out.set(conv, guests)
    }
    if (gone.length > 0) await gone.exec()
    return out
  }

  async close (): Promise<void> {
    await this.redis.quit().catch(() => {})
  }
}
