/**
 * History at scale (a benchmark, never a test): join bytes and time, the cost of one append,
 * load time and memory, for conversations of 1,000, 10,000 and 100,000 messages.
 *
 *   node --import tsx bench/history.ts [--sizes 1000,10000,100000]
 *
 * Parley runs in this process (real LevelDB in a temporary folder, real sockets on 127.0.0.1).
 * "Whole document" is what a server that keeps every message in one live document (the
 * reference y-websocket server) holds and sends on join: the same messages in one Y.Array.
 */
import * as Y from 'yjs'
import WebSocket from 'ws'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createServer, DEFAULT_SERVER_CONFIG, type ParleyServer } from '../server/app.ts'
import { LevelStore } from '../server/storage/level-store.ts'
import { messagesOf } from '../shared/doc.ts'
import { encodeSyncStep1, readMessage } from '../shared/protocol.ts'
import type { Message } from '../shared/schema.ts'
import { ChatError } from '../shared/errors.ts'
import type { RoomConnection } from '../server/rooms/room.ts'
import { markdownTable, fmt } from './lib/table.ts'

const SECRET = 'bench-history-secret-0123456789'
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback
}
const sizes = arg('sizes', '1000,10000,100000').split(',').map(Number)

const message = (i: number, sender: string): Message =>
  ({ id: `m${i}`, senderId: sender, text: `message number ${i} with some words in it`, createdAt: 1_700_000_000_000 + i, type: 'UserMessage' })

const now = (): number => performance.now()

interface Harness { server: ParleyServer, store: LevelStore, dir: string, wsUrl: string }

const start = async (dir?: string): Promise<Harness> => {
  const folder = dir ?? await mkdtemp(join(tmpdir(), 'bench-history-'))
  const store = await LevelStore.open(join(folder, 'db'))
  const server = await createServer({ ...DEFAULT_SERVER_CONFIG, port: 0, secret: SECRET }, { store, logger: pino({ level: 'silent' }) })
  const { url } = await server.listen()
  return { server, store, dir: folder, wsUrl: url.replace(/^http/, 'ws') }
}

const stop = async (h: Harness, keep = false): Promise<void> => {
  await h.server.close()
  await h.store.close()
  if (!keep) await rm(h.dir, { recursive: true, force: true })
}

/** A connection stand-in for driving a room directly (the socket layer is not what is measured). */
const fakeConn = (userId: string): RoomConnection => ({
  connId: -1, userId, role: 'participant', canWrite: true, send () {}, close (e: ChatError) { throw e }
})

/** Writes `n` messages as `writer` in batches of 500, through the judge, like an offline client syncing. */
const fill = async (h: Harness, conv: string, n: number): Promise<void> => {
  const room = await h.server.rooms.acquire(conv)
  const client = new Y.Doc()
  Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc))
  const conn = fakeConn('writer')
  for (let i = 0; i < n; i += 500) {
    const sv = Y.encodeStateVector(client)
    messagesOf(client).push(Array.from({ length: Math.min(500, n - i) }, (_, j) => message(i + j, 'writer')))
    await room.receiveUpdate(conn, Y.encodeStateAsUpdate(client, sv))
    await room.whenDurable()
    Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc, Y.encodeStateVector(client)))
  }
  h.server.rooms.release(room)
}

/** Bytes and time until a fresh raw client has the server's answer to its sync step 1. */
const joinOnce = async (h: Harness, conv: string): Promise<{ bytes: number, ms: number }> => {
  const token = await h.server.auth.signUserToken('reader', 600)
  const t0 = now()
  const ws = new WebSocket(`${h.wsUrl}/${conv}?token=${token}`)
  let bytes = 0
  const done = new Promise<number>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      bytes += data.byteLength
      const msg = readMessage(new Uint8Array(data))
      if (msg.type === 'sync' && msg.subtype === 'step2') {
        const doc = new Y.Doc()
        Y.applyUpdate(doc, msg.update)
        resolve(now())
      }
    })
    ws.on('close', code => reject(new Error(`closed ${code}`)))
  })
  await new Promise(resolve => ws.once('open', resolve))
  ws.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  const t1 = await done
  ws.removeAllListeners('close')
  ws.close()
  return { bytes, ms: t1 - t0 }
}

/**
 * The same history as one live Y.Array written by one client in batches of 100: consecutive
 * items of one client merge into one item, which is what makes each later append copy it.
 */
const wholeDocument = (n: number): Y.Doc => {
  const w = new Y.Doc()
  for (let i = 0; i < n; i += 100) {
    messagesOf(w).push(Array.from({ length: Math.min(100, n - i) }, (_, j) => message(i + j, 'writer')))
  }
  return w
}

/** Median microseconds of one single-message append (one transaction each) by the same client. */
const appendWholeDoc = (w: Y.Doc, count: number): number => {
  const times: number[] = []
  for (let i = 0; i < count; i++) {
    const t0 = now()
    messagesOf(w).push([message(10_000_000 + i, 'writer')])
    times.push((now() - t0) * 1000)
  }
  return median(times)
}

/** Median microseconds of judging and applying one single-message append on the server, and of the durable round. */
const appendParley = async (h: Harness, conv: string, count: number): Promise<{ applyUs: number, durableUs: number }> => {
  const room = await h.server.rooms.acquire(conv)
  const client = new Y.Doc()
  Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc))
  const conn = fakeConn('appender')
  const applies: number[] = []
  const rounds: number[] = []
  for (let i = 0; i < count; i++) {
    const sv = Y.encodeStateVector(client)
    messagesOf(client).push([message(20_000_000 + i, 'appender')])
    const update = Y.encodeStateAsUpdate(client, sv)
    const t0 = now()
    await room.receiveUpdate(conn, update)
    const t1 = now()
    await room.whenDurable()
    rounds.push((now() - t0) * 1000)
    applies.push((t1 - t0) * 1000)
    if (i % 50 === 49) Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc, Y.encodeStateVector(client)))
  }
  h.server.rooms.release(room)
  return { applyUs: median(applies), durableUs: median(rounds) }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

