/**
 * The cross-node hop probe: a child process of its own (so its arrival times are not delayed by
 * the generator's thousands of guest sockets) holding
 *
 *   - one participant connection per node (a light client, awareness echo off), connected
 *     before the guests, so it is among the first of its node's fan-out;
 *   - optionally a Redis subscriber on the cluster's `commit` channel (what a node announces
 *     right after its commit).
 *
 * It stamps the first arrival of every benchmark message (`#bm<seq>@<send time>#`) on each,
 * with the epoch clock (the same clock as the send time in the marker, across processes).
 *
 * Protocol over IPC (`process.send`):
 *   parent → probe  { type: 'start', nodes: [{ url }], redis?: { url, channel, conv }, messages }
 *   probe → parent  { type: 'ready' } | { type: 'error', message }
 *   parent → probe  { type: 'report' }
 *   probe → parent  { type: 'report', send: number[], nodes: number[][], redis: number[] }
 *                   (epoch ms per message seq; NaN when never seen)
 *   parent → probe  { type: 'stop' }  (the probe closes everything and exits)
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { LightClient, randomClientId } from './light-client.ts'
import { forEachMarker } from './markers.ts'
import { epochNow, waitUntil } from './timing.ts'

export interface ProbeStart {
  type: 'start'
  /** Full sync URLs (`ws://…/<room>?token=…`), one per node. */
  nodes: string[]
  redis?: { url: string, channel: string, conv: string }
  messages: number
}

export interface ProbeReport {
  type: 'report'
  /** Send time of each message (from its marker), epoch ms. */
  send: number[]
  /** Per node: first arrival of each message, epoch ms. */
  nodes: number[][]
  /** First arrival of each message's commit announcement on Redis, epoch ms. */
  redis: number[]
}

const runProbe = (): void => {
  const clients: LightClient[] = []
  let sub: Redis | null = null
  let send: Float64Array = new Float64Array(0)
  let arrivals: Float64Array[] = []
  let redisArrivals: Float64Array = new Float64Array(0)
  const reply = (m: unknown): void => { process.send?.(m) }

  /** Stamps the first arrival (`at`, epoch ms) of each marker in `bytes` into `into`. */
  const record = (bytes: Buffer, at: number, into: Float64Array): void => {
    forEachMarker(bytes, (seq, sentAt) => {
      if (seq >= into.length || !Number.isNaN(into[seq])) return
      into[seq] = at
      if (Number.isNaN(send[seq])) send[seq] = sentAt
    })
  }

  process.on('message', (msg: { type: string } & Partial<ProbeStart>) => {
    if (msg.type === 'start') {
      const start = msg as ProbeStart
      const n = start.messages
      send = new Float64Array(n).fill(Number.NaN)
      redisArrivals = new Float64Array(n).fill(Number.NaN)
      const taken = new Set<number>()
      arrivals = start.nodes.map(() => new Float64Array(n).fill(Number.NaN))
      for (const [i, url] of start.nodes.entries()) {
        const into = arrivals[i]
        clients.push(new LightClient({
          url,
          clientId: randomClientId(taken),
          state: { user: { name: `probe-${i}` } },
          echo: false,
          onSync: (_c, frame) => { record(frame, epochNow(), into) }
        }))
      }
      void (async () => {
        try {
          if (start.redis !== undefined) {
            const { conv, channel } = start.redis
            sub = new Redis(start.redis.url, { maxRetriesPerRequest: 1 })
            sub.on('error', () => {})
            sub.on('message', (_channel: string, message: string) => {
              const at = epochNow()
              let m: { c?: unknown, u?: unknown }
              try { m = JSON.parse(message) } catch { return }
              if (m.c !== conv || typeof m.u !== 'string') return
              record(Buffer.from(m.u, 'base64'), at, redisArrivals)
            })
            await sub.subscribe(channel)
          }
          await Promise.all(clients.map(async c => { await c.connect() }))
          if (await waitUntil(() => clients.every(c => c.synced), 20_000) === null) throw new Error('a probe connection did not sync within 20 s')
          reply({ type: 'ready' })
        } catch (e) {
          reply({ type: 'error', message: (e as Error).message })
        }
      })()
    } else if (msg.type === 'report') {
      const report: ProbeReport = { type: 'report', send: [...send], nodes: arrivals.map(a => [...a]), redis: [...redisArrivals] }
      reply(report)
    } else if (msg.type === 'stop') {
      for (const c of clients) c.close()
      sub?.disconnect()
      setTimeout(() => process.exit(0), 100)
    }
  })
  process.on('disconnect', () => process.exit(0))
}

/** The parent's handle on a probe process. */
export interface Probe {
  pid: number
  report (): Promise<ProbeReport>
  stop (): Promise<void>
}

export const startProbe = async (start: Omit<ProbeStart, 'type'>, capMs = 30_000): Promise<Probe> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--probe'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const next = async <T>(type: string): Promise<T> => await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`the hop probe did not answer ${type} within ${capMs} ms`)) }, capMs)
    const onMessage = (m: { type: string, message?: string }): void => {
      if (m.type === type) { cleanup(); resolve(m as T) } else if (m.type === 'error') { cleanup(); reject(new Error(`hop probe: ${m.message ?? ''}`)) }
    }
    const onExit = (): void => { cleanup(); reject(new Error('the hop probe exited')) }
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
  const ready = next<{ type: 'ready' }>('ready')
  child.send({ type: 'start', ...start })
  try {
    await ready
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
  return {
    pid: child.pid ?? 0,
    async report () {
      const r = next<ProbeReport>('report')
      child.send({ type: 'report' })
      return await r
    },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.send({ type: 'stop' })
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(timer)
      }
    }
  }
}

if (process.argv.includes('--probe') && process.send !== undefined) runProbe()
