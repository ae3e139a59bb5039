/**
 * `npm run migrate`: a LevelDB folder written by a real server (a conversation with 10,000
 * archived messages, compacted documents, users, memberships, a read marker, client-id bindings,
 * settings, pending webhook events, the generated secret, uploaded files) copied into an empty
 * PostgreSQL schema, then served by the real process on PostgreSQL.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as Y from 'yjs'
import { startServer, TEST_SECRET, UNLIMITED_RATE } from '../../helpers/server.ts'
import { runOps, spawnServer } from '../../helpers/process.ts'
import { connectPeer, sendMessage, texts, waitFor } from '../../helpers/clients.ts'
import { signToken } from '../../helpers/burst.ts'
import { createTestSchema } from '../../helpers/postgres.ts'
import { PNG_1X1, uploadFile } from '../../helpers/uploads.ts'
import { randomBytes } from 'node:crypto'
import { PgBlobStore } from '../../../server/storage/pg-blob-store.ts'
import { FsBlobStore } from '../../../server/storage/fs-blob-store.ts'
import { Level } from 'level'
import { messagesOf, metaOf, readsOf } from '../../../shared/doc.ts'
import { DEFAULT_DELIVERY_TUNING } from '../../../server/notify/services.ts'
import { LevelStore } from '../../../server/storage/level-store.ts'
import { PgStore } from '../../../server/storage/pg-store.ts'
import { migrateToPostgres } from '../../../server/ops/migrate.ts'
import { ToolError } from '../../../server/ops/tool-error.ts'

const Migrate = suite('npm run migrate')

const TOTAL = 10_000

const refusedWith = async (p: Promise<unknown>, message: RegExp): Promise<void> => {
  try {
    await p
  } catch (e) {
    assert.instance(e, ToolError)
    assert.match((e as Error).message, message)
    return
  }
  assert.unreachable('migrated')
}

Migrate('copies a LevelDB folder into an empty PostgreSQL schema, refuses a non-empty one, and the server on it has everything', async () => {
  // Failed webhook deliveries wait an hour: the events stay pending in the outbox.
  const delivery = { ...DEFAULT_DELIVERY_TUNING, outbox: { ...DEFAULT_DELIVERY_TUNING.outbox, retryBaseMs: 3_600_000 } }
  const s = await startServer({ config: { historyWindow: 50, archiveChunk: 50, compactAfterUpdates: 5, delivery }, settings: UNLIMITED_RATE })
  const schema = await createTestSchema()
  try {
    await s.api('PUT', '/v1/users/alice', { name: 'Alice' })
    await s.api('PUT', '/v1/conversations/big', { participants: ['alice', 'bob'], subject: 'Big' })
    await s.api('PUT', '/v1/conversations/small', { participants: ['alice'] })
    const alice = connectPeer(s.wsUrl, 'big', await s.token('alice'))
    const bob = connectPeer(s.wsUrl, 'big', await s.token('bob'))
    await Promise.all([alice.synced, bob.synced])
    for (let t = 0; t < TOTAL / 500; t++) {
      alice.doc.transact(() => { for (let i = t * 500; i < (t + 1) * 500; i++) sendMessage(alice.doc, 'alice', `m${i}`, `m${i}`) })
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    const room = (): { archived: number, live: number } => {
      const r = s.server.rooms.peek('big')
      return { archived: r?.archivedCount ?? 0, live: r === undefined ? 0 : messagesOf(r.doc).length }
    }
    await waitFor(() => room().archived + room().live === TOTAL, 15_000, 'every message stored')
    readsOf(bob.doc).set('bob', 4242)
    const smallPeer = connectPeer(s.wsUrl, 'small', await s.token('alice'))
    await smallPeer.synced
    for (let i = 0; i < 12; i++) sendMessage(smallPeer.doc, 'alice', `s${i}`)
    await waitFor(() => s.server.rooms.peek('small')?.doc.getArray('messages').length === 12, 5000, 'small conversation written')
    await waitFor(() => s.server.rooms.peek('big')?.doc.getMap('reads').get('bob') === 4242, 5000, 'read marker stored')
    assert.is((await s.api('PATCH', '/v1/settings', { webhookUrl: 'http://127.0.0.1:9/never', maxGuests: 7 })).status, 200)
    // Uploaded files: one carried by the last message, one larger (several chunk rows) not carried yet.
    const pic = await uploadFile(s.url, 'big', `Bearer ${await s.token('bob')}`, 'pic.png', PNG_1X1)
    assert.is(pic.status, 201)
    const bigFile = randomBytes(700_000)
    const loose = await uploadFile(s.url, 'big', `Bearer ${await s.token('alice')}`, 'data.bin', bigFile)
    assert.is(loose.status, 201)
    const attachment = { fileId: pic.body.fileId, name: pic.body.name, size: pic.body.size, contentType: pic.body.contentType }
    const rest = await s.api('POST', '/v1/conversations/big/messages', [{ text: 'last one', sender: 'bob', type: 'UserMessage', attachment }])
    assert.is(rest.status, 201)
    await s.server.files.settled()
    alice.destroy(); bob.destroy(); smallPeer.destroy()
    assert.ok(room().archived >= TOTAL - 100, `archived ${room().archived}`)
    await s.stop(true)

    const folder = join(s.dir, 'db')
    await writeFile(join(folder, 'secret'), TEST_SECRET)
    const source = await LevelStore.open(folder)
    let outbox = 0
    for await (const [key] of source.section('outbox').entries({})) if (key.startsWith('v1!o!')) outbox++
    const bindings = (await source.loadClientOwners('big')).size
    // A conversation whose log was never compacted: its entries are copied as they are.
    const raw = new Y.Doc()
    const entries: Uint8Array[] = []
    raw.on('update', (u: Uint8Array) => entries.push(u))
    metaOf(raw).set('createdAt', 1)
    sendMessage(raw, 'alice', 'raw one')
    sendMessage(raw, 'alice', 'raw two')
    await source.createConversation('raw', 1)
    await source.appendUpdates('raw', 1, entries)
    await source.close()
    assert.ok(outbox > 0, 'webhook events are pending')

    const r = await runOps('migrate', ['--from', folder, '--to', schema.url])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /conversations: 3 \(log entries [2-9]\d*, snapshots [2-9]/)
    assert.match(r.stdout, /archived messages \d{4,}/)
    assert.match(r.stdout, /users: 1, memberships: 3, settings: yes, secret: copied/)
    assert.match(r.stdout, /outbox \d+/)
    assert.match(r.stdout, `files: 2 (${PNG_1X1.length + bigFile.length} bytes)\n`)
    await refusedWith(migrateToPostgres({ from: folder, to: schema.url }), /is not empty \(it has rows in conversations, .*, archive, .*, sections, blobs, blob_chunks\)/)
    const q = schema.admin
    const [{ n: pending }] = await q`SELECT count(*)::int AS n FROM ${q(schema.schema)}.sections WHERE section = 'outbox' AND key LIKE 'v1!o!%'`
    assert.is(pending, outbox, 'every pending webhook event was copied')
    const [{ n: bound }] = await q`SELECT count(*)::int AS n FROM ${q(schema.schema)}.client_owners WHERE conv = 'big'`
    assert.is(bound, bindings)

    // The server on PostgreSQL, with the folder's secret (no --secret given).
    const pg = await spawnServer(['--port', '0', '--postgres', schema.url, '--demo', 'off'])
    try {
      const get = async (path: string): Promise<any> => {
        const res = await fetch(pg.url + path, { headers: { authorization: `Bearer ${TEST_SECRET}` } })
        assert.is(res.status, 200, `${path}: ${await res.clone().text()}`)
        return await res.json()
      }
      const all: string[] = []
      let before: string | undefined
      for (let page = 0; page < 200; page++) {
        const res = await get(`/v1/conversations/big/messages?limit=100${before === undefined ? '' : `&before=${before}`}`)
        all.unshift(...res.data.map((m: { text: string }) => m.text))
        if (!res.hasMore) break
        before = res.data[0].id
      }
      assert.is(all.length, TOTAL + 1)
      assert.equal(all, [...Array.from({ length: TOTAL }, (_, i) => `m${i}`), 'last one'], 'every message, in order')
      assert.is((await get('/v1/conversations/big')).subject, 'Big')
      assert.is((await get('/v1/conversations/small/messages?limit=100')).data.length, 12)
      assert.equal((await get('/v1/conversations/raw/messages')).data.map((m: { text: string }) => m.text), ['raw one', 'raw two'])
      assert.is((await get('/v1/users/alice')).name, 'Alice')
      // The files came along: bytes, ranges, and which message carries which.
      const file = async (fileId: string, range?: string): Promise<Response> =>
        await fetch(`${pg.url}/v1/conversations/big/files/${fileId}`, { headers: { authorization: `Bearer ${TEST_SECRET}`, ...(range === undefined ? {} : { range }) } })
      const picRes = await file(pic.body.fileId)
      assert.is(picRes.status, 200)
      assert.is(picRes.headers.get('content-type'), 'image/png')
      assert.ok(Buffer.from(await picRes.arrayBuffer()).equals(PNG_1X1))
      assert.ok(Buffer.from(await (await file(loose.body.fileId)).arrayBuffer()).equals(bigFile))
      const part = await file(loose.body.fileId, 'bytes=300000-555555')
      assert.is(part.status, 206)
      assert.ok(Buffer.from(await part.arrayBuffer()).equals(bigFile.subarray(300_000, 555_556)))
      const lastMessage = (await get('/v1/conversations/big/messages?limit=1')).data[0]
      assert.equal(lastMessage.attachment, attachment)
      const [carried] = await q`SELECT value FROM ${q(schema.schema)}.sections WHERE section = 'files' AND key = ${`v1!f!big!${pic.body.fileId as string}`}`
      assert.is(carried.value.attachedTo, lastMessage.id)
      assert.equal((await get('/v1/users/alice/conversations')).data.map((c: { id: string }) => c.id).sort(), ['big', 'small'])
      const settings = await get('/v1/settings')
      assert.is(settings.webhookUrl, 'http://127.0.0.1:9/never')
      assert.is(settings.maxGuests, 7)
      const reader = connectPeer(pg.wsUrl, 'big', await signToken(TEST_SECRET, 'bob'), {}, new Y.Doc())
      await reader.synced
      await waitFor(() => texts(reader.doc).includes('last one'), 5000, 'a peer syncs')
      assert.is(readsOf(reader.doc).get('bob'), 4242, 'the read marker came along')
      reader.destroy()
    } finally {
      pg.child.kill('SIGTERM')
      await pg.exited
    }
  } finally {
    await s.stop().catch(() => {})
    await schema.drop()
  }
})

Migrate('refuses a target that holds anything, and a folder that holds no Parley data, with one line and exit 1', async () => {
  const schema = await createTestSchema()
  const dir = await mkdtemp(join(tmpdir(), 'parley-migrate-'))
  try {
    const empty = await LevelStore.open(join(dir, 'db'))
    await empty.close()
    const target = await PgStore.open({ url: schema.url, heartbeatMs: 0 })
    await target.section('outbox').put('v1!o!x', { kind: 'webhook' })
    await target.close()
    let r = await runOps('migrate', ['--from', join(dir, 'db'), '--to', schema.url])
    assert.is(r.code, 1)
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /^parley migrate: postgres:\/\/.*schema=parley_test_\w+ is not empty \(it has rows in sections\)/)
    // Files count as data too.
    const filesOnly = await createTestSchema()
    try {
      const blobs = await PgBlobStore.open({ url: filesOnly.url })
      await blobs.put('c/f', (async function * () { yield Buffer.from('x') })(), { maxBytes: 10, headBytes: 0 })
      await blobs.close()
      await refusedWith(migrateToPostgres({ from: join(dir, 'db'), to: filesOnly.url }), /is not empty \(it has rows in blobs, blob_chunks\)/)
    } finally {
      await filesOnly.drop()
    }
    r = await runOps('migrate', ['--from', join(dir, 'nothing'), '--to', schema.url])
    assert.is(r.code, 1)
    assert.match(r.stderr, /holds no Parley data/)
    assert.is(r.stderr.trim().split('\n').length, 1)
  } finally {
    await rm(dir, { recursive: true, force: true })
    await schema.drop()
  }
})

Migrate('a migration that fails after copying files deletes them: the target stays empty', async () => {
  const schema = await createTestSchema()
  const dir = await mkdtemp(join(tmpdir(), 'parley-migrate-'))
  try {
    const folder = join(dir, 'db')
    const source = await LevelStore.open(folder)
    await source.createConversation('c1', 1)
    const blobs = await FsBlobStore.open(join(folder, 'files'))
    await blobs.put('c1/f1', (async function * () { yield randomBytes(300_000) })(), { maxBytes: 1e9, headBytes: 0 })
    await source.section('files').put('v1!f!c1!f1', { conversationId: 'c1', fileId: 'f1', uploaderId: 'alice', name: 'a.bin', size: 300_000, contentType: 'application/octet-stream', attachedTo: null, createdAt: 1 })
    await source.close()
    // An entry PostgreSQL refuses (a section name it cannot hold), written after the files.
    const raw = new Level<string, string>(folder)
    await raw.open()
    await raw.put('!s-Bad_Name!k', '1')
    await raw.close()
    let failed = false
    try {
      await migrateToPostgres({ from: folder, to: schema.url })
    } catch (e) {
      failed = /invalid section name Bad_Name/.test((e as Error).message)
    }
    assert.ok(failed, 'the migration failed on the bad entry')
    const target = await PgStore.open({ url: schema.url, heartbeatMs: 0 })
    const files = await PgBlobStore.open({ url: schema.url })
    try {
      assert.equal([...await target.nonEmptyTables(), ...await files.nonEmptyTables()], [], 'nothing left in the target')
    } finally {
      await Promise.all([target.close(), files.close()])
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    await schema.drop()
  }
})

Migrate.run()
