/**
 * Message search at scale (a benchmark, never a test): builds the search index for N messages
 * over C conversations (default 1,000,000 over 1,000) directly through `SearchIndex` on its own
 * LevelDB folder (so the folder's size is the index's size), then measures queries: one
 * conversation, and across one user's 100 conversations. Last, the cost of the index on the write
 * path: durable appends (a peer's one-message update, judged, applied, written, acknowledged)
 * with and without the index's writes (staged into the same batch), alternating in the same run.
 *
 *   node --import tsx bench/search.ts [--messages 1000000] [--conversations 1000] [--queries 500]
 *                                     [--appends 300] [--dir /path]
 *
 * Messages are 6 to 16 words drawn from a 30,000-word vocabulary with a Zipf-like law (a few
 * words in most messages, most words rare), with accents and capitals mixed in; each conversation
 * has ids and times of its own. Queries take one or two words of a random message of the
 * conversation (so every query has hits) and ask for the first page (30).
 */
import * as Y from 'yjs'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createServer, DEFAULT_SERVER_CONFIG } from '../server/app.ts'
import { LevelStore } from '../server/storage/level-store.ts'
import { SearchIndex } from '../server/search/search-index.ts'
import { messagesOf } from '../shared/doc.ts'
import type { ChatError } from '../shared/errors.ts'
import type { Message } from '../shared/schema.ts'
import { queryWords } from '../shared/search-text.ts'
import type { RoomConnection } from '../server/rooms/room.ts'
import { fmt, markdownTable } from './lib/table.ts'
import { summarize } from './lib/stats.ts'

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback
}
const MESSAGES = Number(arg('messages', '1000000'))
const CONVERSATIONS = Number(arg('conversations', '1000'))
const QUERIES = Number(arg('queries', '500'))
const APPENDS = Number(arg('appends', '300'))
const BASE = arg('dir', tmpdir())
const USER_CONVS = Math.min(100, CONVERSATIONS)
const PER_CONV = Math.ceil(MESSAGES / CONVERSATIONS)
const SECRET = 'bench-search-secret-0123456789ab'

