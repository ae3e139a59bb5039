/**
 * Many rooms (a benchmark, never a test): 1,000 conversations with 5 peers each, one writer per
 * conversation, 500 messages per second in all, over the stock protocol with presence on.
 * Prints server CPU, peak memory and delivery latency (p50/p99), side by side with the
 * reference @y/websocket-server 0.1.1, both as child processes on 127.0.0.1.
 *
 *   node --import tsx bench/many-rooms.ts [--rooms 1000] [--peers 5] [--rate 500] [--seconds 20]
 *                                        [--servers parley,reference] [--profile DIR]
 */
import * as Y from 'yjs'
import WebSocket from 'ws'
import { messagesOf } from '../shared/doc.ts'
import { encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate, readMessage } from '../shared/protocol.ts'
import { LightClient, randomClientId } from './lib/light-client.ts'
import { readProc, CpuMeter } from './lib/proc.ts'
import { api, signUserToken, startServer, type ServerKind, type ServerUnderTest } from './lib/servers.ts'
import { Samples } from './lib/stats.ts'
import { markdownTable, fmt, mib } from './lib/table.ts'
import { runBounded, sleep, waitUntil, epochNow } from './lib/timing.ts'

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback
}
const ROOMS = Number(arg('rooms', '1000'))
const PEERS = Number(arg('peers', '5'))
const RATE = Number(arg('rate', '500'))
const SECONDS = Number(arg('seconds', '20'))
const SERVERS = arg('servers', 'parley,reference').split(',') as ServerKind[]
const PROFILE = arg('profile', '')
const MARK = Buffer.from('@@t=')

/** A writer: a real Y.Doc whose updates go to the server as sync update frames. */
class Writer {
  readonly doc = new Y.Doc()
  readonly ws: WebSocket
  readonly opened: Promise<void>
  synced = false
  private seq = 0

  constructor (url: string, private readonly userId: string) {
    this.ws = new WebSocket(url)
    this.ws.on('error', () => {})
    this.opened = new Promise(resolve => this.ws.once('open', () => resolve()))
    this.doc.on('update', (u: Uint8Array, origin: unknown) => {
      if (origin !== 'remote' && this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeSyncUpdate(u))
    })
    this.ws.on('message', (data: Buffer) => {
      let msg
      try { msg = readMessage(new Uint8Array(data)) } catch { return }
      if (msg.type !== 'sync') return
      if (msg.subtype === 'step1') this.ws.send(encodeSyncStep2(Y.encodeStateAsUpdate(this.doc, msg.stateVector)))
      else { Y.applyUpdate(this.doc, msg.update, 'remote'); if (msg.subtype === 'step2') this.synced = true }
    })
    void this.opened.then(() => this.ws.send(encodeSyncStep1(Y.encodeStateVector(this.doc))))
  }

  send (): void {
    const now = epochNow()
    messagesOf(this.doc).push([{ id: `${this.userId}-${this.seq++}`, senderId: this.userId, text: `@@t=${now.toFixed(3)};`, createdAt: Math.floor(now), type: 'UserMessage' }])
  }
}

interface Result { kind: ServerKind, joinS: number, cpuJoin: number, cpuRun: number, sent: number, received: number, expected: number, p50: number, p99: number, peakRss: number, genCpu: number }

