/**
 * Abuse benchmark (issue 13, "Proof"): a room of N guests (LightClients), a supervisor and a
 * writer, run twice on a fresh Parley each time: clean, and with abusers. Loopback only.
 *
 *   node --import tsx bench/abuse.ts [--guests 2000] [--messages 100] [--rate 5] [--idlers 50]
 *     [--window 30] [--concurrency 100] [--json FILE]
 *
 * Each run: `window` messages of 9,900 characters are posted first (so every sync step 1 is
 * answered with ~`window` × 10 KB); the guests join; then the writer sends `messages` at `rate`/s
 * while, in the abusive run:
 *   - a flooder (a stock provider, guest user `flooder`) pushes one message every 10 ms and
 *     reconnects (new socket) whenever it is closed;
 *   - `idlers` sockets of user `idler` never read (socket paused) and send 60 sync step 1s at
 *     open and one more a second; when the server cuts one, it reconnects.
 * Reported: other guests' fan-out p50/p99 of the writer's messages, server RSS (peak and at the
 * end of the message phase), the flooder's stored messages vs its allowance
 * (burst + perSecond × seconds it flooded), and how often abusers were cut.
 */
import { parseArgs } from 'node:util'
import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { LightClient, randomClientId } from './lib/light-client.ts'
import { readProc } from './lib/proc.ts'
import { api, startParley, type ServerUnderTest } from './lib/servers.ts'
import { Samples } from './lib/stats.ts'
import { connectStockPeer, type StockPeer } from './lib/stock-peer.ts'
import { fmt, markdownTable, mib } from './lib/table.ts'
import { paced, runBounded, sleep, waitUntil } from './lib/timing.ts'
import { signUserToken } from './lib/tokens.ts'
import { markerText, readMarkers } from './lib/markers.ts'
import { EMPTY_DOC_STEP1 } from './lib/wire.ts'
import { DEFAULT_SETTINGS } from '../shared/settings.ts'

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    guests: { type: 'string', default: '2000' },
    messages: { type: 'string', default: '100' },
    rate: { type: 'string', default: '5' },
    idlers: { type: 'string', default: '50' },
    window: { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '100' },
    json: { type: 'string' }
  },
  strict: true
})
const opts = {
  guests: Number(values.guests),
  messages: Number(values.messages),
  rate: Number(values.rate),
  idlers: Number(values.idlers),
  window: Number(values.window),
  concurrency: Number(values.concurrency)
}
for (const [k, v] of Object.entries(opts)) if (!Number.isInteger(v) || v < 0 || v > 20_000) throw new Error(`--${k} must be an integer from 0 to 20000`)

const ROOM = 'bench-abuse'
const WRITER = 'writer'
const SUPERVISOR = 'supervisor'
const JOIN_CAP_MS = 120_000
const DRAIN_CAP_MS = 15_000

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
// The stock provider warns on every refusal it receives (the flooder's 4429s): keep the report readable.
console.warn = () => {}

interface RunResult {
  abusive: boolean
  joinedMs: number | null
  fanout: { p50: number, p99: number, count: number }
  lost: number
  rssAfterJoin: number
  rssAfterMessages: number
  peakRss: number
  flooderStored: number
  flooderSent: number
  flooderAllowance: number
  flooderCloses: Record<string, number>
  idlerConnects: number
  idlerCloses: number
}

/** The flooder: a stock provider that pushes a message every 10 ms; reconnects when closed. */
const flood = (server: ServerUnderTest, until: () => boolean, result: RunResult): Promise<void> => (async () => {
  let seq = 0
  while (!until()) {
    let peer: StockPeer
    try {
      peer = await connectStockPeer(server.wsUrl, ROOM, 'flooder', { token: await signUserToken(server.secret, 'flooder'), guest: '1' }, 5000)
    } catch {
      continue
    }
    let closed = false
    peer.provider.on('connection-close', (e: CloseEvent | null) => {
      closed = true
      const code = String(e?.code ?? 'none')
      result.flooderCloses[code] = (result.flooderCloses[code] ?? 0) + 1
    })
    const arr = peer.doc.getArray<Record<string, unknown>>('messages')
    while (!closed && !until()) {
      arr.push([{ id: `fl-${seq}`, senderId: 'flooder', text: `flood ${seq} ${'f'.repeat(200)}`, createdAt: Date.now(), type: 'UserMessage' }])
      seq++
      result.flooderSent++
      await sleep(10)
    }
    peer.destroy()
  }
})()

