/**
 * Verifies a stopped data folder, or a backup file (restored into a temporary folder first):
 * - the LevelDB logs are intact (`verifyLevelLogs`), before anything opens the folder;
 * - every JSON value parses; counts of conversations, users, memberships, log entries,
 *   snapshots and archived messages;
 * - every conversation document decodes: its snapshot and log apply to a Y.Doc without errors
 *   and without missing dependencies, and the log has no gap after the snapshot;
 * - every archived message is a message whose id the `archid` index maps back to its position,
 *   and the index has no other entries;
 * - every uploaded file's record has its bytes in `files/`, of the recorded size.
 * Reads one entry (and one document) at a time, never the whole store.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { isPlainObject } from '../../shared/schema.ts'
import { LevelStore } from '../storage/level-store.ts'
import { FsBlobStore } from '../storage/fs-blob-store.ts'
import type { BlobStore } from '../storage/blob-port.ts'
import { blobKeyOfRecordKey, FILES_SECTION } from '../files/file-service.ts'
import { parseSeq, VERSION } from '../storage/keys.ts'
import { verifyLevelLogs } from '../storage/log-integrity.ts'
import { restoreBackup } from './restore.ts'
import { isLevelLocked } from './tool-error.ts'

export interface CheckCounts {
  conversations: number
  users: number
  memberships: number
  logEntries: number
  snapshots: number
  archivedMessages: number
  /** Uploaded files (their records; each checked against its bytes). */
  files: number
  /** Everything else (client-id bindings, settings, sections such as the webhook outbox). */
  otherEntries: number
}

export interface CheckReport {
  ok: boolean
  counts: CheckCounts
  /** Conversation documents that decoded. */
  documents: number
  problems: string[]
  /** Oddities that lose nothing (e.g. leftovers of an interrupted delete). */
  warnings: string[]
}

const emptyCounts = (): CheckCounts => ({ conversations: 0, users: 0, memberships: 0, logEntries: 0, snapshots: 0, archivedMessages: 0, files: 0, otherEntries: 0 })


/** Problem text for a document that does not load cleanly, or null. */
const documentProblem = async (store: LevelStore, conv: string): Promise<string | null> => {
  const stored = await store.loadDoc(conv)
  if (stored.updates.length !== stored.lastSeq - stored.snapshotSeq) {
    return `conversation ${conv}: log has gaps (${stored.updates.length} entries between seq ${stored.snapshotSeq} and ${stored.lastSeq})`
  }
  const doc = new Y.Doc({ gc: false })
  try {
    if (stored.snapshot !== null) Y.applyUpdate(doc, stored.snapshot)
    for (const u of stored.updates) Y.applyUpdate(doc, u)
  } catch (e) {
    return `conversation ${conv}: document does not decode (${(e as Error).message})`
  } finally {
    doc.destroy()
  }
  if (doc.store.pendingStructs !== null || doc.store.pendingDs !== null) return `conversation ${conv}: document has changes whose dependencies are missing`
  return null
}

/** Problem text for a file record whose bytes are missing or of another size, or null. */
const fileProblem = async (blobs: BlobStore, key: string, record: unknown): Promise<string | null> => {
  const size = isPlainObject(record) && typeof record.size === 'number' ? record.size : null
  if (size === null) return `file ${key}: the record is not a file record`
  const found = await blobs.stat(key)
  if (found === undefined) return `file ${key}: its bytes are missing (${size} bytes recorded)`
  return found.size === size ? null : `file ${key}: ${found.size} bytes stored, ${size} recorded`
}

