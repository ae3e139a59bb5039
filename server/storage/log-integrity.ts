/**
 * Checks a LevelDB folder's write-ahead logs before LevelDB opens it. LevelDB's recovery drops
 * records it cannot read ("checksum mismatch") and opens anyway; after a failed append every
 * later record is misaligned and would vanish (facts.md). Parley refuses to open such a folder
 * instead (`LevelStore.open`), and `npm run repair` salvages it (`repair.ts`).
 *
 * Also reads the MANIFEST far enough to know which logs LevelDB would replay (its log number and
 * previous log number), which the repair needs so it never replays an obsolete log.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { scanLog } from './leveldb-log.ts'

const LOG_FILE = /^(\d+)\.log$/

/** The write-ahead log files of a LevelDB folder, oldest first, with their file numbers. */
export const listLogFiles = async (dir: string): Promise<Array<{ name: string, number: number }>> => {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw e
  }
  return names.flatMap(name => {
    const m = LOG_FILE.exec(name)
    return m === null ? [] : [{ name, number: Number(m[1]) }]
  }).sort((a, b) => a.number - b.number)
}

export type LogVerdict = { ok: true } | { ok: false, problems: string[] }

/**
 * Reads every `*.log` file in `dir` and reports each record that is damaged or out of sequence
 * (file name and byte offset). A record cut off by the end of its file is no problem. A folder
 * that does not exist yet is fine.
 */
export const verifyLevelLogs = async (dir: string): Promise<LogVerdict> => {
  const problems: string[] = []
  for (const { name } of await listLogFiles(dir)) {
    const scan = scanLog(await readFile(join(dir, name)))
    for (const p of scan.problems) problems.push(`${name}: ${p.reason} at offset ${p.offset}`)
  }
  return problems.length === 0 ? { ok: true } : { ok: false, problems }
}

const EDIT_TAG = { COMPARATOR: 1, LOG_NUMBER: 2, NEXT_FILE: 3, LAST_SEQUENCE: 4, COMPACT_POINTER: 5, DELETED_FILE: 6, NEW_FILE: 7, PREV_LOG_NUMBER: 9 } as const

const readVarint = (b: Uint8Array, at: { i: number }): number => {
  let result = 0
  for (let mul = 1; mul < 2 ** 63; mul *= 128) {
    if (at.i >= b.length) throw new Error('varint past the end')
    const byte = b[at.i++]
    result += (byte & 0x7f) * mul
    if ((byte & 0x80) === 0) return result
  }
  throw new Error('varint too long')
}

const skipSlice = (b: Uint8Array, at: { i: number }): void => {
  const n = readVarint(b, at)
  at.i += n
  if (at.i > b.length) throw new Error('slice past the end')
}

/** The log numbers LevelDB replays at open, from the MANIFEST that CURRENT names. */
export const readLiveLogNumbers = async (dir: string): Promise<{ logNumber: number, prevLogNumber: number }> => {
  const manifest = (await readFile(join(dir, 'CURRENT'), 'utf8')).trim()
  if (!/^MANIFEST-\d+$/.test(manifest)) throw new Error(`CURRENT names no manifest (${JSON.stringify(manifest)})`)
  const scan = scanLog(await readFile(join(dir, manifest)))
  if (scan.problems.length > 0) throw new Error(`${manifest} is damaged at offset ${scan.problems[0].offset}`)
  let logNumber = 0
  let prevLogNumber = 0
  for (const { data } of scan.records) {
    const at = { i: 0 }
    while (at.i < data.length) {
      const tag = readVarint(data, at)
      switch (tag) {
        case EDIT_TAG.COMPARATOR: skipSlice(data, at); break
        case EDIT_TAG.LOG_NUMBER: logNumber = readVarint(data, at); break
        case EDIT_TAG.PREV_LOG_NUMBER: prevLogNumber = readVarint(data, at); break
        case EDIT_TAG.NEXT_FILE:
        case EDIT_TAG.LAST_SEQUENCE: readVarint(data, at); break
        case EDIT_TAG.COMPACT_POINTER: readVarint(data, at); skipSlice(data, at); break
        case EDIT_TAG.DELETED_FILE: readVarint(data, at); readVarint(data, at); break
        case EDIT_TAG.NEW_FILE: readVarint(data, at); readVarint(data, at); readVarint(data, at); skipSlice(data, at); skipSlice(data, at); break
        default: throw new Error(`${manifest}: unknown version edit tag ${tag}`)
      }
    }
  }
  return { logNumber, prevLogNumber }
}
