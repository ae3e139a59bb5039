/**
 * Cluster benchmark (issue 11, "Performance"): N Parley nodes on this machine sharing one
 * PostgreSQL schema and Redis, against one node (on PostgreSQL, and on its LevelDB folder)
 * serving the same load in the same run. Every server is a real `parley` child process on
 * 127.0.0.1 (bench/lib/deployments.ts); the load generator is this process, plus a small probe
 * process for the cross-node hop (bench/lib/hop-probe.ts).
 *
 *   node --import tsx bench/cluster.ts [--guests 3000] [--messages 100] [--rate 5]
 *     [--targets cluster,pg,level] [--nodes 3] [--tput-rate 1200] [--tput-seconds 10]
 *     [--join-cap 60] [--drain-cap 10] [--concurrency 100] [--profile DIR] [--json FILE]
 *
 * For each target, two workloads on the same servers:
 *
 * 1. Fan-out (conversation `bench-cluster`). Three groups, group g on node g mod N (all on the
 *    one node for a single-node target): a supervisor `sup-g` (stock provider) per group, the
 *    writer (stock provider) in group 0, the probe's participant connections, then the guests
 *    (light clients with presence and the stock awareness echo, bench/lib/light-client.ts),
 *    guest i in group i mod 3.
 *      join      a guest has joined when it is synced and sees the presence of its group's
 *                supervisor (a participant on its own node: awareness states themselves stay
 *                on their node, docs/cluster.md). Also timed: until every supervisor's server
 *                state says `guestCount` = all guests (the cluster-wide count).
 *      messages  the writer appends `messages` messages at `rate`/s; each text carries its
 *                sequence number and send time. Fan-out latency = arrival at each guest minus
 *                send time (one clock). Lost = not held 10 s after the last send.
 *      hop       measured by the probe process (its own event loop, so the 3,000 guest sockets
 *                of the generator do not delay its stamps): for each message, its first arrival
 *                at the probe's connection on the writer's node A and on each other node B, and
 *                the arrival of A's `commit` announcement on the Redis channel. A forwards to its
 *                own peers only after the commit in PostgreSQL, so "A" = commit on A + one local
 *                send (an upper bound of the commit time); hop = arrival on B minus arrival on A.
 * 2. Throughput (conversation `bench-tput`): one writer per group (stock providers, so writers
 *    on all three nodes), `tput-rate` messages per second in total for `tput-seconds`, and one
 *    reader per group (light client). Accepted = the nodes' `parley_updates_applied_total`
 *    (updates judged and applied, committed by the same flush), summed and polled every 250 ms
 *    from /metrics; accepted rate = messages sent / time from the first send until all were
 *    accepted, also split at the 1,500th message (from there on the live window is full and
 *    messages move to the archive). Flush counts and mean durations come from
 *    `parley_storage_write_seconds`. Then each node's REST history (`GET …/messages`, paged) is
 *    compared: the same ids in the same order on every node, and every message sent present.
 *    What the readers received live is reported too.
 *
 * CPU: user + system time of every node process from /proc (summed), and of the PostgreSQL
 * backends serving the target's schema (found by `application_name`); Redis is shared with other
 * users of the machine and not counted. Rate limits are lifted for the run (settings
 * `messageRate`, as the cluster tests do, and `maxPendingConnectionsPerAddress`: see BENCH_SETTINGS). The schema and the cluster's Redis keys are removed
 * afterwards. A benchmark never asserts: it prints (stdout: tables; stderr: progress).
 */
import { parseArgs } from 'node:util'
import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { LightClient, randomClientId } from './lib/light-client.ts'
import { CpuMeter } from './lib/proc.ts'
import { api, signUserToken } from './lib/servers.ts'
import { Samples, summarize, type Summary } from './lib/stats.ts'
import { connectStockPeer, stateUserName, type StockPeer } from './lib/stock-peer.ts'
import { fmt, markdownTable, mib } from './lib/table.ts'
import { paced, runBounded, sleep, waitUntil } from './lib/timing.ts'
import { markerText, readMarkers } from './lib/markers.ts'
import { deploy, DeploymentCpu, enginesReachable, DEPLOYMENT_KINDS, type Deployment, type DeploymentKind } from './lib/deployments.ts'
import { startProbe, type Probe, type ProbeReport } from './lib/hop-probe.ts'
import { REDIS_URL } from '../test/helpers/redis.ts'
import { positive } from './lib/options.ts'

interface Options {
  guests: number
  messages: number
  rate: number
  targets: DeploymentKind[]
  nodes: number
  tputRate: number
  tputSeconds: number
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
      guests: { type: 'string', default: '3000' },
      messages: { type: 'string', default: '100' },
      rate: { type: 'string', default: '5' },
      targets: { type: 'string', default: 'cluster,pg,level' },
      nodes: { type: 'string', default: '3' },
      'tput-rate': { type: 'string', default: '1200' },
      'tput-seconds': { type: 'string', default: '10' },
      'join-cap': { type: 'string', default: '60' },
      'drain-cap': { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '100' },
      profile: { type: 'string' },
      json: { type: 'string' }
    },
    strict: true,
    allowPositionals: false
  })
  const targets = values.targets.split(',').map(s => s.trim()).filter(s => s !== '')
  for (const t of targets) if (!DEPLOYMENT_KINDS.includes(t as DeploymentKind)) throw new Error(`--targets: unknown target ${JSON.stringify(t)} (cluster, pg, level)`)
  return {
    guests: Math.floor(positive('guests', values.guests, 20_000)),
    messages: Math.floor(positive('messages', values.messages, 10_000)),
    rate: positive('rate', values.rate, 1000),
    targets: targets as DeploymentKind[],
    nodes: Math.floor(positive('nodes', values.nodes, 8)),
    tputRate: positive('tput-rate', values['tput-rate'], 20_000),
    tputSeconds: positive('tput-seconds', values['tput-seconds'], 120),
    joinCapMs: positive('join-cap', values['join-cap'], 600) * 1000,
    drainCapMs: positive('drain-cap', values['drain-cap'], 120) * 1000,
    concurrency: Math.floor(positive('concurrency', values.concurrency, 10_000)),
    profileDir: values.profile,
    jsonFile: values.json
  }
}

