/**
 * Guest-scale benchmark (issue 3, "Scale"): N presence-on guests, one supervisor and one writer
 * in one conversation, against Parley and the reference @y/websocket-server 0.1.1, each run as
 * a child process started fresh for every N, measured in the same run.
 *
 *   node --import tsx bench/guests.ts [--guests 500,1000,2000] [--messages 100] [--rate 5]
 *     [--servers parley,reference] [--echo on|off] [--join-cap 60] [--drain-cap 10]
 *     [--concurrency 100] [--profile DIR] [--json FILE]
 *
 * Phases, each bounded:
 *   join        guests connect (at most `concurrency` handshakes in flight); joined = synced
 *               (sync step 2 received) and the writer's presence seen. Capped at `join-cap` s.
 *               Server CPU is counted from the first connect until every guest joined (or the cap).
 *   tail        the 5 s after the join, nothing new happening (renewals come 15 to 18 s after
 *               a join): what the server still spends on the join.
 *   messages    the writer (a stock WebsocketProvider) appends `messages` messages at `rate`/s;
 *               each text carries its sequence number and send time. Latency = receipt by each
 *               guest minus send time. Waits for every guest to hold every message, at most
 *               `drain-cap` s after the last send; what is missing then counts as lost.
 *   disconnect  every guest closes at once (1001, like a closed tab); measures the time until
 *               the supervisor (a stock provider) sees no guest presence, and server CPU until
 *               the server went quiet (capped at 60 s).
 */
import { parseArgs } from 'node:util'
import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { LightClient, randomClientId } from './lib/light-client.ts'
import { CpuMeter, readProc, waitQuiet } from './lib/proc.ts'
import { api, startServer, type ServerKind, type ServerUnderTest } from './lib/servers.ts'
import { Samples, summarize } from './lib/stats.ts'
import { connectStockPeer, stateUserName, type StockPeer } from './lib/stock-peer.ts'
import { fmt, markdownTable, mib } from './lib/table.ts'
import { paced, runBounded, sleep, waitUntil } from './lib/timing.ts'
import { signUserToken } from './lib/tokens.ts'
import { markerText, readMarkers } from './lib/markers.ts'
import { positive } from './lib/options.ts'

interface Options {
  guests: number[]
  messages: number
  rate: number
  servers: ServerKind[]
  echo: boolean
  joinCapMs: number
  drainCapMs: number
  concurrency: number
  profileDir: string | undefined
  jsonFile: string | undefined
}

const parseOptions = (argv: string[]): Options => {
  const { values } = parseArgs({
    args: argv,
    options: {
      guests: { type: 'string', default: '500,1000,2000' },
      messages: { type: 'string', default: '100' },
      rate: { type: 'string', default: '5' },
      servers: { type: 'string', default: 'parley,reference' },
      echo: { type: 'string', default: 'on' },
      'join-cap': { type: 'string', default: '60' },
      'drain-cap': { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '100' },
      profile: { type: 'string' },
      json: { type: 'string' }
    },
    strict: true,
    allowPositionals: false
  })
  const servers = values.servers.split(',').map(s => s.trim()).filter(s => s !== '')
  for (const s of servers) if (s !== 'parley' && s !== 'reference') throw new Error(`--servers: unknown server ${JSON.stringify(s)}`)
  if (values.echo !== 'on' && values.echo !== 'off') throw new Error('--echo must be on or off')
  return {
    guests: values.guests.split(',').map(g => Math.floor(positive('guests', g.trim(), 20_000))),
    messages: Math.floor(positive('messages', values.messages, 10_000)),
    rate: positive('rate', values.rate, 1000),
    servers: servers as ServerKind[],
    echo: values.echo === 'on',
    joinCapMs: positive('join-cap', values['join-cap'], 600) * 1000,
    drainCapMs: positive('drain-cap', values['drain-cap'], 120) * 1000,
    concurrency: Math.floor(positive('concurrency', values.concurrency, 10_000)),
    profileDir: values.profile,
    jsonFile: values.json
  }
}