const runOne = async (kind: ServerKind): Promise<Result> => {
  const nodeFlags = kind === 'parley' && PROFILE !== '' ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : []
  const server: ServerUnderTest = await startServer(kind, { env: { PARLEY_LOG_LEVEL: 'warn' }, nodeFlags })
  try {
    const latencies = new Samples(1 << 16)
    let received = 0
    const taken = new Set<number>()
    if (kind === 'parley') {
      await runBounded(ROOMS, 16, async r => {
        const participants = Array.from({ length: PEERS }, (_, p) => `u${r}-${p}`)
        const res = await api(server.url, server.secret, 'PUT', `/v1/conversations/room${r}`, { participants })
        if (res.status !== 201) throw new Error(`create room${r}: ${res.status}`)
      })
    }
    const cpu = CpuMeter.forPid(server.pid)
    const genCpu = CpuMeter.forSelf()
    cpu.start()
    const t0 = performance.now()
    const writers: Writer[] = []
    const readers: LightClient[] = []
    await runBounded(ROOMS, 32, async r => {
      const url = async (p: number): Promise<string> => {
        const token = kind === 'parley' ? await signUserToken(server.secret, `u${r}-${p}`) : 'x'
        return `${server.wsUrl}/room${r}?token=${token}`
      }
      const w = new Writer(await url(0), `u${r}-0`)
      writers.push(w)
      for (let p = 1; p < PEERS; p++) {
        const c = new LightClient({
          url: await url(p),
          clientId: randomClientId(taken),
          state: { user: { name: `u${r}-${p}` } },
          echo: true,
          onSync: (_client, frame, at) => {
            let i = frame.indexOf(MARK)
            while (i >= 0) {
              const end = frame.indexOf(0x3b, i)
              const sentAt = Number(frame.toString('latin1', i + MARK.length, end))
              if (Number.isFinite(sentAt)) { latencies.push(performance.timeOrigin + at - sentAt); received++ }
              i = frame.indexOf(MARK, end)
            }
          }
        })
        readers.push(c)
        await c.connect()
      }
      await w.opened
    })
    const joined = await waitUntil(() => writers.every(w => w.synced) && readers.every(c => c.synced), 60_000)
    const joinS = joined === null ? NaN : (performance.now() - t0) / 1000
    const cpuJoin = cpu.elapsed()
    await sleep(500)
    const base = received
    cpu.start()
    genCpu.start()
    const total = RATE * SECONDS
    const interval = 1000 / RATE
    const start = performance.now()
    let sent = 0
    while (sent < total) {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1)
      while (sent < due) { writers[sent % writers.length].send(); sent++ }
      const renewNow = performance.now()
      for (let i = sent % 50; i < readers.length; i += 50) readers[i].renewIfDue(renewNow, 15_000)
      await sleep(Math.max(0, interval * (sent + 1) - (performance.now() - start)))
    }
    const expected = total * (PEERS - 1)
    await waitUntil(() => received - base >= expected, 10_000)
    const cpuRun = cpu.elapsed()
    const values = latencies.values().slice(base).sort()
    const pick = (p: number): number => values.length === 0 ? NaN : values[Math.min(values.length - 1, Math.floor(p * values.length))]
    const peakRss = readProc(server.pid).peakRssBytes
    for (const c of readers) c.close()
    for (const w of writers) w.ws.close()
    return { kind, joinS, cpuJoin, cpuRun, sent, received: received - base, expected, p50: pick(0.5), p99: pick(0.99), peakRss, genCpu: genCpu.elapsed() }
  } finally {
    await server.stop()
  }
}

const main = async (): Promise<void> => {
  console.log(`many rooms: ${ROOMS} conversations × ${PEERS} peers (1 writer, presence on), ${RATE} messages/s for ${SECONDS} s`)
  const results: Result[] = []
  for (const kind of SERVERS) {
    results.push(await runOne(kind))
    await sleep(1000)
  }
  console.log(markdownTable(
    ['server', 'all joined (s)', 'server CPU-s joining', 'server CPU-s sending', 'server cores while sending', 'delivered', 'p50 ms', 'p99 ms', 'peak RSS MiB', 'generator CPU-s'],
    results.map(r => [r.kind, fmt(r.joinS), fmt(r.cpuJoin), fmt(r.cpuRun), fmt(r.cpuRun / SECONDS, 2), `${r.received}/${r.expected}`, fmt(r.p50), fmt(r.p99), mib(r.peakRss), fmt(r.genCpu)])))
}

await main()