const heapAfterGc = (): number => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) { gc(); gc() }
  return process.memoryUsage().heapUsed
}

const main = async (): Promise<void> => {
  const rows: string[][] = []
  const loadRows: string[][] = []
  let appendAt1k: number | null = null
  for (const n of sizes) {
    const h = await start()
    const conv = `c${n}`
    await h.store.createConversation(conv, Date.now())
    await h.server.rooms.withRoom(conv, room => room.transact(doc => {
      doc.getMap('meta').set('createdAt', Date.now())
      doc.getMap('participants').set('writer', { access: 'ReadWrite', notify: true, joinedAt: 0 })
      doc.getMap('participants').set('appender', { access: 'ReadWrite', notify: true, joinedAt: 0 })
      doc.getMap('participants').set('reader', { access: 'Read', notify: true, joinedAt: 0 })
    }))
    await fill(h, conv, n)
    const parleyJoin = await joinOnce(h, conv)
    const whole = wholeDocument(n)
    const wholeBytes = Y.encodeStateAsUpdate(whole)
    const t0 = now()
    Y.applyUpdate(new Y.Doc(), wholeBytes)
    const wholeParseMs = now() - t0
    const parleyAppend = await appendParley(h, conv, 300)
    if (n === sizes[0]) appendAt1k = parleyAppend.applyUs
    const wholeAppend = appendWholeDoc(whole, 300)
    rows.push([
      n.toLocaleString('en-US'),
      (parleyJoin.bytes / 1024).toFixed(0), fmt(parleyJoin.ms),
      (wholeBytes.byteLength / 1024).toFixed(0), fmt(wholeParseMs),
      `1/${(wholeBytes.byteLength / parleyJoin.bytes).toFixed(0)}`,
      fmt(parleyAppend.applyUs, 0), fmt(parleyAppend.durableUs, 0), fmt(wholeAppend, 0),
      appendAt1k === null ? '' : `${(parleyAppend.applyUs / appendAt1k).toFixed(2)}×`
    ])

    // Load time from LevelDB, and memory of the idle loaded conversation.
    await h.server.rooms.withRoom(conv, room => room.whenDurable())
    const dir = h.dir
    await stop(h, true)
    const h2 = await start(dir)
    const loads: number[] = []
    const heaps: number[] = []
    let live = 0
    for (let k = 0; k < 3; k++) {
      const heap0 = heapAfterGc()
      const t1 = now()
      const room = await h2.server.rooms.acquire(conv)
      loads.push(now() - t1)
      heaps.push(heapAfterGc() - heap0)
      live = messagesOf(room.doc).length
      h2.server.rooms.release(room)
      await room.unload()
      h2.server.rooms.evict(conv, new ChatError('SHUTTING_DOWN'))
    }
    const loadMs = median(loads)
    const t2 = now()
    const fullDoc = new Y.Doc()
    Y.applyUpdate(fullDoc, wholeBytes)
    const wholeLoadMs = now() - t2
    loadRows.push([n.toLocaleString('en-US'), fmt(loadMs), (median(heaps) / 1024).toFixed(0), fmt(wholeLoadMs), live.toLocaleString('en-US')])
    await stop(h2)
  }

  // Memory per idle connection (both ends of the socket live in this process; the server's
  // share is measured as the difference against the same clients on an idle echo-less server).
  const h = await start()
  await h.store.createConversation('idle', Date.now())
  await h.server.rooms.withRoom('idle', room => room.transact(doc => { doc.getMap('meta').set('createdAt', 1) }))
  const idleCount = 500
  const tokens = await Promise.all(Array.from({ length: idleCount }, (_, i) => h.server.auth.signUserToken(`g${i}`, 600)))
  const heapBefore = heapAfterGc()
  const rssBefore = process.memoryUsage().rss
  const sockets: WebSocket[] = []
  for (const token of tokens) {
    const ws = new WebSocket(`${h.wsUrl}/idle?guest=1&token=${token}`)
    ws.on('error', () => {})
    sockets.push(ws)
  }
  await Promise.all(sockets.map(ws => new Promise(resolve => ws.once('open', resolve))))
  for (const ws of sockets) ws.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  await new Promise(resolve => setTimeout(resolve, 1000))
  const perConnHeap = (heapAfterGc() - heapBefore) / idleCount
  const perConnRss = (process.memoryUsage().rss - rssBefore) / idleCount
  for (const ws of sockets) ws.close()
  await stop(h)

  console.log('\n## Join and append\n')
  console.log(markdownTable(
    ['messages', 'Parley join KiB', 'Parley join ms', 'whole doc KiB', 'whole doc parse ms', 'Parley / whole', 'Parley append µs (judge+apply)', 'Parley append µs (durable)', 'whole-doc append µs', 'Parley append vs first size'],
    rows))
  console.log('\n## Load from LevelDB and memory of an idle loaded conversation\n')
  console.log(markdownTable(['messages', 'Parley load ms', 'Parley heap KiB', 'whole doc load ms', 'live messages'], loadRows))
  console.log(`\nIdle connections: ${idleCount} guests, ${(perConnHeap / 1024).toFixed(1)} KiB heap and ${(perConnRss / 1024).toFixed(1)} KiB RSS per connection (server and client ends in one process).`)
}

await main()
