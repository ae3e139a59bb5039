/**
 * A cluster for tests: several real `parley` processes on port 0 sharing one PostgreSQL schema
 * (its own per test) and the machine's Redis (the channels are named after the cluster id kept
 * in that schema, so test runs never hear each other). `stop()` ends every node and drops the
 * schema.
 */
import * as assert from 'uvu/assert'
import { spawnServer, type RunningServer } from './process.ts'
import { createTestSchema, type TestSchema } from './postgres.ts'
import { REDIS_URL } from './redis.ts'
import { signToken } from './burst.ts'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts'

export const CLUSTER_SECRET = 'cluster-secret-0123456789'

export interface TestCluster {
  schema: TestSchema
  nodes: RunningServer[]
  /** Starts one more node of the same cluster (reaching Redis or PostgreSQL at another URL, e.g. through a proxy). */
  spawn (via?: { redis?: string, postgres?: string }): Promise<RunningServer>
  token (userId: string): Promise<string>
  /** A REST call as admin on `node`, JSON in and out. */
  api (node: RunningServer, method: string, path: string, body?: unknown): Promise<{ status: number, body: any }>
  stop (): Promise<void>
}

/**
 * `opts.redis`: the Redis every node uses unless told otherwise (default: the machine's);
 * `opts.env`: extra environment of every node (e.g. `PARLEY_PRESENCE_TTL_MS`).
 */
export const startCluster = async (count: number, opts: { redis?: string, env?: Record<string, string> } = {}): Promise<TestCluster> => {
  const schema = await createTestSchema()
  const nodes: RunningServer[] = []
  const spawn = async (via: { redis?: string, postgres?: string } = {}): Promise<RunningServer> => {
    const node = await spawnServer(['--port', '0', '--postgres', via.postgres ?? schema.url, '--redis', via.redis ?? opts.redis ?? REDIS_URL, '--secret', CLUSTER_SECRET, '--demo', 'off'], opts.env ?? {})
    nodes.push(node)
    return node
  }
  try {
    // The first node creates the tables and the cluster id; the others start together.
    await spawn()
    await Promise.all(Array.from({ length: count - 1 }, async () => await spawn()))
  } catch (e) {
    for (const n of nodes) n.child.kill('SIGKILL')
    await schema.drop()
    throw e
  }
  return {
    schema,
    nodes,
    spawn,
    token: async userId => await signToken(CLUSTER_SECRET, userId),
    async api (node, method, path, body) {
      const res = await fetch(node.url + path, {
        method,
        headers: { authorization: `Bearer ${CLUSTER_SECRET}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body)
      })
      const text = await res.text()
      return { status: res.status, body: text === '' ? null : JSON.parse(text) }
    },
    async stop () {
      await Promise.all(nodes.map(async n => {
        if (n.child.exitCode !== null || n.child.signalCode !== null) return
        n.child.kill('SIGTERM')
        const exit = await n.exited
        assert.equal(exit, { code: 0, signal: null }, n.output())
      }))
      await schema.drop()
    }
  }
}

/**
 * Two nodes: A on the machine's Redis, B reaching it through a proxy the test cuts
 * (`proxy.stop()`) and restores (`proxy.start()`). `stop()` restores the proxy, stops the
 * cluster and then the proxy.
 */
export const startClusterWithCuttableRedis = async (): Promise<{ cluster: TestCluster, a: RunningServer, b: RunningServer, proxy: TcpProxy, stop: () => Promise<void> }> => {
  const cluster = await startCluster(1)
  const redis = new URL(REDIS_URL)
  const proxy = await startTcpProxy(Number(redis.port || 6379), redis.hostname)
  const stop = async (): Promise<void> => {
    await proxy.start()
    await cluster.stop()
    await proxy.stop()
  }
  try {
    const b = await cluster.spawn({ redis: `redis://127.0.0.1:${proxy.port}` })
    return { cluster, a: cluster.nodes[0], b, proxy, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
