/**
 * `npm run repair`: salvages a data folder whose LevelDB log is damaged (STORAGE_CORRUPT).
 *
 * 1. Copies the whole folder aside to `<dir>.before-repair-<timestamp>` (nothing is lost).
 * 2. Reads, from that copy, every log LevelDB would replay (per the MANIFEST) with `scanLog`,
 *    which also finds the records after a misalignment by looking for the next valid checksum,
 *    and decodes each record as a write batch.
 * 3. Opens the folder (LevelDB's own recovery keeps what it can read) and writes every salvaged
 *    batch again, in sequence order, each atomically. Writing a batch LevelDB already recovered
 *    again changes nothing: the last write of each key wins either way.
 * Batches that were damaged themselves are lost; the report says how many bytes could not be
 * read. Run `npm run check` afterwards: a lost batch can leave a conversation with a gap.
 */
import { cp, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { decodeWriteBatch, scanLog, type WriteBatch } from '../storage/leveldb-log.ts'
import { listLogFiles, readLiveLogNumbers, verifyLevelLogs } from '../storage/log-integrity.ts'
import { isLevelLocked, ToolError } from './tool-error.ts'

export interface LogSalvage {
  name: string
  /** Batches decoded from this log (kept). */
  batches: number
  operations: number
  /** Damaged places, as `reason at offset N`. */
  problems: string[]
  /** Bytes that belonged to no readable record. */
  unreadableBytes: number
  /** Records whose checksum held but that were not whole write batches. */
  undecodableRecords: number
}

export interface RepairReport {
  /** Where the untouched copy of the folder is; null when the logs were intact (nothing done). */
  aside: string | null
  logs: LogSalvage[]
  /** Logs LevelDB had already retired; left alone (they are in the copy). */
  ignoredLogs: string[]
  keptBatches: number
  keptOperations: number
  /** Whether the folder's logs read cleanly after the repair. */
  clean: boolean
  notes: string[]
}

const stamp = (ms: number): string => new Date(ms).toISOString().replace(/[:.]/g, '-')

/** Salvages `dir` (see the module header); the server must be stopped. */
export const repairDataFolder = async (dir: string, now: () => number = Date.now): Promise<RepairReport> => {
  try {
    await stat(join(dir, 'CURRENT'))
  } catch {
    throw new ToolError(`${dir} holds no LevelDB data (no CURRENT file)`)
  }
  if ((await verifyLevelLogs(dir)).ok) return { aside: null, logs: [], ignoredLogs: [], keptBatches: 0, keptOperations: 0, clean: true, notes: ['the logs are intact: nothing to repair'] }
  const aside = `${dir.replace(/\/+$/, '')}.before-repair-${stamp(now())}`
  await cp(dir, aside, { recursive: true, errorOnExist: true, force: false })
  const notes: string[] = []

  let live = (await listLogFiles(aside))
  const ignoredLogs: string[] = []
  try {
    const { logNumber, prevLogNumber } = await readLiveLogNumbers(aside)
    const replayed = live.filter(l => l.number >= logNumber || l.number === prevLogNumber)
    ignoredLogs.push(...live.filter(l => !replayed.includes(l)).map(l => l.name))
    live = replayed
  } catch (e) {
    notes.push(`could not read the MANIFEST (${(e as Error).message}); salvaging every log file`)
  }

  const batches: WriteBatch[] = []
  const logs: LogSalvage[] = []
  for (const { name } of live) {
    const scan = scanLog(await readFile(join(aside, name)))
    const salvage: LogSalvage = {
      name, batches: 0, operations: 0, unreadableBytes: scan.unreadableBytes, undecodableRecords: 0,
      problems: scan.problems.map(p => `${p.reason} at offset ${p.offset}`)
    }
    for (const record of scan.records) {
      try {
        const batch = decodeWriteBatch(record.data)
        batches.push(batch)
        salvage.batches++
        salvage.operations += batch.ops.length
      } catch {
        salvage.undecodableRecords++
      }
    }
    logs.push(salvage)
  }
  batches.sort((a, b) => (a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0))

  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view', createIfMissing: false })
  try {
    await db.open()
  } catch (e) {
    if (isLevelLocked(e)) throw new ToolError(`${dir} is in use by a running server: stop it first (a copy was made at ${aside})`)
    throw e
  }
  let keptOperations = 0
  try {
    for (const [i, batch] of batches.entries()) {
      await db.batch(batch.ops.map(op => ({ ...op })), { sync: i === batches.length - 1 })
      keptOperations += batch.ops.length
    }
  } finally {
    await db.close()
  }
  const clean = (await verifyLevelLogs(dir)).ok
  return { aside, logs, ignoredLogs, keptBatches: batches.length, keptOperations, clean, notes }
}

/** The report as the lines `npm run repair` prints. */
export const formatRepairReport = (dir: string, r: RepairReport): string => {
  if (r.aside === null) return `${dir}: ${r.notes.join('; ')}\n`
  const lines = [`repaired ${dir} (the folder as it was is kept at ${r.aside})`]
  for (const l of r.logs) {
    lines.push(`  ${l.name}: kept ${l.batches} batch(es), ${l.operations} operation(s)`)
    for (const p of l.problems) lines.push(`    damaged: ${p}`)
    if (l.unreadableBytes > 0) lines.push(`    could not read ${l.unreadableBytes} byte(s)`)
    if (l.undecodableRecords > 0) lines.push(`    ${l.undecodableRecords} record(s) were not whole write batches`)
  }
  for (const name of r.ignoredLogs) lines.push(`  ${name}: already retired by LevelDB, left alone`)
  for (const n of r.notes) lines.push(`  note: ${n}`)
  lines.push(`  total kept: ${r.keptBatches} batch(es), ${r.keptOperations} operation(s); logs now ${r.clean ? 'clean' : 'STILL DAMAGED'}`)
  lines.push('  next: npm run check -- --data ' + dir)
  return lines.join('\n') + '\n'
}