const GROUPS = 3
const FANOUT_ROOM = 'bench-cluster'
const TPUT_ROOM = 'bench-tput'
/** How often the throughput phase reads every node's accepted count from /metrics. */
const METRICS_POLL_MS = 250
const WRITER = 'writer'
const RENEWAL_MS = 15_000
const IDLE_MS = 5_000
const PRESENCE_CAP_MS = 30_000
/**
 * The message rate limit out of the way (as UNLIMITED_RATE in test/helpers/server.ts), and the
 * per-address cap on connections waiting for admission raised: every guest of the benchmark
 * comes from 127.0.0.1, where real guests come from thousands of addresses (the cap's 4429 is
 * final for a stock client, so a guest refused by it would never join).
 */
const BENCH_SETTINGS = { messageRate: { perSecond: 10_000, burst: 100_000 }, maxPendingConnectionsPerAddress: 100_000 }

const log = (line: string): void => { process.stderr.write(`${line}\n`) }

interface Cpu { nodes: number, pg: number }

interface HopResult {
  /** Writer's send to the first arrival on A (judge + commit on A + one local send). */
  local: Summary
  /** First arrival on A to first arrival on B (every other node pooled). */
  hop: Summary
  /** First arrival on A to the commit announcement seen on Redis. */
  announce: Summary
  /** Announcement seen on Redis to the first arrival on B. */
  remote: Summary
  /** Messages the probe never saw on some node. */
  missing: number
}

interface FanoutResult {
  joinMs: number | null
  joinedAtCap: number
  /** ms from the first dial until the last guest's socket opened / the last guest synced. */
  lastOpenedMs: number
  lastSyncedMs: number
  /** Per guest: dial to joined, and socket open to synced (admission: token, reads, the room's catch-up), ms. */
  joinLatency: Summary
  openToSynced: Summary
  /** ms from the first dial until every supervisor's server state counted every guest; null at the cap. */
  presenceMs: number | null
  guestCountsAtEnd: number[]
  joinCpu: Cpu
  idleCores: number
  fanout: Summary
  fanoutByGroup: Summary[]
  lost: number
  guestsMissing: number
  messageCpu: Cpu
  messageWallMs: number
  framesDelivered: number
  hop: HopResult | null
  rssAfterJoin: number
  genCpu: { join: number, messages: number }
  unexpectedCloses: number
  presenceGoneMs: number | null
}

interface ThroughputResult {
  sent: number
  sendWallMs: number
  /** Updates the nodes accepted (judged and applied for commit: `parley_updates_applied_total`, summed). */
  accepted: number
  /** ms from the first send until every message was accepted (or the cap). */
  wallMs: number
  drained: boolean
  acceptedPerSecond: number
  /** Accepted per second while the live window held every message (no archive yet), and afterwards. */
  rateBeforeArchive: number
  rateAfterArchive: number
  /** Messages held by every reader (live updates received). */
  deliveredEverywhere: number
  latency: Summary
  cpu: Cpu
  rest: { counts: number[], converged: boolean, missing: number, detail: string }
  writerCloses: number
  /** Reader connections closed by the server (and reopened), with their last close code. */
  readerCloses: number
  readerLastClose: string
  /** Flushes (log appends) of every node in the phase, and their mean duration (ms). */
  flushes: number
  flushMeanMs: number
  /** Accepted once the nodes were given up to 60 s more (before the REST comparison), and when. */
  acceptedAtEnd: number
  endMs: number
}

interface TargetResult {
  target: DeploymentKind
  nodes: number
  fanout?: FanoutResult
  throughput?: ThroughputResult
  error?: string
}

const cpuOf = async (meter: DeploymentCpu): Promise<Cpu> => await meter.elapsed()
const total = (c: Cpu): number => c.nodes + c.pg

/** The `guestCount` of the node's own server state, as a supervisor sees it (-1: none yet). */
const serverGuestCount = (peer: StockPeer): number => {
  for (const state of peer.remoteStates().values()) {
    const p = (state as { parley?: { guestCount?: unknown } }).parley
    if (typeof p?.guestCount === 'number') return p.guestCount
  }
  return -1
}

/** Settings changed on node 0 reach every node (a cluster announces them). */
const liftLimits = async (d: Deployment): Promise<void> => {
  const res = await api(d.nodes[0].url, d.secret, 'PATCH', '/v1/settings', BENCH_SETTINGS)
  if (res.status !== 200) throw new Error(`lifting the limits: HTTP ${res.status} ${JSON.stringify(res.body)}`)
  for (const node of d.nodes) {
    const deadline = Date.now() + 10_000
    for (;;) {
      const s = await api(node.url, d.secret, 'GET', '/v1/settings')
      const got = s.body as { messageRate?: { burst?: number }, maxPendingConnectionsPerAddress?: number }
      if (got.messageRate?.burst === BENCH_SETTINGS.messageRate.burst && got.maxPendingConnectionsPerAddress === BENCH_SETTINGS.maxPendingConnectionsPerAddress) break
      if (Date.now() > deadline) throw new Error(`the settings did not reach ${node.url} within 10 s`)
      await sleep(100)
    }
  }
}

