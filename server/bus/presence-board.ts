/**
 * Where the nodes of a cluster keep what each shares of its presence, on Redis (cluster mode,
 * docs/cluster.md "Presence"). Keys (all under the cluster's prefix):
 *   `presence:<conv>:<node>`   hash: that node's record of the conversation (shared-codec.ts)
 *   `presence-nodes:<conv>`    set: the nodes with a record of it
 *   `presence-node:<node>`     the node is alive
 * Every key expires after `ttlMs` unless renewed: a node renews its own on every tick, so the
 * keys of a node that died vanish within `ttlMs`, and the others notice its liveness key gone.
 *
 * One tick of a node is one MULTI (atomic, so a reader never sees a record half rewritten):
 * never one Redis command per awareness change. Reading the others' records whole is for a node
 * that loads a conversation or lost bus messages; otherwise changes travel on the bus.
 */
import { Redis } from 'ioredis'
import type { PresenceChange } from '../presence/types.ts'
import { parseRecord, recordFields, type NodeRecord } from '../presence/shared-codec.ts'

/** One tick's writes of one node. */
export interface BoardTick {
  readonly version: number
  /** Records to change (a full change replaces the record). */
  readonly changes: ReadonlyMap<string, PresenceChange>
  /** Conversations whose record only needs to be kept alive. */
  readonly renew: readonly string[]
  /** Conversations whose record is deleted (nothing of this node is left there). */
  readonly withdraw: readonly string[]
  /** Other nodes whose liveness to check. */
  readonly watch: readonly string[]
}

export interface BoardTickResult {
  /** Conversations of `changes` (not full) and `renew` whose record had expired: rewrite them in full. */
  readonly expired: string[]
  /** Nodes of `watch` whose liveness key is gone. */
  readonly dead: string[]
}

export interface PresenceBoard {
  tick (node: string, tick: BoardTick): Promise<BoardTickResult>
  /** The other nodes' records of each conversation. */
  read (node: string, convs: readonly string[]): Promise<Map<string, Map<string, NodeRecord>>>
  /** Deletes `node`'s liveness key and records (it stops). */
  withdrawAll (node: string, convs: readonly string[]): Promise<void>
  close (): Promise<void>
}

export class RedisPresenceBoard implements PresenceBoard {
  private readonly redis: Redis
  private readonly prefix: string
  readonly ttlMs: number

  constructor (url: string, prefix: string, ttlMs: number, onError: (err: Error) => void = () => {}) {
    // commandTimeout: a Redis that stops answering fails the tick (retried whole) instead of stalling it.
    this.redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2000, retryStrategy: times => Math.min(100 * times, 1000) })
    this.redis.on('error', onError)
    this.prefix = prefix
    this.ttlMs = ttlMs
  }

  private nodesKey (conv: string): string { return `${this.prefix}presence-nodes:${conv}` }
  private key (conv: string, node: string): string { return `${this.prefix}presence:${conv}:${node}` }
  private aliveKey (node: string): string { return `${this.prefix}presence-node:${node}` }

  async tick (node: string, tick: BoardTick): Promise<BoardTickResult> {
    if (this.redis.status !== 'ready') throw new Error('Redis is not connected')
    const ttl = this.ttlMs
    const m = this.redis.multi()
    m.set(this.aliveKey(node), String(tick.version), 'PX', ttl)
    // Which replies say whether a record still existed, and which whether a node is alive.
    const probes: Array<{ at: number, conv: string }> = []
    let n = 1
    for (const [conv, change] of tick.changes) {
      const key = this.key(conv, node)
      if (change.full) {
        m.del(key)
        n++
      } else {
        // Before the writes: 0 means the record expired meanwhile (what is written now is partial).
        m.pexpire(key, ttl)
        probes.push({ at: n++, conv })
      }
      const { set, del } = recordFields(tick.version, change)
      if (del.length > 0) { m.hdel(key, ...del); n++ }
      m.hset(key, ...set)
      m.pexpire(key, ttl)
      m.sadd(this.nodesKey(conv), node)
      m.pexpire(this.nodesKey(conv), ttl)
      n += 4
    }
    for (const conv of tick.renew) {
      m.pexpire(this.key(conv, node), ttl)
      probes.push({ at: n++, conv })
      m.pexpire(this.nodesKey(conv), ttl)
      n++
    }
    for (const conv of tick.withdraw) {
      m.del(this.key(conv, node))
      m.srem(this.nodesKey(conv), node)
      n += 2
    }
    const watchAt = n
    for (const other of tick.watch) m.exists(this.aliveKey(other))
    const replies = await m.exec()
    if (replies === null) throw new Error('presence tick aborted')
    const failed = replies.find(([err]) => err !== null)
    if (failed !== undefined) throw failed[0] as Error
    const expired = probes.filter(p => replies[p.at][1] === 0).map(p => p.conv)
    const dead = tick.watch.filter((_, i) => replies[watchAt + i][1] === 0)
    return { expired, dead }
  }

  async read (node: string, convs: readonly string[]): Promise<Map<string, Map<string, NodeRecord>>> {
    const out = new Map<string, Map<string, NodeRecord>>()
    if (convs.length === 0) return out
    if (this.redis.status !== 'ready') throw new Error('Redis is not connected')
    const members = this.redis.pipeline()
    for (const conv of convs) members.smembers(this.nodesKey(conv))
    const memberReplies = await members.exec() ?? []
    const pairs: Array<{ conv: string, other: string }> = []
    for (const [i, conv] of convs.entries()) {
      const [err, list] = memberReplies[i] ?? [new Error('no reply'), null]
      if (err !== null) throw err
      for (const other of list as string[]) if (other !== node) pairs.push({ conv, other })
    }
    const hashes = this.redis.pipeline()
    for (const p of pairs) hashes.hgetall(this.key(p.conv, p.other))
    const hashReplies = pairs.length === 0 ? [] : await hashes.exec() ?? []
    const gone = this.redis.pipeline()
    for (const conv of convs) out.set(conv, new Map())
    for (const [i, p] of pairs.entries()) {
      const [err, hash] = hashReplies[i] ?? [new Error('no reply'), null]
      if (err !== null) throw err
      const record = parseRecord(hash as Record<string, string>)
      if (record !== null) out.get(p.conv)?.set(p.other, record)
      else if (Object.keys(hash as object).length === 0) gone.srem(this.nodesKey(p.conv), p.other) // expired: that node stopped
    }
    if (gone.length > 0) await gone.exec()
    return out
  }

  async withdrawAll (node: string, convs: readonly string[]): Promise<void> {
    if (this.redis.status !== 'ready') return
    const m = this.redis.multi()
    m.del(this.aliveKey(node))
    for (const conv of convs) {
      m.del(this.key(conv, node))
      m.srem(this.nodesKey(conv), node)
    }
    await m.exec()
  }

  async close (): Promise<void> {
    await this.redis.quit().catch(() => {})
  }
}
