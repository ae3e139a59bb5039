/**
 * The conformance suite of the blob port (server/storage/blob-port.ts): every promise a
 * BlobStore makes, as behaviour sentences, run against each store (the data folder's and
 * PostgreSQL's, in blob-conformance.test.ts). A new blob store passes this before the server
 * may use it.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { BlobTooLarge, type BlobStore } from '../../../server/storage/blob-port.ts'

export interface OpenedBlobStore {
  store: BlobStore
  /** What the store holds besides its visible blobs (temp files, chunks of unfinished puts). */
  residue: () => Promise<number>
  /** The same storage opened anew (a restart, or another node): what it sees was made durable. */
  reopen: () => Promise<BlobStore>
  /** Closes every store opened and removes what they stored. */
  cleanup: () => Promise<void>
}

const NO_LIMIT = { maxBytes: Number.MAX_SAFE_INTEGER, headBytes: 16 }

/** `bytes` as a source of pieces of `piece` bytes (uneven sizes cross every chunk boundary). */
async function * pieces (bytes: Uint8Array, piece: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += piece) yield bytes.subarray(at, Math.min(bytes.length, at + piece))
}

const read = async (stream: Readable): Promise<Buffer> => {
  const parts: Buffer[] = []
  for await (const part of stream) parts.push(Buffer.from(part as Uint8Array))
  return Buffer.concat(parts)
}

const readBlob = async (store: BlobStore, key: string, range?: { start: number, end: number }): Promise<Buffer | undefined> => {
  const found = await store.get(key, range)
  return found === undefined ? undefined : await read(found.stream)
}

const keysUnder = async (store: BlobStore, prefix: string): Promise<string[]> => {
  const out: string[] = []
  for await (const k of store.list(prefix)) out.push(k)
  return out.sort()
}

const rejects = async (p: Promise<unknown>, check: (e: unknown) => boolean, what: string): Promise<void> => {
  try {
    await p
  } catch (e) {
    assert.ok(check(e), `${what}: got ${String(e)}`)
    return
  }
  assert.unreachable(`${what}: accepted`)
}

