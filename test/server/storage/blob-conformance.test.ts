/**
 * The blob port's conformance suite against the data folder's store and PostgreSQL's (each case
 * in its own folder or schema), and what only the PostgreSQL store has to prove: a put cut off by
 * a crash is swept, a lost server is STORAGE_UNAVAILABLE, and blobs are chunked as documented.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isChatError } from '../../../shared/errors.ts'
import { FsBlobStore } from '../../../server/storage/fs-blob-store.ts'
import { PgBlobStore } from '../../../server/storage/pg-blob-store.ts'
import { createTestSchema, PG_URL, type TestSchema } from '../../helpers/postgres.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'
import { runBlobConformance } from './blob-conformance.ts'

runBlobConformance('FsBlobStore', async () => {
  const root = await mkdtemp(join(tmpdir(), 'parley-blobs-'))
  const store = await FsBlobStore.open(root)
  return {
    store,
    residue: async () => (await store.tempFiles()).length,
    reopen: async () => await FsBlobStore.open(root),
    cleanup: async () => { await rm(root, { recursive: true, force: true }) }
  }
})

/** Chunks no blob owns, and puts in progress. */
const pgResidue = async (schema: TestSchema): Promise<number> => {
  const q = schema.admin
  const s = q(schema.schema)
  const [{ n }] = await q`
    SELECT (SELECT count(*) FROM ${s}.blob_chunks c WHERE NOT EXISTS (SELECT 1 FROM ${s}.blobs b WHERE b.blob_id = c.blob_id))
         + (SELECT count(*) FROM ${s}.blob_uploads) AS n`
  return Number(n)
}

runBlobConformance('PgBlobStore', async () => {
  const schema = await createTestSchema()
  // Small chunks: every test crosses chunk boundaries.
  const store = await PgBlobStore.open({ url: PG_URL, schema: schema.schema, chunkBytes: 1_000 })
  const opened: PgBlobStore[] = [store]
  return {
    store,
    residue: async () => await pgResidue(schema),
    reopen: async () => {
      const again = await PgBlobStore.open({ url: schema.url })
      opened.push(again)
      return again
    },
    cleanup: async () => {
      await Promise.all(opened.map(async s => await s.close()))
      await schema.drop()
    }
  }
})

const Pg = suite('PgBlobStore')

const collect = async (stream: AsyncIterable<unknown>): Promise<Buffer> => {
  const parts: Buffer[] = []
  for await (const p of stream) parts.push(Buffer.from(p as Uint8Array))
  return Buffer.concat(parts)
}

Pg('a blob is kept as fixed-size chunk rows; a second node reads what the first wrote, and ranges read only their chunks', async () => {
  const schema = await createTestSchema()
  const [a, b] = await Promise.all([
    PgBlobStore.open({ url: schema.url, chunkBytes: 4_096 }),
    PgBlobStore.open({ url: schema.url })
  ])
  try {
    const bytes = randomBytes(10_000)
    await a.put('c/f', (async function * () { yield bytes })(), { maxBytes: 10_000, headBytes: 0 })
    const q = schema.admin
    const rows = await q`SELECT n, length(bytes) AS len FROM ${q(schema.schema)}.blob_chunks ORDER BY n`
    assert.equal(rows.map(r => [r.n, r.len]), [[0, 4_096], [1, 4_096], [2, 1_808]])
    // b writes with its own (default) chunk size, and reads a's with a's.
    assert.ok((await collect((await b.get('c/f'))!.stream)).equals(bytes))
    assert.ok((await collect((await b.get('c/f', { start: 4_095, end: 8_192 }))!.stream)).equals(bytes.subarray(4_095, 8_193)))
    assert.equal(await b.totals(), { blobs: 1, bytes: 10_000 })
    assert.equal(await b.nonEmptyTables(), ['blobs', 'blob_chunks'])
    const versions = await q`SELECT version FROM ${q(schema.schema)}.blob_schema_version`
    assert.equal(versions.map(r => r.version), [1], 'tables created once by two stores opening together')
  } finally {
    await Promise.all([a.close(), b.close()])
    await schema.drop()
  }
})

Pg('a put cut off by its node\'s death leaves chunks that sweepAbandoned clears once idle, on any node', async () => {
  const schema = await createTestSchema()
  const dying = await PgBlobStore.open({ url: schema.url, chunkBytes: 1_000 })
  const other = await PgBlobStore.open({ url: schema.url })
  try {
    let wrote = (): void => {}
    const written = new Promise<void>(resolve => { wrote = resolve })
    const source = async function * (): AsyncGenerator<Uint8Array> {
      yield randomBytes(5_500)
      wrote()
      await new Promise(resolve => setTimeout(resolve, 200))
      yield randomBytes(5_500)
    }
    const putting = dying.put('c/f', source(), { maxBytes: 1e9, headBytes: 0 }).then(() => 'stored', () => 'failed')
    await written
    // Its pool gone at once, as with a kill -9: neither the put nor its cleanup reach PostgreSQL.
    await (dying as unknown as { sql: { end: (o: { timeout: number }) => Promise<void> } }).sql.end({ timeout: 0 })
    assert.is(await putting, 'failed')
    assert.ok(await pgResidue(schema) > 0, 'leftovers of the put')
    assert.is(await other.stat('c/f'), undefined, 'never visible')
    assert.is(await other.sweepAbandoned(), 0, 'not idle for an hour yet: it could be a slow upload')
    assert.is(await other.sweepAbandoned(0), 1)
    assert.is(await pgResidue(schema), 0)
    assert.equal(await other.nonEmptyTables(), [])
  } finally {
    await other.close()
    await schema.drop()
  }
})

Pg('a lost server is STORAGE_UNAVAILABLE for puts and reads, and the store works again once it is back', async () => {
  const schema = await createTestSchema()
  const proxy = await startTcpProxy(Number(new URL(PG_URL).port || 5432), new URL(PG_URL).hostname)
  const store = await PgBlobStore.open({ url: schema.urlVia(proxy.port) })
  try {
    await store.put('c/a', (async function * () { yield Buffer.from('first') })(), { maxBytes: 100, headBytes: 0 })
    await proxy.stop()
    for (const attempt of [
      async () => await store.put('c/b', (async function * () { yield Buffer.from('second') })(), { maxBytes: 100, headBytes: 0 }),
      async () => await store.get('c/a')
    ]) {
      try {
        await attempt()
        assert.unreachable('answered without PostgreSQL')
      } catch (e) {
        assert.ok(isChatError(e) && e.code === 'STORAGE_UNAVAILABLE', String(e))
        assert.match((e as Error).message, /PostgreSQL at 127\.0\.0\.1:\d+ failed while storing files/)
      }
    }
    await proxy.start()
    assert.equal((await collect((await store.get('c/a'))!.stream)).toString(), 'first')
  } finally {
    await proxy.start().catch(() => {})
    await store.close()
    await proxy.stop()
    await schema.drop()
  }
})

Pg.run()
