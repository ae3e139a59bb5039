/**
 * `npm run migrate -- --from DIR --to URL`: copies a LevelDB data folder (its server stopped)
 * into an empty PostgreSQL database or schema, for `--postgres` (docs/cluster.md).
 *
 * Everything goes: each conversation with its whole history (log entries, snapshot, archive),
 * its client-id bindings, users, memberships, settings, every section (webhook outbox, inbox
 * index, pending notifications...) and the folder's generated secret (`DIR/secret`), so tokens
 * keep working. Read markers live in the documents. Entries are read from one LevelDB snapshot
 * and written in one PostgreSQL transaction. Uploaded files (`DIR/files`) go first, streamed
 * one by one into PostgreSQL's blob tables (`pg-blob-store.ts`): each file a record names
 * (a blob without a record is a leftover nothing serves, and stays behind). A failed migration
 * deletes the files it copied, so it leaves the target empty (unless the tool itself is killed
 * half-way: then drop the schema and run it again). A target holding any data, files
 * included, is refused before anything is written.
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Message } from '../../shared/schema.ts'
import { blobKeyOfRecordKey, FILES_SECTION } from '../files/file-service.ts'
import { FsBlobStore } from '../storage/fs-blob-store.ts'
import { LevelStore } from '../storage/level-store.ts'
import { PgBlobStore } from '../storage/pg-blob-store.ts'
import { parseSeq, VERSION } from '../storage/keys.ts'
import { PgStore, type ImportBatch } from '../storage/pg-store.ts'
import type { UserRecord } from '../storage/port.ts'
import { SECRET_FILE } from '../secret.ts'
import { isLevelLocked, ToolError } from './tool-error.ts'

export interface MigrateReport {
  /** The target, without its password. */
  target: string
  conversations: number
  logEntries: number
  snapshots: number
  archivedMessages: number
  clientBindings: number
  users: number
  memberships: number
  settings: boolean
  secret: boolean
  /** Entries per section (outbox, inbox, notify...). */
  sections: Record<string, number>
  /** Entries of no known kind, left behind. */
  skipped: number
  /** Uploaded files copied, and their bytes. */
  files: number
  fileBytes: number
  /** Files a record names whose bytes are not in the folder (already lost there): not copied. */
  filesMissing: number
}

/** Rows per batch handed to PostgreSQL (and held in memory). */
const BATCH_ROWS = 2000
/** ...or bytes of documents, whichever comes first. */
const BATCH_BYTES = 8 * 1024 * 1024

type Counted = Omit<MigrateReport, 'target' | 'settings' | 'secret' | 'sections' | 'skipped' | 'files' | 'fileBytes' | 'filesMissing'>

/** Turns the folder's raw entries into import batches, counting as it goes. */
async function * batchesOf (store: LevelStore, report: MigrateReport): AsyncIterable<ImportBatch> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let batch: Required<ImportBatch> = emptyBatch()
  let rows = 0
  let bytes = 0
  const add = <K extends keyof ImportBatch>(kind: K, row: NonNullable<ImportBatch[K]>[number], count?: keyof Counted): void => {
    (batch[kind] as Array<typeof row>).push(row)
    rows++
    if (count !== undefined) report[count]++
  }
  for await (const [rawKey, rawValue] of store.rawEntries()) {
    const key = Buffer.from(rawKey).toString('utf8')
    const m = /^!([^!]+)!(.*)$/s.exec(key)
    if (m === null) { report.skipped++; continue }
    const [, sub, rest] = m
    const parts = rest.split('!')
    if (sub === 'bin') {
      if (parts[0] === VERSION && parts.length === 4 && (parts[2] === 'log' || parts[2] === 'snap')) {
        const row = { conv: parts[1], seq: parseSeq(parts[3]), bytes: new Uint8Array(rawValue) }
        if (parts[2] === 'log') add('log', row, 'logEntries')
        else add('snapshots', row, 'snapshots')
        bytes += rawValue.byteLength
      } else {
        report.skipped++
      }
    } else {
      const value: unknown = JSON.parse(decoder.decode(rawValue))
      if (sub.startsWith('s-')) {
        const section = sub.slice(2)
        add('sections', { section, key: rest, value })
        report.sections[section] = (report.sections[section] ?? 0) + 1
      } else if (sub === 'json' && parts[0] === VERSION) {
        switch (parts[1]) {
          case 'conv': add('conversations', { conv: parts[2], createdAt: (value as { createdAt?: number }).createdAt ?? 0 }, 'conversations'); break
          case 'client': add('clients', { conv: parts[2], clientId: Number(parts[3]), userId: value as string }, 'clientBindings'); break
          case 'user': add('users', value as UserRecord, 'users'); break
          case 'member': add('members', { user: parts[2], conv: parts[3], joinedAt: (value as { joinedAt?: number }).joinedAt ?? 0 }, 'memberships'); break
          case 'arch': add('archive', { conv: parts[2], pos: parseSeq(parts[3]), message: value as Message }, 'archivedMessages'); break
          case 'archid': break // the archive's id index, rebuilt from the messages
          case 'settings': add('meta', { name: 'settings', value }); report.settings = true; break
          default: report.skipped++
        }
      } else {
        report.skipped++
      }
    }
    if (rows >= BATCH_ROWS || bytes >= BATCH_BYTES) {
      yield batch
      batch = emptyBatch()
      rows = 0
      bytes = 0
    }
  }
  yield batch
}

