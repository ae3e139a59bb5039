/**
 * Writes a backup of a data folder (its LevelDB entries and its uploaded files, `files/`) to a
 * file, whether or not a server is running on it:
 * - a server recorded in `<data>/server.json` that answers: its `GET /v1/admin/backup` stream;
 * - otherwise the folder is opened directly (refused with STORAGE_CORRUPT when its log is damaged).
 * Either way the file is written under a temporary name, fsynced, read back and verified, and
 * only then renamed to its final name: a file under the final name is always a whole backup.
 */
import { open, rename, rm, stat, readFile } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { dirname, basename, join } from 'node:path'
import { Readable } from 'node:stream'
import { LevelStore } from '../storage/level-store.ts'
import { VERSION } from '../storage/keys.ts'
import { SECRET_FILE } from '../secret.ts'
import { readServerInfo } from '../server-info.ts'
import { FsBlobStore } from '../storage/fs-blob-store.ts'
import { encodeBackupWithFiles } from './backup-files.ts'
import { decodeBackup } from './format.ts'
import { BACKUP_PATH } from './routes.ts'
import { isLevelLocked, ToolError } from './tool-error.ts'

export interface BackupOptions {
  data: string
  to: string
  /** The app secret for the server route; default `<data>/secret`. */
  secret?: string
  /** The server's URL; default from `<data>/server.json`. */
  url?: string
  now?: () => number
}

export interface BackupResult {
  entries: number
  /** Uploaded files in the backup. */
  files: number
  via: 'server' | 'folder'
  bytes: number
}

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'

/** Verifies a backup file end to end; resolves with its entry and file counts or throws BackupFormatError. */
export const verifyBackupFile = async (file: string): Promise<{ entries: number, files: number }> => {
  for await (const part of decodeBackup(createReadStream(file))) if (part.kind === 'end') return { entries: part.count, files: part.files }
  throw new ToolError(`${file}: no end of backup`)
}

const readSecret = async (data: string): Promise<string> => {
  try {
    return (await readFile(join(data, SECRET_FILE), 'utf8')).trim()
  } catch (e) {
    if (isMissing(e)) throw new ToolError(`no secret: pass --secret or PARLEY_SECRET (there is no ${join(data, SECRET_FILE)})`)
    throw e
  }
}

/** The server's backup stream, or null when no server answers at `url`. */
const streamFromServer = async (url: string, secret: string): Promise<AsyncIterable<Uint8Array> | null> => {
  let res: Response
  try {
    res = await fetch(new URL(BACKUP_PATH, url), { headers: { authorization: `Bearer ${secret}` } })
  } catch {
    // Connection refused or reset: no server answers there (a stale server.json after a crash).
    return null
  }
  if (!res.ok || res.body === null) {
    const text = await res.text().catch(() => '')
    throw new ToolError(`the server at ${url} refused the backup: HTTP ${res.status} ${text.slice(0, 200)}`)
  }
  return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)
}


const writeFileDurably = async (path: string, chunks: AsyncIterable<Uint8Array>): Promise<number> => {
  const fh = await open(path, 'wx', 0o600)
  let bytes = 0
  try {
    for await (const chunk of chunks) {
      await fh.write(chunk)
      bytes += chunk.length
    }
    await fh.sync()
  } finally {
    await fh.close()
  }
  return bytes
}

/** Makes a rename in `dir` durable. */
export const syncDirectory = async (dir: string): Promise<void> => {
  const dh = await open(dir, 'r')
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

/** Writes a verified backup of `opts.data` to `opts.to` (see the module header); ToolError on refusal. */
export const backupDataFolder = async (opts: BackupOptions): Promise<BackupResult> => {
  const now = opts.now ?? Date.now
  try {
    await stat(join(opts.data, 'CURRENT'))
  } catch (e) {
    if (isMissing(e)) throw new ToolError(`${opts.data} holds no Parley data (no LevelDB CURRENT file)`)
    throw e
  }
  const tmp = join(dirname(opts.to), `.${basename(opts.to)}.partial-${process.pid}-${now()}`)
  let via: BackupResult['via'] = 'server'
  let store: LevelStore | null = null
  try {
    const url = opts.url ?? (await readServerInfo(opts.data))?.url
    let chunks = url === undefined ? null : await streamFromServer(url, opts.secret ?? await readSecret(opts.data))
    if (chunks === null) {
      via = 'folder'
      try {
        store = await LevelStore.open(opts.data)
      } catch (e) {
        if (isLevelLocked(e)) throw new ToolError(`${opts.data} is in use by a running server that did not answer${url === undefined ? ' (no server.json)' : ` at ${url}`}; pass --url`)
        throw e
      }
      // The files folder beside LevelDB (app.ts); nothing else writes it while we hold the lock.
      chunks = encodeBackupWithFiles(store.rawEntries(), await FsBlobStore.open(join(opts.data, 'files')), { createdAt: now(), layout: VERSION })
    }
    const bytes = await writeFileDurably(tmp, chunks)
    if (store !== null) await store.close()
    store = null
    const { entries, files } = await verifyBackupFile(tmp)
    await rename(tmp, opts.to)
    await syncDirectory(dirname(opts.to))
    return { entries, files, via, bytes }
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  } finally {
    if (store !== null) await store.close()
  }
}
