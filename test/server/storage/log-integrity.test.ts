import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { isChatError } from '../../../shared/errors.ts'
import { LevelStore } from '../../../server/storage/level-store.ts'
import { HEADER_SIZE, scanLog } from '../../../server/storage/leveldb-log.ts'
import { verifyLevelLogs } from '../../../server/storage/log-integrity.ts'
import { runOps } from '../../helpers/process.ts'

const USERS = 300
const userId = (i: number): string => `u${i}`

const Integrity = suite<{ dir: string, db: string }>('corrupted LevelDB logs')
Integrity.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'parley-logs-'))
  ctx.db = join(ctx.dir, 'db')
  const store = await LevelStore.open(ctx.db)
  // One write batch (one log record) per user; a clean close leaves them in the log.
  for (let i = 0; i < USERS; i++) await store.putUser({ id: userId(i), name: `user ${i} `.padEnd(400, 'x'), createdAt: i })
  await store.close()
})
Integrity.after.each(async ctx => {
  await rm(ctx.dir, { recursive: true, force: true })
})

const logOf = async (db: string): Promise<string> => {
  const logs = (await readdir(db)).filter(n => n.endsWith('.log'))
  assert.is(logs.length, 1)
  return join(db, logs[0])
}

/** The users a store can read, by index. */
const readableUsers = async (db: string): Promise<number[]> => {
  const store = await LevelStore.open(db)
  try {
    const out: number[] = []
    for (let i = 0; i < USERS; i++) if ((await store.getUser(userId(i))) !== undefined) out.push(i)
    return out
  } finally {
    await store.close()
  }
}

const openError = async (db: string): Promise<Error> => {
  try {
    await (await LevelStore.open(db)).close()
  } catch (e) {
    return e as Error
  }
  throw new Error('LevelStore.open accepted a corrupted log')
}

Integrity('a clean log verifies and opens, and repair leaves it alone', async ({ dir, db }) => {
  assert.equal(await verifyLevelLogs(db), { ok: true })
  assert.is((await readableUsers(db)).length, USERS)
  const res = await runOps('repair', ['--data', db])
  assert.is(res.code, 0, res.stderr)
  assert.match(res.stdout, 'nothing to repair')
  assert.equal((await readdir(dir)).filter(n => n.includes('before-repair')), [])
})

Integrity('a flipped byte in a record makes open refuse with STORAGE_CORRUPT; repair keeps every other record', async ({ dir, db }) => {
  const log = await logOf(db)
  const bytes = await readFile(log)
  const records = scanLog(bytes).records
  assert.ok(records.length >= USERS)
  const victim = records[150]
  bytes[victim.offset + HEADER_SIZE + 30] ^= 0x20
  await writeFile(log, bytes)

  const err = await openError(db)
  assert.ok(isChatError(err) && err.code === 'STORAGE_CORRUPT', String(err))
  assert.match(err.message, `checksum mismatch at offset ${victim.offset}`)
  assert.match(err.message, /\d+\.log/)
  assert.match(err.message, 'npm run repair')

  const res = await runOps('repair', ['--data', db])
  assert.is(res.code, 0, res.stderr)
  assert.match(res.stdout, `damaged: checksum mismatch at offset ${victim.offset}`)
  const kept = await readableUsers(db)
  assert.is(kept.length, USERS - 1)
  assert.not.ok(kept.includes(150))
  assert.ok(kept.includes(149) && kept.includes(151) && kept.includes(USERS - 1))
  // The folder as it was is kept aside, still damaged.
  const aside = (await readdir(dir)).filter(n => n.startsWith('db.before-repair-'))
  assert.is(aside.length, 1)
  assert.is((await verifyLevelLogs(join(dir, aside[0]))).ok, false)
})

Integrity('records misaligned by lost bytes (a failed append) are refused, and repair salvages more than LevelDB would', async ({ dir, db }) => {
  const log = await logOf(db)
  const bytes = await readFile(log)
  const records = scanLog(bytes).records
  // Bytes of records 100 to 102 never reached the file; later ones land at shifted offsets.
  const from = records[100].offset + 10
  const to = records[103].offset - 5
  await writeFile(log, Buffer.concat([bytes.subarray(0, from), bytes.subarray(to)]))
  const err = await openError(db)
  assert.ok(isChatError(err) && err.code === 'STORAGE_CORRUPT', String(err))

  // What LevelDB's own recovery would keep, on a copy.
  const plain = join(dir, 'plain')
  await cp(db, plain, { recursive: true })
  const level = new Level<string, string>(plain)
  await level.open()
  let plainCount = 0
  for await (const _ of level.keys()) plainCount++
  await level.close()

  const res = await runOps('repair', ['--data', db])
  assert.is(res.code, 0, res.stderr)
  const kept = await readableUsers(db)
  for (const i of [0, 99, 104, 200, USERS - 1]) assert.ok(kept.includes(i), `user ${i} kept`)
  assert.ok(kept.length >= USERS - 4, `kept ${kept.length}`)
  assert.ok(kept.length > plainCount, `salvage kept ${kept.length}, LevelDB alone ${plainCount}`)
})

Integrity('repair refuses a folder without LevelDB data', async ({ dir }) => {
  const res = await runOps('repair', ['--data', join(dir, 'nothing')])
  assert.is(res.code, 1)
  assert.match(res.stderr, 'no LevelDB data')
})

Integrity.run()