const createRoom = async (d: Deployment, room: string, participants: string[]): Promise<void> => {
  const res = await api(d.nodes[0].url, d.secret, 'PUT', `/v1/conversations/${room}`, { subject: 'bench', participants })
  if (res.status !== 200 && res.status !== 201) throw new Error(`creating ${room}: HTTP ${res.status} ${JSON.stringify(res.body)}`)
}

const nodeOfGroup = (d: Deployment, g: number): number => g % d.nodes.length

const probeSummary = (r: ProbeReport, messages: number): HopResult => {
  const local: number[] = []
  const hop: number[] = []
  const announce: number[] = []
  const remote: number[] = []
  let missing = 0
  for (let i = 0; i < messages; i++) {
    const a = r.nodes[0][i]
    if (r.nodes.some(n => Number.isNaN(n[i]))) missing++
    if (!Number.isNaN(a) && !Number.isNaN(r.send[i])) local.push(a - r.send[i])
    if (!Number.isNaN(r.redis[i]) && !Number.isNaN(a)) announce.push(r.redis[i] - a)
    for (const b of r.nodes.slice(1)) {
      if (Number.isNaN(b[i])) continue
      if (!Number.isNaN(a)) hop.push(b[i] - a)
      if (!Number.isNaN(r.redis[i])) remote.push(b[i] - r.redis[i])
    }
  }
  return { local: summarize(local), hop: summarize(hop), announce: summarize(announce), remote: summarize(remote), missing }
}

