/**
 * Node's local store: one folder per conversation under `dir`, holding
 *   log        the update log: frames of [u32 big-endian length][update bytes], appended;
 *              a torn last frame (a crash mid-write) is ignored on load;
 *   meta.json  `LocalMeta`, replaced atomically (write, then rename);
 *   lock       the pid and a random tag of the process holding the claim; a lock of a dead
 *              process is taken over.
 * See `storage.ts` for what is kept and why. Node only: import it from `parley/client/node`.
 */
import { appendFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ClientStore, LocalDoc, LocalMeta } from './storage.ts'

const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'
const isTaken = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'EEXIST'

const frame = (update: Uint8Array): Uint8Array => {
  const out = new Uint8Array(4 + update.byteLength)
  new DataView(out.buffer).setUint32(0, update.byteLength)
  out.set(update, 4)
  return out
}

const readFrames = (bytes: Uint8Array): Uint8Array[] => {
  const out: Uint8Array[] = []
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  while (at + 4 <= bytes.byteLength) {
    const len = view.getUint32(at)
    if (at + 4 + len > bytes.byteLength) break
    out.push(bytes.slice(at + 4, at + 4 + len))
    at += 4 + len
  }
  return out
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Tries to create the lock file; takes over a lock whose process is gone. */
const takeLock = async (path: string, tag: string): Promise<boolean> => {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx')
      await fh.writeFile(`${process.pid} ${tag}`)
      await fh.close()
      return true
    } catch (e) {
      if (!isTaken(e)) throw e
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).split(' ')[0])
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return false
      await rm(path, { force: true })
    }
  }
  return false
}

/** A folder-backed store for Node apps. */
export const fileStore = (dir: string): ClientStore => ({
  async claim (key) {
    const folder = join(dir, encodeURIComponent(key))
    await mkdir(folder, { recursive: true })
    const tag = Math.random().toString(36).slice(2)
    if (!(await takeLock(join(folder, 'lock'), tag))) return null
    const log = join(folder, 'log')
    const metaPath = join(folder, 'meta.json')
    const local: LocalDoc = {
      async load () {
        const bytes = await readFile(log).catch(e => { if (isMissing(e)) return null; throw e })
        const metaText = await readFile(metaPath, 'utf8').catch(e => { if (isMissing(e)) return null; throw e })
        return {
          updates: bytes === null ? [] : readFrames(new Uint8Array(bytes)),
          meta: metaText === null ? null : JSON.parse(metaText) as LocalMeta
        }
      },
      async append (update) { await appendFile(log, frame(update)) },
      async compact (snapshot) {
        await writeFile(log + '.tmp', frame(snapshot))
        await rename(log + '.tmp', log)
      },
      async saveMeta (meta) {
        await writeFile(metaPath + '.tmp', JSON.stringify(meta))
        await rename(metaPath + '.tmp', metaPath)
      },
      async clear () {
        await rm(log, { force: true })
        await rm(metaPath, { force: true })
      },
      async release () { await rm(join(folder, 'lock'), { force: true }) }
    }
    return local
  }
})