interface RunResult {
  server: ServerKind
  guests: number
  /** ms from the first connect until every guest joined; null if not within the cap. */
  joinMs: number | null
  joinedAtCap: number
  joinCpu: number
  joinGenCpu: number
  joinWallMs: number
  /** ms from the first connect until the last guest's socket opened / synced / saw the writer. */
  lastOpenedMs: number
  lastSyncedMs: number
  lastSawWriterMs: number
  /** Per guest: from its dial to joined (synced and saw the writer), ms. */
  joinLatencyP50: number
  joinLatencyP99: number
  /** Server cores used in the idle window after the join. */
  idleCores: number
  messagesSent: number
  fanout: { p50: number, p99: number, max: number, count: number }
  lost: number
  guestsMissing: number
  /** ms from the last send until every guest held every message; null at the cap. */
  drainMs: number | null
  messageCpu: number
  messageGenCpu: number
  messageWallMs: number
  framesPerGuestJoin: number
  framesPerGuestMessages: number
  disconnectCpu: number
  disconnectGenCpu: number
  /** ms until the supervisor saw no guest presence; null at the cap. */
  /** Guest states the supervisor held just before the disconnect (presence check). */
  guestsSeenBySupervisor: number
  presenceEmptyMs: number | null
  guestStatesLeftAtCap: number
  rssAfterJoin: number
  peakRss: number
  unexpectedCloses: number
  error?: string
}

const ROOM = 'bench-guests'
const WRITER = 'writer'
const SUPERVISOR = 'supervisor'
const RENEWAL_MS = 15_000
const SETTLE_CAP_MS = 10_000
const IDLE_MS = 5_000
const DISCONNECT_CAP_MS = 60_000

const log = (line: string): void => { process.stderr.write(`${line}\n`) }

const guestStates = (peer: StockPeer): number => {
  let n = 0
  for (const state of peer.remoteStates().values()) if (stateUserName(state)?.startsWith('guest-') === true) n++
  return n
}