/** One idle abuser socket: never reads, sends step 1s; reconnects when cut. */
const idle = (server: ServerUnderTest, token: string, until: () => boolean, result: RunResult): Promise<void> => (async () => {
  while (!until()) {
    result.idlerConnects++
    const ws = new WebSocket(`${server.wsUrl}/${ROOM}?guest=1&token=${token}`, { autoPong: false })
    ws.on('error', () => {})
    const closed = new Promise<void>(resolve => ws.once('close', () => resolve()))
    let isClosed = false
    void closed.then(() => { isClosed = true })
    await Promise.race([new Promise(resolve => ws.once('open', resolve)), closed])
    if (!isClosed) {
      (ws as unknown as { _socket: { pause (): void } })._socket.pause()
      for (let i = 0; i < 60; i++) ws.send(EMPTY_DOC_STEP1)
      while (!isClosed && !until()) {
        await sleep(1000)
        if (ws.readyState === ws.OPEN) ws.send(EMPTY_DOC_STEP1)
        // A paused socket does not notice the server's close: look at the writable side.
        if ((ws as unknown as { _socket: { destroyed: boolean, writableEnded: boolean } })._socket.destroyed) isClosed = true
      }
      if (isClosed) result.idlerCloses++
    }
    ws.terminate()
    await sleep(100)
  }
})()

const runOnce = async (abusive: boolean): Promise<RunResult> => {
  const server = await startParley()
  const guests: LightClient[] = []
  const peers: StockPeer[] = []
  const result: RunResult = {
    abusive, joinedMs: null, fanout: { p50: 0, p99: 0, count: 0 }, lost: 0, rssAfterJoin: 0, rssAfterMessages: 0, peakRss: 0,
    flooderStored: 0, flooderSent: 0, flooderAllowance: 0, flooderCloses: {}, idlerConnects: 0, idlerCloses: 0
  }
  const renewal = setInterval(() => {
    const now = performance.now()
    for (const g of guests) g.renewIfDue(now, 15_000)
  }, 200)
  try {
    const res = await api(server.url, server.secret, 'PUT', `/v1/conversations/${ROOM}`, { subject: 'abuse', participants: [WRITER, SUPERVISOR] })
    if (res.status !== 201) throw new Error(`creating the conversation: HTTP ${res.status}`)
    const big = 'w'.repeat(9900)
    for (let i = 0; i < opts.window; i += 10) {
      await api(server.url, server.secret, 'POST', `/v1/conversations/${ROOM}/messages`, Array.from({ length: Math.min(10, opts.window - i) }, () => ({ text: big, type: 'SystemMessage' })))
    }
    const supervisor = await connectStockPeer(server.wsUrl, ROOM, SUPERVISOR, { token: await signUserToken(server.secret, SUPERVISOR) })
    peers.push(supervisor)
    const writer = await connectStockPeer(server.wsUrl, ROOM, WRITER, { token: await signUserToken(server.secret, WRITER) })
    peers.push(writer)

    const latencies = new Samples(opts.guests * opts.messages)
    const counts = new Uint32Array(opts.guests)
    const taken = new Set<number>([supervisor.doc.clientID, writer.doc.clientID])
    for (let i = 0; i < opts.guests; i++) {
      const got = new Uint8Array(opts.messages)
      guests.push(new LightClient({
        url: `${server.wsUrl}/${ROOM}?guest=1&token=${await signUserToken(server.secret, `guest-${i}`)}`,
        clientId: randomClientId(taken),
        state: { user: { name: `guest-${i}` } },
        echo: true,
        watchUser: WRITER,
        onSync: (_client, frame, receivedAt) => {
          readMarkers(frame, performance.timeOrigin + receivedAt, got, latency => {
            counts[i]++
            latencies.push(latency)
          })
        }
      }))
    }
    log(`  ${abusive ? 'abusive' : 'clean'}: join of ${opts.guests} guests`)
    const joinStart = performance.now()
    void runBounded(opts.guests, opts.concurrency, async i => { await guests[i].connect() })
    result.joinedMs = await waitUntil(() => guests.every(g => g.synced && g.seenWatched), JOIN_CAP_MS, 50)
    log(`  joined: ${result.joinedMs === null ? 'not all within the cap' : `${((performance.now() - joinStart) / 1000).toFixed(1)} s`}`)
    await sleep(3000)
    result.rssAfterJoin = readProc(server.pid).rssBytes

    let done = false
    const abusers: Array<Promise<void>> = []
    const floodStart = performance.now()
    if (abusive) {
      abusers.push(flood(server, () => done, result))
      const idlerToken = await signUserToken(server.secret, 'idler')
      for (let k = 0; k < opts.idlers; k++) abusers.push(idle(server, idlerToken, () => done, result))
      await sleep(2000) // the abusers are at it before the measured messages start
    }
    log(`  ${opts.messages} messages at ${opts.rate}/s`)
    const messages = writer.doc.getArray<Record<string, unknown>>('messages')
    await paced(opts.messages, opts.rate, i => {
      messages.push([{ id: `bm-${i}`, senderId: WRITER, text: markerText(i), createdAt: Date.now(), type: 'UserMessage' }])
    })
    await waitUntil(() => latencies.length >= opts.guests * opts.messages, DRAIN_CAP_MS, 50)
    result.rssAfterMessages = readProc(server.pid).rssBytes
    done = true
    const floodSeconds = (performance.now() - floodStart) / 1000
    await Promise.all(abusers)
    await sleep(500)
    const s = latencies.summary()
    result.fanout = { p50: s.p50, p99: s.p99, count: s.count }
    result.lost = opts.guests * opts.messages - s.count
    result.peakRss = readProc(server.pid).peakRssBytes
    result.flooderStored = supervisor.doc.getArray<{ senderId: string }>('messages').toArray().filter(m => m.senderId === 'flooder').length
    const { burst, perSecond } = DEFAULT_SETTINGS.messageRate
    result.flooderAllowance = abusive ? Math.floor(burst + perSecond * floodSeconds) : 0
    log(`  fan-out p50 ${fmt(s.p50)} ms p99 ${fmt(s.p99)} ms, lost ${result.lost}, RSS ${mib(result.rssAfterMessages)} MiB (peak ${mib(result.peakRss)}), flooder stored ${result.flooderStored}/${result.flooderAllowance} of ${result.flooderSent} sent`)
    return result
  } finally {
    clearInterval(renewal)
    for (const g of guests) g.close()
    for (const p of peers) p.destroy()
    await server.stop()
  }
}