const runFanout = async (d: Deployment, opts: Options, cleanup: Array<() => Promise<void> | void>): Promise<FanoutResult> => {
  const n = opts.guests
  const sups = Array.from({ length: GROUPS }, (_, g) => `sup-${g}`)
  const probes = d.nodes.map((_, i) => `probe-${i}`)
  await createRoom(d, FANOUT_ROOM, [WRITER, ...sups, ...probes])
  const wsOf = (g: number): string => d.nodes[nodeOfGroup(d, g)].wsUrl
  const token = async (user: string): Promise<string> => await signUserToken(d.secret, user)

  // Supervisors first, then the writer, then the probe: they are first in their node's fan-out.
  const supervisors: StockPeer[] = []
  for (let g = 0; g < GROUPS; g++) {
    const p = await connectStockPeer(wsOf(g), FANOUT_ROOM, sups[g], { token: await token(sups[g]) })
    supervisors.push(p)
    cleanup.push(() => p.destroy())
  }
  const writer = await connectStockPeer(wsOf(0), FANOUT_ROOM, WRITER, { token: await token(WRITER) })
  cleanup.push(() => writer.destroy())
  if (await waitUntil(() => [...supervisors[0].remoteStates().values()].some(s => stateUserName(s) === WRITER), 10_000) === null) {
    throw new Error('sup-0 never saw the writer (same node)')
  }
  const probe: Probe = await startProbe({
    nodes: await Promise.all(d.nodes.map(async (node, i) => `${node.wsUrl}/${FANOUT_ROOM}?token=${await token(probes[i])}`)),
    redis: d.redisPrefix === null ? undefined : { url: REDIS_URL, channel: `${d.redisPrefix}commit`, conv: FANOUT_ROOM },
    messages: opts.messages
  })
  cleanup.push(async () => { await probe.stop() })

  // Guests: tokens signed before anything is timed.
  const guests: LightClient[] = []
  const renewal = setInterval(() => {
    const now = performance.now()
    for (const g of guests) g.renewIfDue(now, RENEWAL_MS)
  }, 200)
  cleanup.push(() => { clearInterval(renewal); for (const g of guests) g.close() })
  const latencies = new Samples(n * opts.messages)
  const byGroup = Array.from({ length: GROUPS }, () => new Samples(Math.ceil(n / GROUPS) * opts.messages))
  const counts = new Uint32Array(n)
  const taken = new Set<number>([writer.doc.clientID, ...supervisors.map(s => s.doc.clientID)])
  for (let i = 0; i < n; i++) {
    const user = `guest-${i}`
    const g = i % GROUPS
    const got = new Uint8Array(opts.messages)
    guests.push(new LightClient({
      url: `${wsOf(g)}/${FANOUT_ROOM}?token=${await token(user)}&guest=1`,
      clientId: randomClientId(taken),
      state: { user: { name: user } },
      echo: true,
      watchUser: sups[g],
      onSync: (_client, frame, receivedAt) => {
        readMarkers(frame, performance.timeOrigin + receivedAt, got, latency => {
          counts[i]++
          latencies.push(latency)
          byGroup[g].push(latency)
        })
      }
    }))
  }
  const serverCpu = new DeploymentCpu(d)
  const genCpu = CpuMeter.forSelf()
  const joined = (): number => guests.reduce((k, c) => k + (c.synced && c.seenWatched ? 1 : 0), 0)
  const frames = (): number => guests.reduce((k, c) => k + c.framesReceived, 0)

  // Join.
  log(`  ${d.kind}: join of ${n} guests`)
  await serverCpu.start(); genCpu.start()
  const joinStart = performance.now()
  const connecting = runBounded(n, opts.concurrency, async i => { await guests[i].connect() })
  const joinMs = await waitUntil(() => joined() === n, opts.joinCapMs, 20)
  const joinedAtCap = joined()
  const joinCpu = await cpuOf(serverCpu)
  const lastOpenedMs = Math.max(...guests.map(g => g.openedAt)) - joinStart
  const lastSyncedMs = Math.max(...guests.map(g => g.syncedAt)) - joinStart
  const joinLatency = summarize(guests.filter(g => g.synced && g.seenWatched).map(g => Math.max(g.syncedAt, g.seenWatchedAt) - g.dialedAt))
  const openToSynced = summarize(guests.filter(g => g.synced).map(g => g.syncedAt - g.openedAt))
  const joinGen = genCpu.elapsed()
  if (joinMs === null) {
    // Why the stragglers did not join: by group, socket state, sync and presence.
    const stuck = guests.map((g, i) => ({ g, i })).filter(({ g }) => !(g.synced && g.seenWatched))
    const kinds = new Map<string, number>()
    for (const { g, i } of stuck) {
      const k = `group ${i % GROUPS}: ${g.open ? 'open' : 'not open'}, ${g.synced ? 'synced' : 'not synced'}, ${g.seenWatched ? 'saw' : 'did not see'} its supervisor, connects ${g.connects}, last close ${g.lastClose === null ? '–' : `${g.lastClose.code} ${g.lastClose.reason}`}`
      kinds.set(k, (kinds.get(k) ?? 0) + 1)
    }
    for (const [k, c] of kinds) log(`    not joined: ${c} × ${k}`)
  }
  const presenceWait = await waitUntil(() => supervisors.every(s => serverGuestCount(s) === n), PRESENCE_CAP_MS, 20)
  const presenceMs = presenceWait === null ? null : performance.now() - joinStart
  await Promise.race([connecting, sleep(1000)])
  log(`  ${d.kind}: ${joinMs === null ? `not joined within the cap (${joinedAtCap}/${n})` : `joined in ${(joinMs / 1000).toFixed(2)} s`}; every node counted ${n} guests ${presenceMs === null ? 'never' : `after ${(presenceMs / 1000).toFixed(2)} s`}; nodes ${joinCpu.nodes.toFixed(1)} CPU-s, pg ${joinCpu.pg.toFixed(1)}`)

  // Idle: renewals only.
  await serverCpu.start()
  const idleStart = performance.now()
  await sleep(IDLE_MS)
  const idleCpu = await cpuOf(serverCpu)
  const idleCores = total(idleCpu) / ((performance.now() - idleStart) / 1000)
  const rssAfterJoin = d.rss()

  // Messages.
  log(`  ${d.kind}: ${opts.messages} messages at ${opts.rate}/s`)
  const framesBefore = frames()
  await serverCpu.start(); genCpu.start()
  const msgStart = performance.now()
  const messages = writer.doc.getArray<Record<string, unknown>>('messages')
  await paced(opts.messages, opts.rate, i => {
    messages.push([{ id: `bm-${i}`, senderId: WRITER, text: markerText(i), createdAt: Date.now(), type: 'UserMessage' }])
  })
  await waitUntil(() => latencies.length >= n * opts.messages, opts.drainCapMs, 20)
  const messageCpu = await cpuOf(serverCpu)
  const messageGen = genCpu.elapsed()
  const messageWallMs = performance.now() - msgStart
  const framesDelivered = frames() - framesBefore
  let lost = 0
  let guestsMissing = 0
  for (let i = 0; i < n; i++) {
    const missing = opts.messages - counts[i]
    lost += missing
    if (missing > 0) guestsMissing++
  }
  const fanout = latencies.summary()
  const hop = d.nodes.length > 1 ? probeSummary(await probe.report(), opts.messages) : null
  log(`  ${d.kind}: fan-out p50 ${fmt(fanout.p50)} p99 ${fmt(fanout.p99)} ms, lost ${lost}${hop === null ? '' : `, hop p50 ${fmt(hop.hop.p50)} p99 ${fmt(hop.hop.p99)} ms`}, nodes ${messageCpu.nodes.toFixed(1)} CPU-s`)

  // Everyone leaves (closed tabs): until every node counts no guest.
  for (const g of guests) g.close(1001)
  const presenceGoneMs = await waitUntil(() => supervisors.every(s => serverGuestCount(s) === 0), PRESENCE_CAP_MS, 20)
  const guestCountsAtEnd = supervisors.map(serverGuestCount)
  return {
    joinMs,
    joinedAtCap,
    lastOpenedMs,
    lastSyncedMs,
    joinLatency,
    openToSynced,
    presenceMs,
    guestCountsAtEnd,
    joinCpu,
    idleCores,
    fanout,
    fanoutByGroup: byGroup.map(s => s.summary()),
    lost,
    guestsMissing,
    messageCpu,
    messageWallMs,
    framesDelivered,
    hop,
    rssAfterJoin,
    genCpu: { join: joinGen, messages: messageGen },
    unexpectedCloses: guests.reduce((k, c) => k + c.unexpectedCloses, 0),
    presenceGoneMs
  }
}

