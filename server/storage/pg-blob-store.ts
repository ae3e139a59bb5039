/**
 * The blob port on PostgreSQL (`--postgres`): uploaded files live in the database every node
 * shares, so a file uploaded through one node is served by any other, and a backup of the
 * database (pg_dump) holds them too. The embedded default keeps them on disk (`fs-blob-store.ts`).
 *
 * Layout, in the store's schema, versioned apart from `pg-schema.ts` (its own version table, so
 * the document store's migrations and these never touch each other):
 *   blob_schema_version (version, applied_at)      migrations of these tables applied
 *   blobs        (key, blob_id, size, chunk_bytes) a complete blob: its key names its chunks
 *   blob_chunks  (blob_id, n, bytes)               chunk n (from 0); every chunk but the last
 *                                                  holds exactly chunk_bytes bytes
 *   blob_uploads (blob_id, touched_at)             a put in progress (its chunks are not a blob yet)
 *
 * A put streams: each chunk is inserted as it is filled, in its own short transaction (while the
 * next one fills), so a slow upload never holds a connection or a lock between chunks, and
 * memory holds two chunks at most. The
 * blob becomes visible in one last transaction that points its key at the chunks (and drops
 * the chunks of the blob it replaces). That one commits synchronously; the chunk transactions
 * commit with `synchronous_commit = off`, which is safe because PostgreSQL flushes its WAL in
 * order: the flush of the last commit makes every earlier chunk durable too. So the blob is
 * durable when `put` resolves, and writing it costs one WAL flush, not one per chunk.
 * A put that fails deletes its chunks; one cut off by a crash leaves a `blob_uploads` row that
 * `sweepAbandoned` (run by the files' periodic sweep, on any node) clears once it is idle for
 * an hour.
 *
 * Reads fetch one chunk per query (a range only the chunks it covers), the next one while the
 * last is sent, so a download holds two chunks in memory at most and no connection while the
 * client reads. A blob deleted while it is being
 * read ends the stream with an error, never with a short file.
 *
 * A failure of PostgreSQL (unreachable, shutting down) is STORAGE_UNAVAILABLE (503).
 */
import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import postgres from 'postgres'
import { ChatError } from '../../shared/errors.ts'
import { UploadMeter, type BlobStore, type PutResult } from './blob-port.ts'
import { isEngineFailure, migrateSchema } from './pg-store.ts'
import { parsePgUrl, type PgTarget } from './pg-url.ts'

/** Bytes per chunk row (PostgreSQL stores each out of line, uncompressed: see STORAGE EXTERNAL). */
export const DEFAULT_CHUNK_BYTES = 256 * 1024
/** A put whose last chunk is older than this is abandoned (its node died mid-upload). */
const ABANDONED_MS = 60 * 60 * 1000

/** Migration N brings these tables from version N-1 to N. Never edit a released one. */
const BLOB_MIGRATIONS: ReadonlyArray<{ version: number, statements: readonly string[] }> = [
  {
    version: 1,
    statements: [
      'CREATE TABLE blobs (key text COLLATE "C" PRIMARY KEY, blob_id uuid NOT NULL UNIQUE, size bigint NOT NULL, chunk_bytes integer NOT NULL)',
      'CREATE TABLE blob_chunks (blob_id uuid NOT NULL, n integer NOT NULL, bytes bytea NOT NULL, PRIMARY KEY (blob_id, n))',
      // Uploaded files are mostly compressed already (images, PDFs, archives): do not try again.
      'ALTER TABLE blob_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL',
      'CREATE TABLE blob_uploads (blob_id uuid PRIMARY KEY, touched_at timestamptz NOT NULL)'
    ]
  }
]

/** The tables holding blobs: a migration target must have none. */
export const BLOB_TABLES = ['blobs', 'blob_chunks', 'blob_uploads'] as const

export interface PgBlobStoreOptions {
  /** postgres://user:password@host:port/database, optionally with `?schema=NAME` (default public). */
  url: string
  /** The schema holding the tables; wins over the URL's `?schema=`. */
  schema?: string
  /** Connections in the pool (default 4): apart from the document store's, so uploads never starve its writes. */
  max?: number
  /** Bytes per chunk row (default 256 KiB); each blob keeps the size it was written with. */
  chunkBytes?: number
}

const connect = (target: PgTarget, max: number) => postgres(target.url, {
  max,
  connect_timeout: 5,
  onnotice: () => {},
  connection: { application_name: `parley-blobs ${target.schema}`.slice(0, 63), search_path: target.schema, synchronous_commit: 'on' },
  types: {
    bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) }
  }
})

type Sql = ReturnType<typeof connect>

/** Keys under `prefix/`: with the "C" collation, `prefix/` up to (not including) `prefix0`. */
const under = (prefix: string): { from: string, to: string } => ({ from: `${prefix}/`, to: `${prefix}0` })