const runOne = async (kind: ServerKind, n: number, opts: Options): Promise<RunResult> => {
  const nodeFlags = kind === 'parley' && opts.profileDir !== undefined
    ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`]
    : []
  const server = await startServer(kind, { nodeFlags })
  const guests: LightClient[] = []
  const peers: StockPeer[] = []
  const renewal = setInterval(() => {
    const now = performance.now()
    for (const g of guests) g.renewIfDue(now, RENEWAL_MS)
  }, 200)
  try {
    return await measure(server, n, opts, guests, peers)
  } finally {
    clearInterval(renewal)
    for (const g of guests) g.close()
    for (const p of peers) p.destroy()
    await server.stop()
  }
}

const measure = async (server: ServerUnderTest, n: number, opts: Options, guests: LightClient[], peers: StockPeer[]): Promise<RunResult> => {
  const kind = server.kind
  const params = async (user: string): Promise<Record<string, string>> =>
    kind === 'parley' ? { token: await signUserToken(server.secret, user) } : {}
  if (kind === 'parley') {
    const res = await api(server.url, server.secret, 'PUT', `/v1/conversations/${ROOM}`, { subject: 'bench', participants: [WRITER, SUPERVISOR] })
    if (res.status !== 200 && res.status !== 201) throw new Error(`creating the conversation: HTTP ${res.status} ${JSON.stringify(res.body)}`)
  }
  const supervisor = await connectStockPeer(server.wsUrl, ROOM, SUPERVISOR, await params(SUPERVISOR))
  peers.push(supervisor)
  const writer = await connectStockPeer(server.wsUrl, ROOM, WRITER, await params(WRITER))
  peers.push(writer)
  if (await waitUntil(() => [...supervisor.remoteStates().values()].some(s => stateUserName(s) === WRITER), 10_000) === null) {
    throw new Error('the supervisor never saw the writer')
  }

  // Guests: tokens signed before anything is timed.
  const latencies = new Samples(n * opts.messages)
  const received: Uint8Array[] = []
  const counts = new Uint32Array(n)
  const taken = new Set<number>([supervisor.doc.clientID, writer.doc.clientID])
  for (let i = 0; i < n; i++) {
    const user = `guest-${i}`
    const query = kind === 'parley' ? `?token=${(await params(user)).token}&guest=1` : '?guest=1'
    const got = new Uint8Array(opts.messages)
    received.push(got)
    guests.push(new LightClient({
      url: `${server.wsUrl}/${ROOM}${query}`,
      clientId: randomClientId(taken),
      state: { user: { name: user } },
      echo: opts.echo,
      watchUser: WRITER,
      onSync: (_client, frame, receivedAt) => {
        readMarkers(frame, performance.timeOrigin + receivedAt, got, latency => {
          counts[i]++
          latencies.push(latency)
        })
      }
    }))
  }
  const serverCpu = CpuMeter.forPid(server.pid)
  const genCpu = CpuMeter.forSelf()
  const joined = (): number => guests.reduce((k, g) => k + (g.synced && g.seenWatched ? 1 : 0), 0)
  const frames = (): number => guests.reduce((k, g) => k + g.framesReceived, 0)

  // Join.
  log(`  ${kind} ${n}: join`)
  serverCpu.start(); genCpu.start()
  const joinStart = performance.now()
  const connecting = runBounded(n, opts.concurrency, async i => { await guests[i].connect() })
  const joinMs = await waitUntil(() => joined() === n, opts.joinCapMs, 20)
  const joinedAtCap = joined()
  const joinCpu = serverCpu.elapsed()
  const joinGenCpu = genCpu.elapsed()
  const joinWallMs = performance.now() - joinStart
  const lastOpenedMs = Math.max(...guests.map(g => g.openedAt)) - joinStart
  const joinLatency = summarize(guests.filter(g => g.synced && g.seenWatched).map(g => Math.max(g.syncedAt, g.seenWatchedAt) - g.dialedAt))
  const lastSyncedMs = Math.max(...guests.map(g => g.syncedAt)) - joinStart
  const lastSawWriterMs = Math.max(...guests.map(g => g.seenWatchedAt)) - joinStart
  await Promise.race([connecting, sleep(1000)])
  // Idle: only renewals (and whatever the join left behind).
  serverCpu.start()
  const idleStart = performance.now()
  await sleep(IDLE_MS)
  const idleCores = serverCpu.elapsed() / ((performance.now() - idleStart) / 1000)
  const joinFrames = frames()
  const rssAfterJoin = readProc(server.pid).rssBytes
  log(`  ${kind} ${n}: ${joinMs === null ? `did not converge in ${opts.joinCapMs / 1000} s (${joinedAtCap}/${n} joined)` : `joined in ${(joinMs / 1000).toFixed(2)} s`}, server ${joinCpu.toFixed(1)} CPU-s`)

  // Messages.
  log(`  ${kind} ${n}: ${opts.messages} messages at ${opts.rate}/s`)
  serverCpu.start(); genCpu.start()
  const msgStart = performance.now()
  const messages = writer.doc.getArray<Record<string, unknown>>('messages')
  await paced(opts.messages, opts.rate, i => {
    messages.push([{ id: `bm-${i}`, senderId: WRITER, text: markerText(i), createdAt: Date.now(), type: 'UserMessage' }])
  })
  const total = n * opts.messages
  const drainMs = await waitUntil(() => latencies.length >= total, opts.drainCapMs, 20)
  const messageCpu = serverCpu.elapsed()
  const messageGenCpu = genCpu.elapsed()
  const messageWallMs = performance.now() - msgStart
  const messageFrames = frames() - joinFrames
  let lost = 0
  let guestsMissing = 0
  for (let i = 0; i < n; i++) {
    const missing = opts.messages - counts[i]
    lost += missing
    if (missing > 0) guestsMissing++
  }
  const s = latencies.summary()
  log(`  ${kind} ${n}: fan-out p50 ${fmt(s.p50)} ms p99 ${fmt(s.p99)} ms, lost ${lost}, server ${messageCpu.toFixed(1)} CPU-s`)

  // Mass disconnect.
  log(`  ${kind} ${n}: mass disconnect`)
  await waitQuiet(server.pid, SETTLE_CAP_MS, 500, 0.15)
  const guestsSeenBySupervisor = guestStates(supervisor)
  serverCpu.start(); genCpu.start()
  for (const g of guests) g.close(1001)
  const presenceEmptyMs = await waitUntil(() => guestStates(supervisor) === 0, DISCONNECT_CAP_MS, 20)
  const guestStatesLeftAtCap = guestStates(supervisor)
  await waitQuiet(server.pid, DISCONNECT_CAP_MS, 500, 0.1)
  const disconnectCpu = serverCpu.elapsed()
  const disconnectGenCpu = genCpu.elapsed()
  const peakRss = readProc(server.pid).peakRssBytes
  log(`  ${kind} ${n}: presence empty ${presenceEmptyMs === null ? `not within ${DISCONNECT_CAP_MS / 1000} s` : `after ${(presenceEmptyMs / 1000).toFixed(2)} s`}, server ${disconnectCpu.toFixed(1)} CPU-s, peak RSS ${mib(peakRss)} MiB`)

  return {
    server: kind,
    guests: n,
    joinMs,
    joinedAtCap,
    joinCpu,
    joinGenCpu,
    joinWallMs,
    lastOpenedMs,
    lastSyncedMs,
    lastSawWriterMs,
    joinLatencyP50: joinLatency.p50,
    joinLatencyP99: joinLatency.p99,
    idleCores,
    messagesSent: opts.messages,
    fanout: { p50: s.p50, p99: s.p99, max: s.max, count: s.count },
    lost,
    guestsMissing,
    drainMs,
    messageCpu,
    messageGenCpu,
    messageWallMs,
    framesPerGuestJoin: joinFrames / n,
    framesPerGuestMessages: messageFrames / n,
    disconnectCpu,
    disconnectGenCpu,
    guestsSeenBySupervisor,
    presenceEmptyMs,
    guestStatesLeftAtCap,
    rssAfterJoin,
    peakRss,
    unexpectedCloses: guests.reduce((k, g) => k + g.unexpectedCloses, 0)
  }
}

const seconds = (ms: number | null, capMs: number, partial?: string): string =>
  ms === null ? `did not converge in ${capMs / 1000} s${partial === undefined ? '' : ` (${partial})`}` : (ms / 1000).toFixed(2)

const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(2)}×`

const report = (results: RunResult[], opts: Options): string => {
  const out: string[] = []
  const ns = [...new Set(results.map(r => r.guests))]
  for (const n of ns) {
    const cols = opts.servers.map(k => results.find(r => r.guests === n && r.server === k))
    const both = cols.length === 2 && cols[0] !== undefined && cols[1] !== undefined
    const headers = ['', ...opts.servers.map(k => `${k}`), ...(both ? [`${opts.servers[0]} / ${opts.servers[1]}`] : [])]
    const row = (label: string, cell: (r: RunResult) => string, num?: (r: RunResult) => number): string[] => [
      label,
      ...cols.map(r => r === undefined ? 'failed' : r.error !== undefined ? `error: ${r.error}` : cell(r)),
      ...(both ? [num === undefined ? '' : ratio(cols[0] === undefined ? undefined : num(cols[0]), cols[1] === undefined ? undefined : num(cols[1]))] : [])
    ]
    const ok = (r: RunResult): boolean => r.error === undefined
    const rows = [
      row('join: all guests synced + writer seen (s)', r => seconds(r.joinMs, opts.joinCapMs, `${r.joinedAtCap}/${r.guests}`)),
      row('join: last guest opened / synced / saw the writer (s)', r => `${fmt(r.lastOpenedMs / 1000, 2)} / ${fmt(r.lastSyncedMs / 1000, 2)} / ${fmt(r.lastSawWriterMs / 1000, 2)}`),
      row('join: per guest, dial to joined p50 / p99 (ms)', r => `${fmt(r.joinLatencyP50, 0)} / ${fmt(r.joinLatencyP99, 0)}`),
      row('join: server CPU-s', r => ok(r) ? r.joinCpu.toFixed(2) : '', r => r.joinCpu),
      row('the 5 s after the join (its tail): server cores', r => r.idleCores.toFixed(2)),
      row(`fan-out p50 / p99 (ms), ${opts.messages} msgs at ${opts.rate}/s`, r => `${fmt(r.fanout.p50)} / ${fmt(r.fanout.p99)}`),
      row(`messages missing ${opts.drainCapMs / 1000} s after the last send (guests missing any)`, r => `${r.lost} (${r.guestsMissing})`),
      row('messages: server CPU-s', r => r.messageCpu.toFixed(2), r => r.messageCpu),
      row('frames received per guest: join / messages', r => `${r.framesPerGuestJoin.toFixed(0)} / ${r.framesPerGuestMessages.toFixed(0)}`),
      row('guest states the supervisor held before it', r => String(r.guestsSeenBySupervisor)),
      row('mass disconnect: server CPU-s', r => r.disconnectCpu.toFixed(2), r => r.disconnectCpu),
      row('mass disconnect: supervisor sees no guest (s)', r => seconds(r.presenceEmptyMs, DISCONNECT_CAP_MS, `${r.guestStatesLeftAtCap} left`)),
      row('server RSS after join / peak (MiB)', r => `${mib(r.rssAfterJoin)} / ${mib(r.peakRss)}`, r => r.peakRss),
      row('server CPU-s, join + messages', r => (r.joinCpu + r.messageCpu).toFixed(2), r => r.joinCpu + r.messageCpu),
      row('generator CPU-s: join / messages / disconnect', r => `${r.joinGenCpu.toFixed(1)} / ${r.messageGenCpu.toFixed(1)} / ${r.disconnectGenCpu.toFixed(1)}`),
      row('generator load: join / messages (cores)', r => `${(r.joinGenCpu / (r.joinWallMs / 1000)).toFixed(2)} / ${(r.messageGenCpu / (r.messageWallMs / 1000)).toFixed(2)}`),
      row('unexpected guest closes', r => String(r.unexpectedCloses))
    ]
    out.push(`### ${n.toLocaleString('en-US')} guests\n`)
    out.push(markdownTable(headers, rows, ['left', ...opts.servers.map((): 'right' => 'right'), 'right']))
    out.push('')
  }
  return out.join('\n')
}

const failed = (kind: ServerKind, n: number, e: unknown): RunResult => ({
  server: kind, guests: n, joinMs: null, joinedAtCap: 0, joinCpu: Number.NaN, joinGenCpu: Number.NaN, joinWallMs: Number.NaN, lastOpenedMs: Number.NaN, lastSyncedMs: Number.NaN, lastSawWriterMs: Number.NaN, joinLatencyP50: Number.NaN, joinLatencyP99: Number.NaN, idleCores: Number.NaN,
  messagesSent: 0, fanout: { p50: Number.NaN, p99: Number.NaN, max: Number.NaN, count: 0 }, lost: Number.NaN, guestsMissing: Number.NaN,
  drainMs: null, messageCpu: Number.NaN, messageGenCpu: Number.NaN, messageWallMs: Number.NaN, framesPerGuestJoin: Number.NaN,
  framesPerGuestMessages: Number.NaN, disconnectCpu: Number.NaN, disconnectGenCpu: Number.NaN, guestsSeenBySupervisor: Number.NaN, presenceEmptyMs: null,
  guestStatesLeftAtCap: Number.NaN, rssAfterJoin: Number.NaN, peakRss: Number.NaN, unexpectedCloses: 0,
  error: (e as Error).message.split('\n')[0]
})

const main = async (): Promise<void> => {
  const opts = parseOptions(process.argv.slice(2))
  log(`guests ${opts.guests.join(',')}, ${opts.messages} messages at ${opts.rate}/s, servers ${opts.servers.join(',')}, awareness echo ${opts.echo ? 'on' : 'off'}`)
  const results: RunResult[] = []
  for (const n of opts.guests) {
    for (const kind of opts.servers) {
      log(`${kind}, ${n} guests`)
      try {
        results.push(await runOne(kind, n, opts))
      } catch (e) {
        log(`  ${kind} ${n}: failed: ${(e as Error).stack ?? String(e)}`)
        results.push(failed(kind, n, e))
      }
      if (opts.jsonFile !== undefined) await writeFile(opts.jsonFile, JSON.stringify({ options: opts, results }, null, 2))
    }
  }
  process.stdout.write(`${report(results, opts)}\n`)
  process.exit(0)
}

await main()
