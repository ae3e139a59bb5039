/**
 * Restores a backup file into a new (or empty) data folder. The entries go into a temporary
 * LevelDB folder next to the target, the uploaded files into its `files/` (streamed, one at a
 * time); only once the whole file has been read and its count and checksum verified is that
 * folder renamed to the target. A damaged backup leaves nothing behind.
 * The app secret is not part of a backup: pass `--secret` or copy the `secret` file.
 */
import { createReadStream } from 'node:fs'
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { dirname, basename, join, resolve } from 'node:path'
import { Level } from 'level'
import { VERSION } from '../storage/keys.ts'
import { FsBlobStore } from '../storage/fs-blob-store.ts'
import { decodeBackup, type BackupMeta } from './format.ts'
import { syncDirectory } from './backup.ts'
import { ToolError } from './tool-error.ts'

/** Entries written (and fsynced) per LevelDB batch while restoring. */
const BATCH_ENTRIES = 1000
const BATCH_BYTES = 4 * 1024 * 1024

export interface RestoreResult {
  entries: number
  files: number
  meta: BackupMeta
}

/** Refuses (ToolError) a target that exists and is not an empty folder. */
const requireEmptyTarget = async (data: string): Promise<void> => {
  let names: string[]
  try {
    if (!(await stat(data)).isDirectory()) throw new ToolError(`refusing to restore into ${data}: it is not a folder`)
    names = await readdir(data)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  if (names.length > 0) throw new ToolError(`refusing to restore into ${data}: it is not empty`)
}

/** Restores `opts.from` into the new or empty folder `opts.data`; ToolError or BackupFormatError on refusal. */
export const restoreBackup = async (opts: { from: string, data: string }): Promise<RestoreResult> => {
  await requireEmptyTarget(opts.data)
  try {
    await stat(opts.from)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ToolError(`no such backup file: ${opts.from}`)
    throw e
  }
  const target = resolve(opts.data)
  await mkdir(dirname(target), { recursive: true })
  const tmp = join(dirname(target), `.${basename(target)}.restoring-${process.pid}`)
  await rm(tmp, { recursive: true, force: true })
  const db = new Level<Uint8Array, Uint8Array>(tmp, { keyEncoding: 'view', valueEncoding: 'view' })
  let closed = false
  try {
    await db.open()
    let meta: BackupMeta | null = null
    let batch: Array<{ type: 'put', key: Uint8Array, value: Uint8Array }> = []
    let batchBytes = 0
    let entries = -1
    let files = 0
    let blobs: FsBlobStore | null = null
    for await (const part of decodeBackup(createReadStream(opts.from))) {
      if (part.kind === 'meta') {
        if (part.meta.layout !== VERSION) throw new ToolError(`the backup has storage layout ${part.meta.layout}; this Parley reads ${VERSION}`)
        meta = part.meta
      } else if (part.kind === 'entry') {
        batch.push({ type: 'put', key: part.key, value: part.value })
        batchBytes += part.key.length + part.value.length
        if (batch.length >= BATCH_ENTRIES || batchBytes >= BATCH_BYTES) {
          await db.batch(batch, { sync: true })
          batch = []
          batchBytes = 0
        }
      } else if (part.kind === 'file') {
        // The folder beside LevelDB where the server keeps them (app.ts).
        blobs ??= await FsBlobStore.open(join(tmp, 'files'))
        await blobs.put(part.key, part.bytes, { maxBytes: part.size, headBytes: 0 })
      } else {
        entries = part.count
        files = part.files
      }
    }
    if (meta === null || entries < 0) throw new ToolError(`${opts.from}: incomplete backup`)
    await db.batch(batch, { sync: true })
    await db.close()
    closed = true
    // rename(2) replaces an empty target folder, and fails if anything appeared in it meanwhile.
    await rename(tmp, target)
    await syncDirectory(dirname(target))
    return { entries, files, meta }
  } catch (e) {
    if (!closed) await db.close().catch(() => {})
    await rm(tmp, { recursive: true, force: true })
    throw e
  }
}