export class PgBlobStore implements BlobStore {
  private readonly sql: Sql
  private readonly target: PgTarget
  private readonly chunkBytes: number

  private constructor (sql: Sql, target: PgTarget, chunkBytes: number) {
    this.sql = sql
    this.target = target
    this.chunkBytes = chunkBytes
  }

  /** Connects, and creates or upgrades the tables. Rejects when PostgreSQL cannot be reached. */
  static async open (options: PgBlobStoreOptions): Promise<PgBlobStore> {
    const target = parsePgUrl(options.url, options.schema)
    const sql = connect(target, options.max ?? 4)
    try {
      await migrateSchema(sql, target.schema, { versionTable: 'blob_schema_version', migrations: BLOB_MIGRATIONS, what: `the file tables in PostgreSQL schema ${target.schema} are` })
    } catch (e) {
      await sql.end({ timeout: 0 })
      throw e
    }
    return new PgBlobStore(sql, target, options.chunkBytes ?? DEFAULT_CHUNK_BYTES)
  }

  /** The database, without its password. */
  get location (): string { return this.target.redacted }

  async close (): Promise<void> {
    await this.sql.end({ timeout: 5 })
  }

  /** Runs `fn`, turning a failure of PostgreSQL into STORAGE_UNAVAILABLE. */
  private async run<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      if (!isEngineFailure(e)) throw e
      throw new ChatError('STORAGE_UNAVAILABLE', `PostgreSQL at ${this.target.address} failed while storing files: ${(e as Error).message.split('\n')[0]}`)
    }
  }

  async put (key: string, source: AsyncIterable<Uint8Array>, opts: { maxBytes: number, headBytes: number }): Promise<PutResult> {
    const blobId = randomUUID()
    const sql = this.sql
    const chunkBytes = this.chunkBytes
    const meter = new UploadMeter(opts)
    let n = 0
    let fill = Buffer.allocUnsafe(chunkBytes)
    let filled = 0
    const insert = async (index: number, bytes: Buffer): Promise<void> => {
      await this.run(async () => await sql.begin(async tx => {
        // Durable with the put's last (synchronous) commit: see the module header.
        await tx`SET LOCAL synchronous_commit = off`
        await tx`
          WITH touched AS (UPDATE blob_uploads SET touched_at = now() WHERE blob_id = ${blobId})
          INSERT INTO blob_chunks (blob_id, n, bytes) VALUES (${blobId}, ${index}, ${bytes})`
      }))
    }
    // One chunk is inserted while the next one fills: at most two chunks in memory.
    const sending: { insert: Promise<void> | null } = { insert: null }
    const flush = async (): Promise<void> => {
      const bytes = fill.subarray(0, filled)
      // A fresh buffer: the one just filled is still being sent.
      fill = Buffer.allocUnsafe(chunkBytes)
      filled = 0
      await sending.insert
      sending.insert = insert(n++, bytes)
      sending.insert.catch(() => {}) // awaited (and thrown) at the next flush or at the end
    }
    // Asynchronous too: WAL order keeps it before its chunks, so no chunk outlives it in a crash.
    await this.run(async () => await sql.begin(async tx => {
      await tx`SET LOCAL synchronous_commit = off`
      await tx`INSERT INTO blob_uploads (blob_id, touched_at) VALUES (${blobId}, now())`
    }))
    try {
      for await (const chunk of source) {
        meter.take(chunk)
        let at = 0
        while (at < chunk.byteLength) {
          const take = Math.min(chunk.byteLength - at, chunkBytes - filled)
          fill.set(chunk.subarray(at, at + take), filled)
          filled += take
          at += take
          if (filled === chunkBytes) await flush()
        }
      }
      if (filled > 0) await flush()
      await sending.insert
      await this.run(async () => await sql.begin(async tx => {
        // One writer per key at a time, so a replaced blob's chunks are always found and dropped.
        await tx`SELECT pg_advisory_xact_lock(hashtext(${`parley-blob:${key}`}))`
        const old = await tx`SELECT blob_id FROM blobs WHERE key = ${key}`
        await tx`
          INSERT INTO blobs (key, blob_id, size, chunk_bytes) VALUES (${key}, ${blobId}, ${meter.size}, ${chunkBytes})
          ON CONFLICT (key) DO UPDATE SET blob_id = excluded.blob_id, size = excluded.size, chunk_bytes = excluded.chunk_bytes`
        if (old.length > 0) await tx`DELETE FROM blob_chunks WHERE blob_id = ${old[0].blob_id as string}`
        await tx`DELETE FROM blob_uploads WHERE blob_id = ${blobId}`
      }))
    } catch (e) {
      // Once no insert is in flight. Best effort: if PostgreSQL is gone, sweepAbandoned clears them later.
      await sending.insert?.catch(() => {})
      await this.dropUpload(blobId).catch(() => {})
      throw e
    }
    return meter.result()
  }

  private async dropUpload (blobId: string): Promise<void> {
    await this.sql.begin(async tx => {
      await tx`DELETE FROM blob_chunks WHERE blob_id = ${blobId}`
      await tx`DELETE FROM blob_uploads WHERE blob_id = ${blobId}`
    })
  }

  async get (key: string, range?: { start: number, end: number }): Promise<{ size: number, stream: Readable } | undefined> {
    const sql = this.sql
    const rows = await this.run(async () => await sql`SELECT blob_id, size, chunk_bytes FROM blobs WHERE key = ${key}`)
    if (rows.length === 0) return undefined
    const blobId = rows[0].blob_id as string
    const size = rows[0].size as number
    const chunkBytes = rows[0].chunk_bytes as number
    // Inclusive, clamped to the blob as a file read is.
    const start = Math.max(0, range?.start ?? 0)
    const end = Math.min(size - 1, range?.end ?? size - 1)
    const run = this.run.bind(this)
    const fetch = async (n: number): Promise<Buffer> => {
      const found = await run(async () => await sql`SELECT bytes FROM blob_chunks WHERE blob_id = ${blobId} AND n = ${n}`)
      if (found.length === 0) throw new Error(`blob ${key} was deleted while it was read`)
      return found[0].bytes as Buffer
    }
    async function * bytes (): AsyncGenerator<Buffer> {
      if (end < start) return
      const last = Math.floor(end / chunkBytes)
      let next: Promise<Buffer> | null = null
      try {
        for (let n = Math.floor(start / chunkBytes); n <= last; n++) {
          const chunk: Buffer = await (next ?? fetch(n))
          // The next chunk is read while this one is sent: at most two in memory.
          next = n < last ? fetch(n + 1) : null
          const from = n * chunkBytes
          yield chunk.subarray(Math.max(0, start - from), Math.min(chunk.length, end - from + 1))
        }
      } finally {
        // A download cut off: the read ahead is dropped, its failure too.
        next?.catch(() => {})
      }
    }
    return { size, stream: Readable.from(bytes(), { objectMode: false }) }
  }

  async stat (key: string): Promise<{ size: number } | undefined> {
    const rows = await this.run(async () => await this.sql`SELECT size FROM blobs WHERE key = ${key}`)
    return rows.length === 0 ? undefined : { size: rows[0].size as number }
  }

  async delete (key: string): Promise<void> {
    await this.run(async () => await this.sql.begin(async tx => {
      const gone = await tx`DELETE FROM blobs WHERE key = ${key} RETURNING blob_id`
      if (gone.length > 0) await tx`DELETE FROM blob_chunks WHERE blob_id = ${gone[0].blob_id as string}`
    }))
  }

  async deletePrefix (prefix: string): Promise<void> {
    const { from, to } = under(prefix)
    await this.run(async () => await this.sql.begin(async tx => {
      await tx`
        WITH gone AS (DELETE FROM blobs WHERE key >= ${from} AND key < ${to} RETURNING blob_id)
        DELETE FROM blob_chunks WHERE blob_id IN (SELECT blob_id FROM gone)`
    }))
  }

  async * list (prefix: string): AsyncIterable<string> {
    const { from, to } = under(prefix)
    let after = from
    for (;;) {
      const rows = await this.run(async () => await this.sql`SELECT key FROM blobs WHERE key > ${after} AND key < ${to} ORDER BY key LIMIT 500`)
      for (const r of rows) yield r.key as string
      if (rows.length < 500) return
      after = rows[rows.length - 1].key as string
    }
  }

  /** Deletes the chunks of puts idle for over `idleMs` (their node died mid-upload); returns how many puts. */
  async sweepAbandoned (idleMs = ABANDONED_MS): Promise<number> {
    const rows = await this.run(async () => await this.sql`
      SELECT blob_id FROM blob_uploads WHERE touched_at < now() - make_interval(secs => ${idleMs / 1000})`)
    for (const r of rows) await this.run(async () => { await this.dropUpload(r.blob_id as string) })
    return rows.length
  }

  /** The blob tables that hold rows (none: no blob, chunk or put in progress), for migrations. */
  async nonEmptyTables (): Promise<string[]> {
    const out: string[] = []
    for (const table of BLOB_TABLES) {
      const rows = await this.run(async () => await this.sql`SELECT 1 FROM ${this.sql(table)} LIMIT 1`)
      if (rows.length > 0) out.push(table)
    }
    return out
  }

  /** Blobs stored and their total size, for reports and docs/cluster.md's sizing. */
  async totals (): Promise<{ blobs: number, bytes: number }> {
    const [r] = await this.run(async () => await this.sql`SELECT count(*)::int8 AS blobs, COALESCE(sum(size), 0)::int8 AS bytes FROM blobs`)
    return { blobs: r.blobs as number, bytes: r.bytes as number }
  }
}

