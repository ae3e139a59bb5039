/**
 * What a cluster benchmark runs against, each as real `parley` child processes on 127.0.0.1:
 *
 *   cluster  N nodes sharing one PostgreSQL schema of their own and the machine's Redis
 *            (`--postgres <schema url> --redis <url>`), as test/helpers/cluster.ts starts them;
 *   pg       one node on PostgreSQL (a schema of its own), no Redis;
 *   level    one node on its LevelDB folder (the embedded default).
 *
 * The schema comes from test/helpers/postgres.ts (`parley_test_<random>`); the Redis keys and
 * channels are named `parley:<cluster id>:…` by the server, the cluster id being made by the
 * first node and kept in that schema, so a run never hears another. `stop()` ends every node,
 * deletes the cluster's Redis keys and drops the schema.
 */
import { Redis } from 'ioredis'
import { createTestSchema, PG_URL, type TestSchema } from '../../test/helpers/postgres.ts'
import { REDIS_URL } from '../../test/helpers/redis.ts'
import { readProc } from './proc.ts'
import { randomSecret, startParley, type ServerUnderTest } from './servers.ts'

export type DeploymentKind = 'cluster' | 'pg' | 'level'
export const DEPLOYMENT_KINDS: readonly DeploymentKind[] = ['cluster', 'pg', 'level']

export interface Deployment {
  kind: DeploymentKind
  nodes: ServerUnderTest[]
  secret: string
  /** The schema (cluster, pg), or null (level). */
  schema: TestSchema | null
  /** The Redis prefix of the cluster's channels and keys (`parley:<cluster id>:`), or null. */
  redisPrefix: string | null
  /** CPU seconds (user + system) of every node process, summed. */
  nodeCpu (): number
  /** CPU seconds of the PostgreSQL backends serving this deployment's schema now, by pid. */
  pgBackendCpu (): Promise<Map<number, number>>
  /** Resident memory of every node, summed (bytes). */
  rss (): number
  /** Ends every node, deletes the cluster's Redis keys and drops the schema; resolves to the number of keys deleted. */
  stop (): Promise<number>
}

export interface DeployOptions {
  nodes?: number
  nodeFlags?: string[]
}

/** Whether PostgreSQL and Redis answer (a cluster benchmark needs both). */
export const enginesReachable = async (): Promise<string | null> => {
  try {
    const schema = await createTestSchema()
    await schema.drop()
  } catch (e) {
    return `PostgreSQL at ${new URL(PG_URL).host} unreachable: ${(e as Error).message}`
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    await redis.ping()
  } catch (e) {
    return `Redis at ${new URL(REDIS_URL).host} unreachable: ${(e as Error).message}`
  } finally {
    redis.disconnect()
  }
  return null
}

/** Deletes every key under `prefix` (SCAN, never KEYS: the Redis is shared). */
const deleteKeys = async (prefix: string): Promise<number> => {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  let deleted = 0
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      cursor = next
      if (keys.length > 0) deleted += await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
  return deleted
}

export const deploy = async (kind: DeploymentKind, opts: DeployOptions = {}): Promise<Deployment> => {
  const count = kind === 'cluster' ? (opts.nodes ?? 3) : 1
  const secret = randomSecret()
  const schema = kind === 'level' ? null : await createTestSchema()
  const nodes: ServerUnderTest[] = []
  const start = async (): Promise<ServerUnderTest> => {
    const node = await startParley({
      secret,
      nodeFlags: opts.nodeFlags,
      postgres: schema?.url,
      redis: kind === 'cluster' ? REDIS_URL : undefined
    })
    nodes.push(node)
    return node
  }
  let redisPrefix: string | null = null
  try {
    // The first node creates the tables and the cluster id; the others start together.
    await start()
    await Promise.all(Array.from({ length: count - 1 }, async () => await start()))
    if (kind === 'cluster' && schema !== null) {
      const rows = await schema.admin`SELECT value FROM ${schema.admin(schema.schema)}.meta WHERE name = 'cluster'`
      const id = rows[0]?.value
      if (typeof id !== 'string') throw new Error('no cluster id in the schema after the nodes started')
      redisPrefix = `parley:${id}:`
    }
  } catch (e) {
    await Promise.all(nodes.map(async n => await n.stop(1000)))
    await schema?.drop()
    throw e
  }
  const appName = schema === null ? null : `parley ${schema.schema}`.slice(0, 63)
  return {
    kind,
    nodes,
    secret,
    schema,
    redisPrefix,
    nodeCpu: () => nodes.reduce((sum, n) => sum + (n.alive() ? readProc(n.pid).cpuSeconds : 0), 0),
    async pgBackendCpu () {
      const out = new Map<number, number>()
      if (schema === null) return out
      const rows = await schema.admin`SELECT pid FROM pg_stat_activity WHERE application_name = ${appName}`
      for (const { pid } of rows) {
        try { out.set(Number(pid), readProc(Number(pid)).cpuSeconds) } catch { /* it ended meanwhile */ }
      }
      return out
    },
    rss: () => nodes.reduce((sum, n) => sum + (n.alive() ? readProc(n.pid).rssBytes : 0), 0),
    async stop () {
      await Promise.all(nodes.map(async n => await n.stop()))
      const deleted = redisPrefix === null ? 0 : await deleteKeys(redisPrefix).catch(() => 0)
      await schema?.drop()
      return deleted
    }
  }
}

/** CPU of a deployment's nodes (and its PostgreSQL backends) between `start()` and `elapsed()`. */
export class DeploymentCpu {
  #nodes = 0
  #pg = new Map<number, number>()
  constructor (private readonly d: Deployment) {}

  async start (): Promise<void> {
    this.#nodes = this.d.nodeCpu()
    this.#pg = await this.d.pgBackendCpu().catch(() => new Map())
  }

  /** Node CPU-s and PostgreSQL-backend CPU-s since `start()` (backends that ended meanwhile are not counted). */
  async elapsed (): Promise<{ nodes: number, pg: number }> {
    const nodes = this.d.nodeCpu() - this.#nodes
    const now = await this.d.pgBackendCpu().catch(() => new Map<number, number>())
    let pg = 0
    for (const [pid, cpu] of now) pg += cpu - (this.#pg.get(pid) ?? 0)
    return { nodes, pg }
  }
}
