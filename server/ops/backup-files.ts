/**
 * Uploaded files in a backup (format v2, `format.ts`): which files go in, and their bytes.
 *
 * The files a backup holds are those whose records are in the backed-up entries: the keys are
 * collected while the entries stream past, and the files follow them. Files are written before
 * their records (file-service.ts), and a running server holds deletions while it streams a
 * backup (`FileService.hold`), so every record in the snapshot has its file. Files uploaded
 * after the snapshot are left out: no record of the backup names them. A file missing anyway
 * (lost before the backup) is left out, and `npm run check` of the backup reports it.
 */
import type { BlobStore } from '../storage/blob-port.ts'
import { blobKeyOfRecordKey, FILES_SECTION } from '../files/file-service.ts'
import { encodeBackup, type BackupFile, type BackupMeta } from './format.ts'

/** The raw LevelDB key prefix of the files section's entries (LevelStore's sublevel `s-<name>`). */
const RAW_PREFIX = `!s-${FILES_SECTION}!`

/** The blob key of a raw entry that is a file record, or null. */
export const blobKeyOfRawKey = (rawKey: Uint8Array): string | null => {
  const key = Buffer.from(rawKey.buffer, rawKey.byteOffset, rawKey.byteLength).toString('utf8')
  return key.startsWith(RAW_PREFIX) ? blobKeyOfRecordKey(key.slice(RAW_PREFIX.length)) : null
}

/** Passes `entries` through, adding each file record's blob key to `keys`. */
async function * tapFileKeys (entries: AsyncIterable<[Uint8Array, Uint8Array]>, keys: string[]): AsyncGenerator<[Uint8Array, Uint8Array]> {
  for await (const entry of entries) {
    const key = blobKeyOfRawKey(entry[0])
    if (key !== null) keys.push(key)
    yield entry
  }
}

/** The files named by `keys`, skipping those deleted since (see the module header). */
async function * filesOf (keys: readonly string[], blobs: BlobStore): AsyncGenerator<BackupFile> {
  for (const key of keys) {
    const found = await blobs.get(key)
    if (found === undefined) continue
    // Its first piece read now: a file deleted between the lookup and the open shows here.
    const it = (found.stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
    let first: IteratorResult<Uint8Array>
    try {
      first = await it.next()
    } catch (e) {
      if (await blobs.stat(key) === undefined) continue
      throw e
    }
    yield {
      key,
      size: found.size,
      bytes: (async function * () {
        if (first.done === true) return
        yield first.value
        for (let next = await it.next(); next.done !== true; next = await it.next()) yield next.value
      })()
    }
  }
}

/** A backup of the raw entries and, after them, the files their records name. */
export const encodeBackupWithFiles = (entries: AsyncIterable<[Uint8Array, Uint8Array]>, blobs: BlobStore, meta: BackupMeta): AsyncGenerator<Buffer> => {
  const keys: string[] = []
  return encodeBackup(tapFileKeys(entries, keys), meta, filesOf(keys, blobs))
}
