/**
 * The blob port on the local file system (the embedded default): `<root>/<segment>/<segment>`,
 * each key segment prefixed with `_` so ids such as `.` or `..` stay plain names.
 *
 * A put streams into `<root>/.tmp/<random>` (never read by `get`), fsyncs it, renames it into
 * place and fsyncs the folder: a reader sees the whole blob or none, also after a crash. A put
 * that fails (source error, size limit) removes its temp file; `open` clears temp files a crash
 * left behind.
 */
import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { UploadMeter, type BlobStore, type PutResult } from './blob-port.ts'

const TMP = '.tmp'

/** The path of a key's blob (or folder) under `root`. */
const pathOf = (root: string, key: string): string => join(root, ...key.split('/').map(s => `_${s}`))

const fsyncDir = async (dir: string): Promise<void> => {
  const h = await open(dir, 'r')
  try { await h.sync() } finally { await h.close() }
}

const isNotFound = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'

export class FsBlobStore implements BlobStore {
  readonly root: string

  private constructor (root: string) {
    this.root = root
  }

  /** Opens (creating) the folder and removes temp files an interrupted put left. */
  static async open (root: string): Promise<FsBlobStore> {
    await rm(join(root, TMP), { recursive: true, force: true })
    await mkdir(join(root, TMP), { recursive: true })
    return new FsBlobStore(root)
  }

  /** The store in `root` as it is, touching nothing (for tools that only read, such as `npm run check`). */
  static at (root: string): FsBlobStore {
    return new FsBlobStore(root)
  }

  /** Temp files now in the folder (puts in flight or interrupted); for tests and checks. */
  async tempFiles (): Promise<string[]> {
    return await readdir(join(this.root, TMP)).catch(e => { if (isNotFound(e)) return []; throw e })
  }

  async put (key: string, source: AsyncIterable<Uint8Array>, opts: { maxBytes: number, headBytes: number }): Promise<PutResult> {
    const tmp = join(this.root, TMP, randomUUID())
    let handle: FileHandle | null = await open(tmp, 'wx', 0o600)
    const meter = new UploadMeter(opts)
    try {
      for await (const chunk of source) {
        meter.take(chunk)
        await handle.write(chunk)
      }
      await handle.sync()
      await handle.close()
      handle = null
      const dest = pathOf(this.root, key)
      const dir = join(dest, '..')
      await mkdir(dir, { recursive: true })
      await rename(tmp, dest)
      await fsyncDir(dir)
    } catch (e) {
      if (handle !== null) await handle.close().catch(() => {})
      await rm(tmp, { force: true })
      throw e
    }
    return meter.result()
  }

  async get (key: string, range?: { start: number, end: number }): Promise<{ size: number, stream: ReturnType<typeof createReadStream> } | undefined> {
    const found = await this.stat(key)
    if (found === undefined) return undefined
    const stream = createReadStream(pathOf(this.root, key), range === undefined ? {} : { start: range.start, end: range.end })
    return { size: found.size, stream }
  }

  async stat (key: string): Promise<{ size: number } | undefined> {
    try {
      const s = await stat(pathOf(this.root, key))
      return s.isFile() ? { size: s.size } : undefined
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw e
    }
  }

  async delete (key: string): Promise<void> {
    await rm(pathOf(this.root, key), { force: true })
  }

  async deletePrefix (prefix: string): Promise<void> {
    await rm(pathOf(this.root, prefix), { recursive: true, force: true })
  }

  async * list (prefix: string): AsyncIterable<string> {
    let names: string[]
    try {
      names = await readdir(pathOf(this.root, prefix))
    } catch (e) {
      if (isNotFound(e)) return
      throw e
    }
    for (const n of names) if (n.startsWith('_')) yield `${prefix}/${n.slice(1)}`
  }
}