/** Checks an open store (and the files in `blobs`); the store stays open. */
export const checkStore = async (store: LevelStore, blobs?: BlobStore): Promise<CheckReport> => {
  const counts = emptyCounts()
  const problems: string[] = []
  const warnings: string[] = []
  const conversations = new Set<string>()
  const documents = new Set<string>()
  const archiveBalance = new Map<string, number>()
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const balance = (conv: string, d: number): void => { archiveBalance.set(conv, (archiveBalance.get(conv) ?? 0) + d) }

  for await (const [rawKey, rawValue] of store.rawEntries()) {
    const key = Buffer.from(rawKey).toString('utf8')
    const m = /^!([^!]+)!(.*)$/s.exec(key)
    if (m === null) { problems.push(`entry outside every sublevel: ${JSON.stringify(key)}`); continue }
    const [, sub, rest] = m
    const parts = rest.split('!')
    if (sub === 'bin') {
      if (parts[0] !== VERSION || parts.length !== 4) { counts.otherEntries++; continue }
      documents.add(parts[1])
      if (parts[2] === 'log') counts.logEntries++
      else if (parts[2] === 'snap') counts.snapshots++
      else counts.otherEntries++
      continue
    }
    let value: unknown
    try {
      value = JSON.parse(decoder.decode(rawValue))
    } catch {
      problems.push(`${sub} ${rest}: value is not JSON`)
      continue
    }
    const blobKey = sub === `s-${FILES_SECTION}` ? blobKeyOfRecordKey(rest) : null
    if (blobKey !== null && blobs !== undefined) {
      counts.files++
      const problem = await fileProblem(blobs, blobKey, value)
      if (problem !== null) problems.push(problem)
      continue
    }
    if (sub !== 'json' || parts[0] !== VERSION) { counts.otherEntries++; continue }
    switch (parts[1]) {
      case 'conv': counts.conversations++; conversations.add(parts[2]); break
      case 'user': counts.users++; break
      case 'member': counts.memberships++; break
      case 'arch': {
        counts.archivedMessages++
        const [conv, pos] = [parts[2], parseSeq(parts[3])]
        balance(conv, 1)
        if (!isPlainObject(value) || typeof value.id !== 'string') { problems.push(`archived message ${conv} at ${pos}: not a message`); break }
        const indexed = await store.archivePosOf(conv, value.id)
        if (indexed !== pos) problems.push(`archived message ${conv}/${value.id} at ${pos}: the archid index says ${indexed ?? 'nothing'}`)
        break
      }
      case 'archid':
        balance(parts[2], -1)
        if (typeof value !== 'number') problems.push(`archid ${parts[2]}/${parts.slice(3).join('!')}: not a position`)
        break
      default: counts.otherEntries++
    }
  }

  for (const [conv, diff] of archiveBalance) {
    // Every archived message has its index entry (checked above), so a surplus of index
    // entries means some point at nothing.
    if (diff < 0) problems.push(`conversation ${conv}: ${-diff} archid index entries point at no archived message`)
    if (!conversations.has(conv)) warnings.push(`archived messages of conversation ${conv}, which does not exist`)
  }
  let decoded = 0
  for (const conv of documents) {
    if (!conversations.has(conv)) warnings.push(`document data of conversation ${conv}, which does not exist`)
    const problem = await documentProblem(store, conv)
    if (problem === null) decoded++
    else problems.push(problem)
  }
  return { ok: problems.length === 0, counts, documents: decoded, problems, warnings }
}

const failed = (problems: string[]): CheckReport => ({ ok: false, counts: emptyCounts(), documents: 0, problems, warnings: [] })

/** Checks a data folder that no server is running on. Never modifies a damaged folder. */
export const checkDataFolder = async (dir: string): Promise<CheckReport> => {
  try {
    await stat(join(dir, 'CURRENT'))
  } catch {
    return failed([`${dir} holds no LevelDB data (no CURRENT file)`])
  }
  const logs = await verifyLevelLogs(dir)
  if (!logs.ok) return failed(logs.problems.map(p => `corrupted log: ${p} (see npm run repair)`))
  let store: LevelStore
  try {
    store = await LevelStore.open(dir)
  } catch (e) {
    if (isLevelLocked(e)) return failed([`${dir} is in use by a running server: stop it, or check a backup of it (npm run backup)`])
    return failed([`cannot open ${dir}: ${(e as Error).message.split('\n')[0]}`])
  }
  try {
    // The files folder beside LevelDB (app.ts), read as it is.
    return await checkStore(store, FsBlobStore.at(join(dir, 'files')))
  } finally {
    await store.close()
  }
}

/** Checks a backup file: verifies it while restoring it into a temporary folder, then checks that. */
export const checkBackupFile = async (file: string): Promise<CheckReport> => {
  const tmp = await mkdtemp(join(tmpdir(), 'parley-check-'))
  try {
    const dir = join(tmp, 'data')
    try {
      await restoreBackup({ from: file, data: dir })
    } catch (e) {
      return failed([`${file}: ${(e as Error).message}`])
    }
    return await checkDataFolder(dir)
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

/** The report as the lines `npm run check` prints. */
export const formatReport = (what: string, r: CheckReport): string => {
  const c = r.counts
  const lines = [
    `${what}: ${r.ok ? 'OK' : `${r.problems.length} problem(s)`}`,
    `  conversations ${c.conversations}, users ${c.users}, memberships ${c.memberships}`,
    `  log entries ${c.logEntries}, snapshots ${c.snapshots}, documents decoded ${r.documents}`,
    `  archived messages ${c.archivedMessages}, files ${c.files}, other entries ${c.otherEntries}`,
    ...r.warnings.map(w => `  warning: ${w}`),
    ...r.problems.map(p => `  problem: ${p}`)
  ]
  return lines.join('\n') + '\n'
}