/** Every message id of `room` as REST on `url` pages them, oldest first. */
const restIds = async (url: string, secret: string, room: string, cap: number): Promise<string[]> => {
  const out: string[][] = []
  let before = ''
  for (let page = 0; page < cap; page++) {
    // A node still catching up answers once it has (REST waits for its conversation's catch-up).
    const r = await api(url, secret, 'GET', `/v1/conversations/${room}/messages?limit=100${before}`, undefined, 60_000)
    if (r.status !== 200) throw new Error(`GET messages on ${url}: HTTP ${r.status}`)
    const body = r.body as { data: Array<{ id: string }>, hasMore?: boolean }
    out.unshift(body.data.map(m => m.id))
    if (body.hasMore !== true || body.data.length === 0) break
    before = `&before=${encodeURIComponent(body.data[0].id)}`
  }
  return out.flat()
}

/** `parley_updates_applied_total` of a node (peer updates judged and applied; -1 when unreadable). */
const updatesApplied = async (url: string): Promise<number> => {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })
    const m = /^parley_updates_applied_total (\d+)/m.exec(await res.text())
    return m === null ? -1 : Number(m[1])
  } catch {
    return -1
  }
}

/** A node's flushes so far: count and seconds (`parley_storage_write_seconds`; in a cluster, lock wait included). */
const flushStats = async (url: string): Promise<{ count: number, seconds: number }> => {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    const count = /^parley_storage_write_seconds_count (\S+)/m.exec(text)
    const sum = /^parley_storage_write_seconds_sum (\S+)/m.exec(text)
    return { count: Number(count?.[1] ?? Number.NaN), seconds: Number(sum?.[1] ?? Number.NaN) }
  } catch {
    return { count: Number.NaN, seconds: Number.NaN }
  }
}

/** Peer updates accepted by every node together since `base`. */
const acceptedSince = async (d: Deployment, base: number[]): Promise<number> => {
  const now = await Promise.all(d.nodes.map(async n => await updatesApplied(n.url)))
  return now.reduce((sum, v, i) => sum + (v < 0 ? 0 : v - base[i]), 0)
}

/** The live window holds this many messages before the oldest move to the archive (DEFAULT_SERVER_CONFIG: historyWindow + archiveChunk). */
const ARCHIVE_STARTS_AFTER = 1500

