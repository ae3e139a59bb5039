/**
 * A reserve of disk space in the data folder, so a full disk never keeps the server from
 * starting.
 *
 * Opening LevelDB replays its log into a table file: it needs free space about the size of the
 * log (up to LevelDB's 4 MiB write buffer and more). On a disk that filled up while the server
 * ran, there is none, and LevelDB refuses to open. So the server keeps a file of real, written
 * bytes (`parley-reserve`) in the folder; when an open fails for lack of space, the reserve is
 * deleted and the open tried again. It is made again, when there is room for it, once storage
 * works. Best effort throughout: a reserve that cannot be made is simply not there.
 */
import { open, rm, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'

export const RESERVE_FILE = 'parley-reserve'
/** Written in chunks of this size (real bytes: a sparse file would reserve nothing). */
const CHUNK = 256 * 1024

/** Whether `error` says the disk (or quota) is full. */
export const isNoSpace = (error: unknown): boolean => {
  const seen = new Set<unknown>()
  for (let e = error; e !== undefined && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e)
    const code = (e as { code?: unknown }).code
    if (code === 'ENOSPC' || code === 'EDQUOT') return true
    if (e instanceof Error && /no space left on device|quota exceeded/i.test(e.message)) return true
  }
  return false
}

/**
 * Makes the reserve `bytes` long unless it is already there or the disk would be left with less
 * than `bytes` free afterwards. Never throws; a partial reserve is removed.
 */
export const ensureReserve = async (dir: string, bytes: number): Promise<boolean> => {
  if (bytes <= 0) return false
  const path = join(dir, RESERVE_FILE)
  try {
    if ((await stat(path).catch(() => null))?.size === bytes) return true
    const fs = await statfs(dir)
    if (fs.bavail * fs.bsize < 2 * bytes) return false
    const file = await open(path, 'w', 0o600)
    try {
      const zeros = new Uint8Array(CHUNK)
      for (let written = 0; written < bytes; written += CHUNK) await file.write(zeros, 0, Math.min(CHUNK, bytes - written))
      await file.sync()
    } finally {
      await file.close()
    }
    return true
  } catch {
    await rm(path, { force: true }).catch(() => {})
    return false
  }
}

/** Deletes the reserve; resolves to whether there was one. */
export const releaseReserve = async (dir: string): Promise<boolean> => {
  const path = join(dir, RESERVE_FILE)
  const there = await stat(path).then(() => true, () => false)
  if (there) await rm(path, { force: true })
  return there
}