const main = async (): Promise<void> => {
  log(`abuse: ${opts.guests} guests, ${opts.messages} messages at ${opts.rate}/s, ${opts.idlers} idle abusers, window ${opts.window} × 9,900 chars`)
  const clean = await runOnce(false)
  const abusive = await runOnce(true)
  if (values.json !== undefined) await writeFile(values.json, JSON.stringify({ opts, clean, abusive }, null, 2))
  const ratio = (a: number, b: number): string => b === 0 ? '–' : `${(a / b).toFixed(2)}×`
  const rows = [
    ['other guests: fan-out p50 / p99 (ms)', `${fmt(clean.fanout.p50)} / ${fmt(clean.fanout.p99)}`, `${fmt(abusive.fanout.p50)} / ${fmt(abusive.fanout.p99)}`, `p99 ${ratio(abusive.fanout.p99, clean.fanout.p99)} (target ≤ 2×)`],
    ['writer messages missing after the drain', String(clean.lost), String(abusive.lost), ''],
    ['server RSS after join (MiB)', mib(clean.rssAfterJoin), mib(abusive.rssAfterJoin), ''],
    ['server RSS after the messages / peak (MiB)', `${mib(clean.rssAfterMessages)} / ${mib(clean.peakRss)}`, `${mib(abusive.rssAfterMessages)} / ${mib(abusive.peakRss)}`, `peak +${mib(abusive.peakRss - clean.peakRss)} MiB (target ≤ 200)`],
    ['flooder: messages sent / stored / allowance', '–', `${abusive.flooderSent} / ${abusive.flooderStored} / ${abusive.flooderAllowance}`, abusive.flooderStored <= abusive.flooderAllowance ? 'within' : 'OVER'],
    ['flooder: closes by code', '–', Object.entries(abusive.flooderCloses).map(([c, n]) => `${c}×${n}`).join(', '), ''],
    ['idle abusers: sockets opened / cut by the server', '–', `${abusive.idlerConnects} / ${abusive.idlerCloses}`, '']
  ]
  process.stdout.write(`${markdownTable(['', 'clean', 'with abusers', ''], rows, ['left', 'right', 'right', 'left'])}\n`)
  process.exit(0)
}

await main()