const runThroughput = async (d: Deployment, opts: Options, cleanup: Array<() => Promise<void> | void>): Promise<ThroughputResult> => {
  const writersNames = Array.from({ length: GROUPS }, (_, g) => `w${g}`)
  const readerNames = Array.from({ length: GROUPS }, (_, g) => `reader-${g}`)
  await createRoom(d, TPUT_ROOM, [...writersNames, ...readerNames])
  const wsOf = (g: number): string => d.nodes[nodeOfGroup(d, g)].wsUrl
  const per = Math.max(1, Math.round(opts.tputRate / GROUPS * opts.tputSeconds))
  const sent = per * GROUPS
  const writers: StockPeer[] = []
  let writerCloses = 0
  for (let g = 0; g < GROUPS; g++) {
    const w = await connectStockPeer(wsOf(g), TPUT_ROOM, writersNames[g], { token: await signUserToken(d.secret, writersNames[g]) })
    w.provider.on('connection-close', () => { writerCloses++ })
    writers.push(w)
    cleanup.push(() => w.destroy())
  }
  const latencies = new Samples(sent * GROUPS)
  const held = new Uint32Array(GROUPS)
  const readers: LightClient[] = []
  const taken = new Set<number>(writers.map(w => w.doc.clientID))
  for (let g = 0; g < GROUPS; g++) {
    const got = new Uint8Array(sent)
    const r = new LightClient({
      url: `${wsOf(g)}/${TPUT_ROOM}?token=${await signUserToken(d.secret, readerNames[g])}`,
      clientId: randomClientId(taken),
      state: { user: { name: readerNames[g] } },
      echo: false,
      onSync: (_c, frame, receivedAt) => {
        readMarkers(frame, performance.timeOrigin + receivedAt, got, latency => { held[g]++; latencies.push(latency) })
      }
    })
    readers.push(r)
    cleanup.push(() => r.close())
  }
  await Promise.all(readers.map(async r => { await r.connect() }))
  if (await waitUntil(() => readers.every(r => r.synced), 10_000) === null) throw new Error('a reader did not sync')

  log(`  ${d.kind}: throughput, ${GROUPS} writers × ${per} messages at ${(opts.tputRate / GROUPS).toFixed(0)}/s`)
  const serverCpu = new DeploymentCpu(d)
  const flushBase = await Promise.all(d.nodes.map(async n => await flushStats(n.url)))
  const base = await Promise.all(d.nodes.map(async n => await updatesApplied(n.url)))
  if (base.some(b => b < 0)) throw new Error('cannot read parley_updates_applied_total from /metrics')
  // Accepted so far, sampled every METRICS_POLL_MS: [ms since the first send, accepted].
  const series: Array<[number, number]> = []
  let accepted = 0
  let polling = true
  await serverCpu.start()
  const start = performance.now()
  const poller = (async () => {
    while (polling) {
      accepted = await acceptedSince(d, base)
      series.push([performance.now() - start, accepted])
      // Not faster: rendering /metrics costs each node a few ms of CPU, which the nodes' own
      // work would miss on this 2-core machine (every 100 ms it was ~0.6 CPU-s per node and run).
      await sleep(METRICS_POLL_MS)
    }
  })()
  await Promise.all(writers.map(async (w, g) => {
    const arr = w.doc.getArray<Record<string, unknown>>('messages')
    await paced(per, opts.tputRate / GROUPS, k => {
      arr.push([{ id: `w${g}-${k}`, senderId: writersNames[g], text: markerText(g * per + k), createdAt: Date.now(), type: 'UserMessage' }])
    })
  }))
  const sendWallMs = performance.now() - start
  const drainCap = Math.max(opts.drainCapMs, 30_000)
  const drained = await waitUntil(() => accepted >= sent, drainCap, 10) !== null
  const wallMs = drained ? (series.find(([, a]) => a >= sent)?.[0] ?? performance.now() - start) : performance.now() - start
  polling = false
  await poller
  const cpu = await cpuOf(serverCpu)
  const flushEnd = await Promise.all(d.nodes.map(async n => await flushStats(n.url)))
  const flushes = flushEnd.reduce((k, f, i) => k + f.count - flushBase[i].count, 0)
  const flushSeconds = flushEnd.reduce((k, f, i) => k + f.seconds - flushBase[i].seconds, 0)
  // Live delivery: a little longer for the readers (they may trail the commits).
  await waitUntil(() => held.every(h => h >= sent), 5000, 10)
  const deliveredEverywhere = Math.min(...held)
  const at = (n: number): number | undefined => series.find(([, a]) => a >= n)?.[0]
  const tBefore = at(Math.min(ARCHIVE_STARTS_AFTER, sent))
  const tAfterFrom = at(ARCHIVE_STARTS_AFTER + 100)
  const rateBeforeArchive = tBefore === undefined ? Number.NaN : Math.min(ARCHIVE_STARTS_AFTER, sent) / (tBefore / 1000)
  const rateAfterArchive = tAfterFrom === undefined || sent <= ARCHIVE_STARTS_AFTER + 100 || wallMs - tAfterFrom < 200
    ? Number.NaN
    : (accepted - (ARCHIVE_STARTS_AFTER + 100)) / ((wallMs - tAfterFrom) / 1000)
  log(`  ${d.kind}: accepted ${accepted}/${sent} after ${(wallMs / 1000).toFixed(2)} s (${(accepted / (wallMs / 1000)).toFixed(0)}/s; ${fmt(rateBeforeArchive, 0)}/s before the archive, ${fmt(rateAfterArchive, 0)}/s after); every reader held ${deliveredEverywhere}; nodes ${cpu.nodes.toFixed(1)} CPU-s`)

  // Before comparing REST, let a node that is behind finish (at most 60 s more).
  const settleStart = performance.now()
  let acceptedAtEnd = accepted
  while (acceptedAtEnd < sent && performance.now() - settleStart < 60_000) {
    await sleep(500)
    acceptedAtEnd = await acceptedSince(d, base)
  }
  if (!drained) log(`  ${d.kind}: ${acceptedAtEnd}/${sent} accepted ${((performance.now() - start) / 1000).toFixed(1)} s after the first send`)
  // Every node's REST history, compared.
  const lists = await Promise.all(d.nodes.map(async node => await restIds(node.url, d.secret, TPUT_ROOM, Math.ceil(sent / 100) + 10)))
  const expected = new Set<string>()
  for (let g = 0; g < GROUPS; g++) for (let k = 0; k < per; k++) expected.add(`w${g}-${k}`)
  const first = lists[0]
  const same = lists.every(l => l.length === first.length && l.every((id, i) => id === first[i]))
  const present = new Set(first)
  let missing = 0
  for (const id of expected) if (!present.has(id)) missing++
  const detail = same ? '' : lists.map((l, i) => `node ${i}: ${l.length}`).join(', ')
  return {
    sent,
    sendWallMs,
    accepted,
    wallMs,
    drained,
    acceptedPerSecond: accepted / (wallMs / 1000),
    rateBeforeArchive,
    rateAfterArchive,
    deliveredEverywhere,
    latency: latencies.summary(),
    cpu,
    rest: { counts: lists.map(l => l.length), converged: same && missing === 0 && first.length === sent, missing, detail },
    writerCloses,
    readerCloses: readers.reduce((k, r) => k + r.unexpectedCloses, 0),
    readerLastClose: readers.map(r => r.lastClose === null ? '–' : `${r.lastClose.code} ${r.lastClose.reason}`).join(', '),
    flushes,
    flushMeanMs: flushSeconds / flushes * 1000,
    acceptedAtEnd,
    endMs: performance.now() - start
  }
}

