/**
 * The cost of durability (a benchmark, never a test): the latency of a durable append (a peer's
 * one-message update, judged, applied, written and acknowledged) with every batch fsynced (the
 * default) and with `--fsync off`, measured in the same run, one conversation at a time and 50
 * conversations writing at once (where group commit shares one fsync between rooms).
 *
 *   node --import tsx bench/storage.ts [--appends 400] [--dir /path/on/the/disk/to/measure]
 *
 * Parley runs in this process on real LevelDB; the folder defaults to the system's temp folder
 * (say which disk that is when you quote the numbers: on tmpfs an fsync costs nothing).
 */
import * as Y from 'yjs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { pino } from 'pino'
import { createServer, DEFAULT_SERVER_CONFIG } from '../server/app.ts'
import { LevelStore } from '../server/storage/level-store.ts'
import { messagesOf } from '../shared/doc.ts'
import type { ChatError } from '../shared/errors.ts'
import type { RoomConnection } from '../server/rooms/room.ts'
import { markdownTable, fmt } from './lib/table.ts'
import { summarize } from './lib/stats.ts'

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback
}
const APPENDS = Number(arg('appends', '400'))
const BASE = arg('dir', tmpdir())
const ROOMS = 50

const conn = (userId: string): RoomConnection => ({
  connId: -1, userId, role: 'participant', canWrite: true, send () {}, close (e: ChatError) { throw e }
})

interface Result { p50: number, p99: number, perSecond: number }

/** `rooms` conversations, each appending `count` messages one after the other; all at once. */
const run = async (sync: boolean, rooms: number, count: number): Promise<Result> => {
  const dir = await mkdtemp(join(BASE, 'bench-storage-'))
  const store = await LevelStore.open(join(dir, 'db'), { sync })
  const server = await createServer({ ...DEFAULT_SERVER_CONFIG, port: 0, secret: 'bench-storage-secret-0123456789' }, { store, logger: pino({ level: 'silent' }) })
  try {
    const latencies: number[] = []
    const writer = async (r: number): Promise<void> => {
      const id = `c${r}`
      const res = await server.http.inject({ method: 'PUT', url: `/v1/conversations/${id}`, headers: { authorization: 'Bearer bench-storage-secret-0123456789' }, payload: { participants: ['w'] } })
      if (res.statusCode !== 201) throw new Error(`create ${res.statusCode}`)
      const room = await server.rooms.acquire(id)
      const client = new Y.Doc()
      Y.applyUpdate(client, Y.encodeStateAsUpdate(room.doc))
      const c = conn('w')
      for (let i = 0; i < count; i++) {
        const sv = Y.encodeStateVector(client)
        messagesOf(client).push([{ id: `m${r}-${i}`, senderId: 'w', text: `message ${i}`, createdAt: Date.now(), type: 'UserMessage' }])
        const t0 = performance.now()
        await room.receiveUpdate(c, Y.encodeStateAsUpdate(client, sv))
        await room.whenDurable()
        latencies.push(performance.now() - t0)
      }
      server.rooms.release(room)
    }
    const t0 = performance.now()
    await Promise.all(Array.from({ length: rooms }, async (_, r) => { await writer(r) }))
    const seconds = (performance.now() - t0) / 1000
    const s = summarize(latencies)
    return { p50: s.p50, p99: s.p99, perSecond: latencies.length / seconds }
  } finally {
    await server.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

const fsType = (): string => {
  try {
    return execFileSync('df', ['-T', BASE], { encoding: 'utf8' }).trim().split('\n')[1]?.split(/\s+/)[1] ?? '?'
  } catch {
    return '?'
  }
}

const rows: string[][] = []
for (const [label, rooms, count] of [['1 conversation', 1, APPENDS], [`${ROOMS} conversations at once`, ROOMS, Math.max(10, Math.round(APPENDS / 10))]] as const) {
  const on = await run(true, rooms, count)
  const off = await run(false, rooms, count)
  rows.push([label, 'fsync on (default)', fmt(on.p50, 2), fmt(on.p99, 2), fmt(on.perSecond, 0)])
  rows.push([label, 'fsync off', fmt(off.p50, 2), fmt(off.p99, 2), fmt(off.perSecond, 0)])
  rows.push([label, 'on / off', fmt(on.p50 / off.p50, 2), fmt(on.p99 / off.p99, 2), fmt(on.perSecond / off.perSecond, 2)])
}
process.stdout.write(`Durable appends on ${BASE} (${fsType()}), ${APPENDS} per writer alone, ${Math.max(10, Math.round(APPENDS / 10))} per writer with ${ROOMS} writers\n\n`)
process.stdout.write(markdownTable(['writers', 'mode', 'p50 ms', 'p99 ms', 'appends/s'], rows, ['left', 'left', 'right', 'right', 'right']) + '\n')