/** A seeded PRNG (mulberry32), so runs index the same text. */
const prng = (seed: number): (() => number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const rand = prng(42)
const SYLLABLES = ['ka', 'lo', 'mi', 'ré', 'su', 'té', 'no', 'va', 'pi', 'dé', 'ru', 'zo', 'chi', 'an', 'el', 'ö', 'ba', 'ne']
const VOCAB = Array.from({ length: 30_000 }, (_, i) => {
  let w = ''
  let n = i + 7
  while (n > 0) { w += SYLLABLES[n % SYLLABLES.length]; n = Math.floor(n / SYLLABLES.length) }
  return i % 5 === 0 ? w[0].toUpperCase() + w.slice(1) : w
})
/** Zipf-like: index ~ N^u - 1 for uniform u, so low indexes are frequent. */
const word = (): string => VOCAB[Math.min(VOCAB.length - 1, Math.floor(Math.pow(VOCAB.length, rand())) - 1)]
const text = (): string => Array.from({ length: 6 + Math.floor(rand() * 11) }, word).join(' ')

const dirSize = async (dir: string): Promise<number> => {
  let total = 0
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size
  return total
}

// 1. Build.
const dir = await mkdtemp(join(BASE, 'bench-search-'))
const store = await LevelStore.open(join(dir, 'index'), { sync: false })
const index = new SearchIndex({
  section: store.section('search'),
  withDoc: async () => { throw new Error('no backfill in the benchmark') },
  readArchive: async () => ({ messages: [], hasMore: false }),
  onError: err => { throw err },
  timers: { setTimeout, clearTimeout: h => { clearTimeout(h as NodeJS.Timeout) }, setInterval, clearInterval: h => { clearInterval(h as NodeJS.Timeout) } },
  expandDelayMs: 200
})
const convIds = Array.from({ length: CONVERSATIONS }, (_, c) => `conv-${c}`)
const samples = new Map<string, string[]>() // a few texts per conversation, for queries
const t0 = performance.now()
let built = 0
for (const conv of convIds) {
  const messages: Message[] = []
  for (let i = 0; i < PER_CONV && built < MESSAGES; i++, built++) {
    messages.push({ id: `${conv}-m${i}`, senderId: `u${i % 7}`, text: text(), createdAt: 1_700_000_000_000 + i * 1000, type: 'UserMessage' })
  }
  samples.set(conv, messages.filter((_, i) => i % 50 === 0).map(m => m.text))
  await index.indexMessages(conv, messages, true)
  if (built % 100_000 < PER_CONV) process.stderr.write(`indexed ${built} messages\r`)
}
const buildSeconds = (performance.now() - t0) / 1000
await store.close()
const indexBytes = await dirSize(join(dir, 'index'))
const reopened = await LevelStore.open(join(dir, 'index'))
const queryIndex = new SearchIndex({
  section: reopened.section('search'),
  withDoc: async () => { throw new Error('no backfill in the benchmark') },
  readArchive: async () => ({ messages: [], hasMore: false }),
  onError: err => { throw err },
  timers: { setTimeout, clearTimeout: h => { clearTimeout(h as NodeJS.Timeout) }, setInterval, clearInterval: h => { clearInterval(h as NodeJS.Timeout) } },
  expandDelayMs: 200
})

// 2. Queries.
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
const queryOf = (conv: string, words: number): string[] => {
  const ws = queryWords(pick(samples.get(conv) ?? ['x']))
  return words === 1 ? [pick(ws)] : [pick(ws), pick(ws)].filter((w, i, a) => a.indexOf(w) === i)
}
const timeQueries = async (convsOf: () => string[], words: number): Promise<{ p50: number, p99: number, hits: number }> => {
  const lat: number[] = []
  let hits = 0
  for (let i = 0; i < QUERIES; i++) {
    const convs = convsOf()
    const q = queryOf(pick(convs), words)
    const t = performance.now()
    const r = await queryIndex.search(convs, q, 30, null)
    lat.push(performance.now() - t)
    hits += r.hits.length
  }
  const s = summarize(lat)
  return { p50: s.p50, p99: s.p99, hits: hits / QUERIES }
}
const userConvs = convIds.slice(0, USER_CONVS)
const one1 = await timeQueries(() => [pick(convIds)], 1)
const one2 = await timeQueries(() => [pick(convIds)], 2)
const many1 = await timeQueries(() => userConvs, 1)
const many2 = await timeQueries(() => userConvs, 2)
await reopened.close()
await rm(dir, { recursive: true, force: true })

// 3. Write path: durable appends with and without the index subscriber, alternating rounds.
const conn = (userId: string): RoomConnection => ({
  connId: -1, userId, role: 'participant', canWrite: true, send () {}, close (e: ChatError) { throw e }
})
const wdir = await mkdtemp(join(BASE, 'bench-search-writes-'))
const wstore = await LevelStore.open(join(wdir, 'db'))
const server = await createServer({ ...DEFAULT_SERVER_CONFIG, port: 0, secret: SECRET }, { store: wstore, logger: pino({ level: 'silent' }) })
const on: number[] = []
const off: number[] = []
try {
  const res = await server.http.inject({ method: 'PUT', url: '/v1/conversations/w', headers: { authorization: `Bearer ${SECRET}` }, payload: { participants: ['w'] } })
  if (res.statusCode !== 201) throw new Error(`create ${res.statusCode}`)
  const room = await server.rooms.acquire('w')
  const client = new Y.Doc()
  Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc))
  const c = conn('w')
  const stage = server.search.stage.bind(server.search)
  const ROUNDS = 6
  let n = 0
  for (let round = 0; round < ROUNDS; round++) {
    const withIndex = round % 2 === 0
    // The benchmark swaps the stager out (the index writes of message events); the server offers no switch for it.
    server.search.stage = withIndex ? stage : () => []
    for (let i = 0; i < Math.ceil(APPENDS / ROUNDS * 2); i++) {
      const sv = Y.encodeStateVector(client)
      messagesOf(client).push([{ id: `a${n++}`, senderId: 'w', text: text(), createdAt: Date.now(), type: 'UserMessage' }])
      const t = performance.now()
      await room.receiveUpdate(c, Y.encodeStateAsUpdate(client, sv))
      await room.whenDurable()
      ;(withIndex ? on : off).push(performance.now() - t)
    }
    await server.search.settled()
  }
  server.search.stage = stage
  server.rooms.release(room)
} finally {
  await server.close()
  await wstore.close()
  await rm(wdir, { recursive: true, force: true })
}
const son = summarize(on)
const soff = summarize(off)

process.stdout.write(`Search index: ${built.toLocaleString('en')} messages over ${CONVERSATIONS.toLocaleString('en')} conversations (${PER_CONV} each), ${QUERIES} queries per row, on ${BASE}\n\n`)
process.stdout.write(markdownTable(['measure', 'value'], [
  ['index build (bulk, fsync off)', `${fmt(buildSeconds, 1)} s (${fmt(built / buildSeconds, 0)} messages/s)`],
  ['index size on disk', `${fmt(indexBytes / 1024 / 1024, 1)} MiB (${fmt(indexBytes / built, 0)} bytes per message)`]
]) + '\n\n')
process.stdout.write(markdownTable(['query', 'p50 ms', 'p99 ms', 'hits per query (page 30)'], [
  ['1 conversation, 1 word', fmt(one1.p50, 2), fmt(one1.p99, 2), fmt(one1.hits, 1)],
  ['1 conversation, 2 words', fmt(one2.p50, 2), fmt(one2.p99, 2), fmt(one2.hits, 1)],
  [`${USER_CONVS} conversations, 1 word`, fmt(many1.p50, 2), fmt(many1.p99, 2), fmt(many1.hits, 1)],
  [`${USER_CONVS} conversations, 2 words`, fmt(many2.p50, 2), fmt(many2.p99, 2), fmt(many2.hits, 1)]
], ['left', 'right', 'right', 'right']) + '\n\n')
process.stdout.write(markdownTable(['durable append (fsync on)', 'p50 ms', 'p99 ms', 'mean ms'], [
  ['without the index writes', fmt(soff.p50, 2), fmt(soff.p99, 2), fmt(soff.mean, 2)],
  ['with the index writes', fmt(son.p50, 2), fmt(son.p99, 2), fmt(son.mean, 2)],
  ['with / without', fmt(son.p50 / soff.p50, 2), fmt(son.p99 / soff.p99, 2), fmt(son.mean / soff.mean, 2)]
], ['left', 'right', 'right', 'right']) + '\n')