const runTarget = async (kind: DeploymentKind, opts: Options): Promise<TargetResult> => {
  const nodeFlags = opts.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}/${kind}`]
  log(`${kind}: starting ${kind === 'cluster' ? `${opts.nodes} nodes` : 'one node'}`)
  const d = await deploy(kind, { nodes: opts.nodes, nodeFlags })
  const result: TargetResult = { target: kind, nodes: d.nodes.length }
  const cleanup: Array<() => Promise<void> | void> = []
  const runCleanup = async (): Promise<void> => {
    for (const fn of cleanup.splice(0).reverse()) {
      try { await fn() } catch { /* best effort */ }
    }
  }
  try {
    await liftLimits(d)
    result.fanout = await runFanout(d, opts, cleanup)
    await runCleanup()
    result.throughput = await runThroughput(d, opts, cleanup)
  } catch (e) {
    log(`  ${kind}: failed: ${(e as Error).stack ?? String(e)}`)
    result.error = (e as Error).message.split('\n')[0]
  } finally {
    await runCleanup()
    const keys = await d.stop()
    log(`  ${kind}: stopped${d.schema === null ? '' : `, schema ${d.schema.schema} dropped`}${d.redisPrefix === null ? '' : `, ${keys} Redis keys under ${d.redisPrefix} deleted`}`)
  }
  return result
}

// ----- report -----

const ms = (s: Summary | undefined): string => s === undefined || s.count === 0 ? '–' : `${fmt(s.p50)} / ${fmt(s.p99)}`
const us = (cpuSeconds: number, count: number): string => count === 0 ? '–' : (cpuSeconds / count * 1e6).toFixed(1)

const report = (results: TargetResult[], opts: Options): string => {
  const out: string[] = []
  const headers = ['', ...results.map(r => r.target === 'cluster' ? `cluster (${r.nodes} nodes)` : r.target === 'pg' ? 'one node, PostgreSQL' : 'one node, LevelDB')]
  const cell = (r: TargetResult, f: (r: TargetResult) => string): string => r.error !== undefined && r.fanout === undefined ? `error: ${r.error}` : f(r)
  const row = (label: string, f: (r: TargetResult) => string): string[] => [label, ...results.map(r => cell(r, f))]
  const F = (f: (x: FanoutResult) => string) => (r: TargetResult): string => r.fanout === undefined ? '–' : f(r.fanout)
  const T = (f: (x: ThroughputResult) => string) => (r: TargetResult): string => r.throughput === undefined ? (r.error ?? '–') : f(r.throughput)
  const n = opts.guests
  const rows = [
    row(`join: all ${n.toLocaleString('en-US')} guests synced + own node's supervisor seen (s)`, F(f => f.joinMs === null ? `not within ${opts.joinCapMs / 1000} s (${f.joinedAtCap})` : (f.joinMs / 1000).toFixed(2))),
    row('join: last guest opened / last synced (s)', F(f => `${(f.lastOpenedMs / 1000).toFixed(2)} / ${(f.lastSyncedMs / 1000).toFixed(2)}`)),
    row('join: per guest, dial to joined p50 / p99 (ms)', F(f => `${fmt(f.joinLatency.p50, 0)} / ${fmt(f.joinLatency.p99, 0)}`)),
    row('join: per guest, socket open to synced p50 / p99 (ms)', F(f => `${fmt(f.openToSynced.p50, 0)} / ${fmt(f.openToSynced.p99, 0)}`)),
    row('join: every node\'s guestCount = all guests, from the first dial (s)', F(f => f.presenceMs === null ? `not within ${PRESENCE_CAP_MS / 1000} s` : (f.presenceMs / 1000).toFixed(2))),
    row('join: CPU-s nodes / PostgreSQL backends', F(f => `${f.joinCpu.nodes.toFixed(2)} / ${f.joinCpu.pg.toFixed(2)}`)),
    row('the 5 s after the join: cores (nodes + PG backends)', F(f => f.idleCores.toFixed(2))),
    row(`fan-out p50 / p99 (ms), ${opts.messages} msgs at ${opts.rate}/s, all guests`, F(f => ms(f.fanout))),
    ...Array.from({ length: GROUPS }, (_, g) => row(`fan-out p50 / p99 (ms), guests of group ${g}${g === 0 ? ' (the writer\'s node)' : ''}`, F(f => ms(f.fanoutByGroup[g])))),
    row('messages missing 10 s after the last send (guests missing any)', F(f => `${f.lost} (${f.guestsMissing})`)),
    row('probe: send → first peer on A (judge + commit + 1 send), p50 / p99 ms', F(f => f.hop === null ? '–' : ms(f.hop.local))),
    row('probe: cross-node hop, first peer on A → peer on B, p50 / p99 ms', F(f => f.hop === null ? '–' : ms(f.hop.hop))),
    row('probe: first peer on A → commit seen on Redis, p50 / p99 ms', F(f => f.hop === null ? '–' : ms(f.hop.announce))),
    row('probe: commit seen on Redis → peer on B, p50 / p99 ms', F(f => f.hop === null ? '–' : ms(f.hop.remote))),
    row('messages: CPU-s nodes / PostgreSQL backends', F(f => `${f.messageCpu.nodes.toFixed(2)} / ${f.messageCpu.pg.toFixed(2)}`)),
    row('messages: frames delivered to guests', F(f => String(f.framesDelivered))),
    row('messages: node CPU per delivered frame (µs)', F(f => us(f.messageCpu.nodes, f.framesDelivered))),
    row('messages: node CPU per message (ms)', F(f => (f.messageCpu.nodes / opts.messages * 1000).toFixed(2))),
    row('leave: every node counts no guest (s)', F(f => f.presenceGoneMs === null ? `not within ${PRESENCE_CAP_MS / 1000} s (${f.guestCountsAtEnd.join(', ')})` : (f.presenceGoneMs / 1000).toFixed(2))),
    row('nodes RSS after the join, summed (MiB)', F(f => mib(f.rssAfterJoin))),
    row('generator CPU-s: join / messages', F(f => `${f.genCpu.join.toFixed(1)} / ${f.genCpu.messages.toFixed(1)}`)),
    row('unexpected guest closes', F(f => String(f.unexpectedCloses))),
    row(`throughput: ${GROUPS} writers, offered ${opts.tputRate}/s for ${opts.tputSeconds} s: accepted messages/s`, T(t => `${t.acceptedPerSecond.toFixed(0)}${t.drained ? '' : ' (not drained)'}`)),
    row(`throughput: accepted/s, first ${ARCHIVE_STARTS_AFTER} messages (live window) / the rest (archive in use)`, T(t => `${fmt(t.rateBeforeArchive, 0)} / ${fmt(t.rateAfterArchive, 0)}`)),
    row('throughput: sent / accepted / held by every reader (live)', T(t => `${t.sent} / ${t.accepted} / ${t.deliveredEverywhere}`)),
    row('throughput: if not drained: accepted in the end / after (s)', T(t => t.drained ? '–' : `${t.acceptedAtEnd} / ${(t.endMs / 1000).toFixed(1)}`)),
    row('throughput: sending took / all accepted after (s)', T(t => `${(t.sendWallMs / 1000).toFixed(2)} / ${(t.wallMs / 1000).toFixed(2)}`)),
    row('throughput: flushes (log appends) / messages per flush / mean flush (ms)', T(t => `${t.flushes} / ${(t.accepted / t.flushes).toFixed(1)} / ${fmt(t.flushMeanMs)}`)),
    row('throughput: send → reader p50 / p99 (ms), every reader', T(t => ms(t.latency))),
    row('throughput: REST on every node, message count', T(t => t.rest.counts.join(' / '))),
    row('throughput: REST lists identical, none missing', T(t => t.rest.converged ? 'yes' : `NO (${t.rest.missing} missing; ${t.rest.detail})`)),
    row('throughput: CPU-s nodes / PostgreSQL backends', T(t => `${t.cpu.nodes.toFixed(2)} / ${t.cpu.pg.toFixed(2)}`)),
    row('throughput: node CPU per accepted message (µs)', T(t => us(t.cpu.nodes, t.accepted))),
    row('throughput: node + PG CPU per accepted message (µs)', T(t => us(total(t.cpu), t.accepted))),
    row('throughput: writer connections closed', T(t => String(t.writerCloses))),
    row('throughput: reader connections closed by the server (last close per reader)', T(t => `${t.readerCloses} (${t.readerLastClose})`))
  ]
  out.push(markdownTable(headers, rows, ['left', ...results.map((): 'right' => 'right')]))
  out.push('')
  // Overhead of clustering against each single node, as ratios and differences.
  const cluster = results.find(r => r.target === 'cluster')
  const singles = results.filter(r => r.target !== 'cluster')
  if (cluster?.fanout !== undefined && singles.length > 0) {
    const oh: string[][] = []
    const c = cluster
    for (const s of singles) {
      const name = s.target === 'pg' ? 'one node, PostgreSQL' : 'one node, LevelDB'
      const cf = c.fanout as FanoutResult
      const sf = s.fanout
      if (sf !== undefined) {
        const cPer = cf.messageCpu.nodes / cf.framesDelivered
        const sPer = sf.messageCpu.nodes / sf.framesDelivered
        oh.push([`per delivered frame (fan-out, node CPU), against ${name}`, `${(cPer * 1e6).toFixed(1)} vs ${(sPer * 1e6).toFixed(1)} µs`, `${(cPer / sPer).toFixed(2)}×`, `${((cPer - sPer) * 1e6).toFixed(1)} µs`])
        const cj = cf.joinCpu.nodes / opts.guests
        const sj = sf.joinCpu.nodes / opts.guests
        oh.push([`per guest joined (node CPU), against ${name}`, `${(cj * 1e6).toFixed(0)} vs ${(sj * 1e6).toFixed(0)} µs`, `${(cj / sj).toFixed(2)}×`, `${((cj - sj) * 1e6).toFixed(0)} µs`])
      }
      const ct = c.throughput
      const st = s.throughput
      if (ct !== undefined && st !== undefined) {
        const cm = ct.cpu.nodes / ct.accepted
        const sm = st.cpu.nodes / st.accepted
        oh.push([`per accepted message (throughput, node CPU), against ${name}`, `${(cm * 1e6).toFixed(0)} vs ${(sm * 1e6).toFixed(0)} µs`, `${(cm / sm).toFixed(2)}×`, `${((cm - sm) * 1e6).toFixed(0)} µs`])
        const cmp = total(ct.cpu) / ct.accepted
        const smp = total(st.cpu) / st.accepted
        if (s.target === 'pg') oh.push([`per accepted message (node + PG backends), against ${name}`, `${(cmp * 1e6).toFixed(0)} vs ${(smp * 1e6).toFixed(0)} µs`, `${(cmp / smp).toFixed(2)}×`, `${((cmp - smp) * 1e6).toFixed(0)} µs`])
      }
    }
    out.push('Overhead of clustering (same run):\n')
    out.push(markdownTable(['', 'cluster vs one node', 'ratio', 'difference'], oh, ['left', 'right', 'right', 'right']))
    out.push('')
  }
  return out.join('\n')
}

const main = async (): Promise<void> => {
  const opts = parseOptions(process.argv.slice(2))
  if (opts.targets.some(t => t !== 'level')) {
    const why = await enginesReachable()
    if (why !== null) {
      // `npm run bench` runs every benchmark: without the engines this one has nothing to measure.
      process.stdout.write(`skipped: ${why}\n`)
      process.exit(0)
    }
  }
  log(`cluster bench: ${opts.guests} guests, ${opts.messages} messages at ${opts.rate}/s; throughput ${opts.tputRate}/s for ${opts.tputSeconds} s; targets ${opts.targets.join(',')}`)
  const results: TargetResult[] = []
  for (const kind of opts.targets) {
    results.push(await runTarget(kind, opts))
    if (opts.jsonFile !== undefined) await writeFile(opts.jsonFile, JSON.stringify({ options: opts, results }, null, 2))
    await sleep(2000) // let the machine settle between targets
  }
  process.stdout.write(`${report(results, opts)}\n`)
  process.exit(0)
}

await main()