const emptyBatch = (): Required<ImportBatch> => ({ conversations: [], log: [], snapshots: [], archive: [], clients: [], users: [], members: [], meta: [], sections: [] })

const readSecretFile = async (dir: string): Promise<string | null> => {
  try {
    const secret = (await readFile(join(dir, SECRET_FILE), 'utf8')).trim()
    return secret.length >= 16 ? secret : null
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
}

/**
 * Streams every file a record of the folder names into `target` (one file in memory never
 * more than a chunk), counting into `report`; adds to `copied` each conversation it copies files of.
 */
const copyFiles = async (source: LevelStore, from: string, target: PgBlobStore, report: MigrateReport, copied: Set<string>): Promise<void> => {
  const blobs = await FsBlobStore.open(join(from, 'files'))
  for await (const [key] of source.section(FILES_SECTION).entries({})) {
    const blobKey = blobKeyOfRecordKey(key)
    if (blobKey === null) continue
    const found = await blobs.get(blobKey)
    if (found === undefined) {
      report.filesMissing++
      continue
    }
    copied.add(blobKey.split('/')[0])
    const put = await target.put(blobKey, found.stream, { maxBytes: Number.MAX_SAFE_INTEGER, headBytes: 0 })
    report.files++
    report.fileBytes += put.size
  }
}

/** Copies the folder `from` into the PostgreSQL `to`; ToolError on refusal. */
export const migrateToPostgres = async (opts: { from: string, to: string }): Promise<MigrateReport> => {
  try {
    await stat(join(opts.from, 'CURRENT'))
  } catch {
    throw new ToolError(`${opts.from} holds no Parley data (no LevelDB CURRENT file)`)
  }
  let source: LevelStore
  try {
    source = await LevelStore.open(opts.from)
  } catch (e) {
    if (isLevelLocked(e)) throw new ToolError(`${opts.from} is in use by a running server; stop it first`)
    throw e
  }
  let target: PgStore | null = null
  let files: PgBlobStore | null = null
  try {
    try {
      target = await PgStore.open({ url: opts.to, heartbeatMs: 0 })
      files = await PgBlobStore.open({ url: opts.to })
    } catch (e) {
      throw new ToolError(`cannot use PostgreSQL: ${(e as Error).message.split('\n')[0]}`)
    }
    const holding = [...await target.nonEmptyTables(), ...await files.nonEmptyTables()]
    if (holding.length > 0) throw new ToolError(`${target.location} is not empty (it has rows in ${holding.join(', ')}); migrate only into an empty database or schema`)
    const report: MigrateReport = {
      target: target.location, conversations: 0, logEntries: 0, snapshots: 0, archivedMessages: 0, clientBindings: 0, users: 0, memberships: 0, settings: false, secret: false, sections: {}, skipped: 0, files: 0, fileBytes: 0, filesMissing: 0
    }
    const secret = await readSecretFile(opts.from)
    const secretBatch: ImportBatch = secret === null ? {} : { meta: [{ name: 'secret', value: secret }] }
    report.secret = secret !== null
    const copied = new Set<string>()
    try {
      await copyFiles(source, opts.from, files, report, copied)
      await target.importAll((async function * () {
        yield secretBatch
        yield * batchesOf(source, report)
      })())
    } catch (e) {
      for (const conv of copied) await files.deletePrefix(conv).catch(() => {})
      throw e
    }
    return report
  } finally {
    await files?.close()
    await target?.close()
    await source.close()
  }
}

/** The summary the tool prints. */
export const formatMigrateReport = (from: string, r: MigrateReport): string => {
  const sections = Object.entries(r.sections).map(([name, n]) => `${name} ${n}`).join(', ')
  return [
    `migrated ${from} into ${r.target}:`,
    `  conversations: ${r.conversations} (log entries ${r.logEntries}, snapshots ${r.snapshots}, archived messages ${r.archivedMessages}, client-id bindings ${r.clientBindings})`,
    `  users: ${r.users}, memberships: ${r.memberships}, settings: ${r.settings ? 'yes' : 'none'}, secret: ${r.secret ? 'copied' : 'none in the folder'}`,
    `  sections: ${sections === '' ? 'none' : sections}`,
    `  files: ${r.files} (${r.fileBytes} bytes)${r.filesMissing > 0 ? `; ${r.filesMissing} recorded files were not in the folder and were not copied` : ''}`,
    ...(r.skipped > 0 ? [`  skipped ${r.skipped} entries of no known kind`] : [])
  ].join('\n') + '\n'
}