/** Registers and runs the suite; `open` gives a fresh, empty store. */
export const runBlobConformance = (name: string, open: () => Promise<OpenedBlobStore>): void => {
  const S = suite<{ opened: OpenedBlobStore, store: BlobStore }>(`blob store conformance: ${name}`)
  S.before.each(async ctx => {
    ctx.opened = await open()
    ctx.store = ctx.opened.store
  })
  S.after.each(async ctx => { await ctx.opened.cleanup() })

  S('stores a blob streamed in uneven pieces and reads it back byte for byte, with its size and first bytes', async ({ store, opened }) => {
    const bytes = randomBytes(150_001)
    const put = await store.put('c1/f1', pieces(bytes, 7_777), { maxBytes: bytes.length, headBytes: 20 })
    assert.is(put.size, bytes.length)
    assert.equal(Buffer.from(put.head), bytes.subarray(0, 20))
    assert.equal(await store.stat('c1/f1'), { size: bytes.length })
    const found = await store.get('c1/f1')
    assert.is(found?.size, bytes.length)
    assert.ok((await read(found!.stream)).equals(bytes), 'same bytes')
    assert.is(await opened.residue(), 0)
  })

  S('an empty blob and a one-byte blob are blobs too', async ({ store }) => {
    const put = await store.put('c1/empty', pieces(new Uint8Array(0), 1), NO_LIMIT)
    assert.is(put.size, 0)
    assert.is(put.head.byteLength, 0)
    assert.equal(await store.stat('c1/empty'), { size: 0 })
    assert.is((await readBlob(store, 'c1/empty'))?.length, 0)
    await store.put('c1/one', pieces(Uint8Array.of(42), 1), NO_LIMIT)
    assert.equal([...(await readBlob(store, 'c1/one'))!], [42])
    assert.equal([...(await readBlob(store, 'c1/one', { start: 0, end: 0 }))!], [42])
  })

  S('a range reads bytes start..end inclusive, across chunk boundaries, at either end, clamped to the blob', async ({ store }) => {
    const bytes = randomBytes(10_000)
    await store.put('c1/r', pieces(bytes, 999), NO_LIMIT)
    for (const [start, end] of [[0, 0], [0, 9_999], [5, 9], [999, 1_001], [1_000, 1_000], [2_500, 7_499], [9_999, 9_999], [4_096, 8_191]]) {
      const got = await store.get('c1/r', { start, end })
      assert.is(got?.size, bytes.length, 'the size is the whole blob\'s')
      assert.ok((await read(got!.stream)).equals(bytes.subarray(start, end + 1)), `bytes ${start}-${end}`)
    }
    assert.ok((await readBlob(store, 'c1/r', { start: 9_000, end: 20_000 }))!.equals(bytes.subarray(9_000)), 'an end past the blob reads to its end')
  })

  S('a missing blob: get and stat say undefined; delete is no error', async ({ store }) => {
    assert.is(await store.get('c1/none'), undefined)
    assert.is(await store.get('c1/none', { start: 0, end: 3 }), undefined)
    assert.is(await store.stat('c1/none'), undefined)
    await store.delete('c1/none')
    await store.deletePrefix('nothing')
  })

  S('a blob is invisible until its put resolved, and then visible to the storage opened anew', async ({ store, opened }) => {
    let release = (): void => {}
    const gate = new Promise<void>(resolve => { release = resolve })
    let sentHalf = (): void => {}
    const half = new Promise<void>(resolve => { sentHalf = resolve })
    const bytes = randomBytes(60_000)
    const source = async function * (): AsyncGenerator<Uint8Array> {
      yield * pieces(bytes.subarray(0, 30_000), 4_000)
      sentHalf()
      await gate
      yield * pieces(bytes.subarray(30_000), 4_000)
    }
    const putting = store.put('c1/slow', source(), NO_LIMIT)
    await half
    assert.is(await store.stat('c1/slow'), undefined, 'not visible mid-put')
    assert.is(await store.get('c1/slow'), undefined)
    assert.equal(await keysUnder(store, 'c1'), [])
    release()
    await putting
    const again = await opened.reopen()
    assert.equal(await again.stat('c1/slow'), { size: bytes.length })
    assert.ok((await readBlob(again, 'c1/slow'))!.equals(bytes), 'the reopened storage reads every byte')
  })

  S('a put replaces the blob of the same key whole, and keeps nothing of the old one', async ({ store, opened }) => {
    await store.put('c1/f', pieces(randomBytes(50_000), 5_000), NO_LIMIT)
    const next = randomBytes(3_333)
    await store.put('c1/f', pieces(next, 1_000), NO_LIMIT)
    assert.equal(await store.stat('c1/f'), { size: next.length })
    assert.ok((await readBlob(store, 'c1/f'))!.equals(next))
    assert.is(await opened.residue(), 0, 'the old bytes are gone')
  })

  S('a source over maxBytes rejects with BlobTooLarge and keeps nothing; exactly maxBytes is accepted', async ({ store, opened }) => {
    const bytes = randomBytes(40_000)
    await rejects(store.put('c1/big', pieces(bytes, 3_000), { maxBytes: bytes.length - 1, headBytes: 8 }), e => e instanceof BlobTooLarge, 'one byte over')
    assert.is(await store.stat('c1/big'), undefined)
    assert.is(await opened.residue(), 0, 'the bytes written before the limit are gone')
    assert.is((await store.put('c1/big', pieces(bytes, 3_000), { maxBytes: bytes.length, headBytes: 8 })).size, bytes.length)
    // A replacement over the limit leaves the blob that was there.
    await rejects(store.put('c1/big', pieces(randomBytes(50_000), 3_000), { maxBytes: 45_000, headBytes: 8 }), e => e instanceof BlobTooLarge, 'replacement over')
    assert.ok((await readBlob(store, 'c1/big'))!.equals(bytes))
    assert.is(await opened.residue(), 0)
  })

  S('a source that fails half-way rejects with its error and keeps nothing', async ({ store, opened }) => {
    const failing = async function * (): AsyncGenerator<Uint8Array> {
      yield * pieces(randomBytes(30_000), 2_500)
      throw new Error('connection cut')
    }
    await rejects(store.put('c1/cut', failing(), NO_LIMIT), e => (e as Error).message === 'connection cut', 'source error')
    assert.is(await store.stat('c1/cut'), undefined)
    assert.equal(await keysUnder(store, 'c1'), [])
    assert.is(await opened.residue(), 0)
  })

  S('delete removes one blob; deletePrefix every blob under prefix/ and no other (not c10/ for c1)', async ({ store, opened }) => {
    for (const key of ['c1/a', 'c1/b', 'c10/a', 'c2/a', 'c1x/a']) await store.put(key, pieces(Buffer.from(key), 2), NO_LIMIT)
    assert.equal(await keysUnder(store, 'c1'), ['c1/a', 'c1/b'])
    await store.delete('c1/a')
    assert.is(await store.stat('c1/a'), undefined)
    assert.equal(await keysUnder(store, 'c1'), ['c1/b'])
    await store.deletePrefix('c1')
    assert.equal(await keysUnder(store, 'c1'), [])
    assert.is(await store.stat('c1/b'), undefined)
    for (const key of ['c10/a', 'c2/a', 'c1x/a']) assert.equal((await readBlob(store, key))?.toString(), key, `${key} stays`)
    assert.is(await opened.residue(), 0)
  })

  S('puts of different keys run at once without mixing their bytes', async ({ store }) => {
    const blobs = Array.from({ length: 6 }, (_, i) => [`c1/p${i}`, randomBytes(20_000 + i * 3_001)] as const)
    await Promise.all(blobs.map(async ([key, bytes]) => await store.put(key, pieces(bytes, 1_500 + 100), NO_LIMIT)))
    for (const [key, bytes] of blobs) assert.ok((await readBlob(store, key))!.equals(bytes), key)
  })

  S.run()
}
