/**
 * The storage port's conformance suite against PgStore, each case in its own schema (dropped
 * afterwards). Its fail-stop case reaches PostgreSQL through a loopback proxy the test stops.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { PgStore } from '../../../server/storage/pg-store.ts'
import { MIGRATIONS } from '../../../server/storage/pg-schema.ts'
import { parsePgUrl } from '../../../server/storage/pg-url.ts'
import { createTestSchema, PG_URL } from '../../helpers/postgres.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'
import { runStoreConformance } from './store-conformance.ts'
import { runOutboxQueueConformance } from './outbox-queue-conformance.ts'

runStoreConformance('PgStore', async () => {
  const schema = await createTestSchema()
  const store = await PgStore.open({ url: PG_URL, schema: schema.schema })
  return {
    store,
    async cleanup () {
      await store.close()
      await schema.drop()
    }
  }
}, async () => {
  const schema = await createTestSchema()
  const proxy = await startTcpProxy(Number(new URL(PG_URL).port || 5432), new URL(PG_URL).hostname)
  const store = await PgStore.open({ url: schema.urlVia(proxy.port), heartbeatMs: 0 })
  return {
    store,
    fault: { start: async () => { await proxy.stop() }, end: async () => { await proxy.start() } },
    async cleanup () {
      await proxy.start()
      await store.close()
      await proxy.stop()
      await schema.drop()
    }
  }
})

runOutboxQueueConformance('PgStore', async () => {
  const schema = await createTestSchema()
  const store = await PgStore.open({ url: PG_URL, schema: schema.schema })
  const other = await PgStore.open({ url: PG_URL, schema: schema.schema })
  return {
    store,
    other,
    async cleanup () {
      await Promise.all([store.close(), other.close()])
      await schema.drop()
    }
  }
})

const Pg = suite('PgStore')

Pg('a URL is told to people without its password, with its schema', () => {
  const t = parsePgUrl('postgres://parley:s3cret@db.example:6432/chat?schema=tenant_1&sslmode=require')
  assert.is(t.schema, 'tenant_1')
  assert.is(t.address, 'db.example:6432')
  assert.not.match(t.redacted, /s3cret/)
  assert.match(t.redacted, /^postgres:\/\/parley@db\.example:6432\/chat\?/)
  assert.match(t.redacted, /schema=tenant_1/)
  assert.not.match(t.url, /schema=/)
  assert.is(parsePgUrl('postgres://localhost/test').schema, 'public')
  assert.is(parsePgUrl('postgres://localhost/test?schema=a', 'b').schema, 'b')
  assert.throws(() => parsePgUrl('postgres://localhost/test?schema=Bad;Name'), /schema/)
  assert.throws(() => parsePgUrl('mysql://localhost/test'), /postgres:\/\//)
  assert.throws(() => parsePgUrl('postgres://localhost/test?synchronous_commit=off'), /synchronous_commit/)
})

Pg('tables are created on start, at the latest version, and a second open (another node) changes nothing', async () => {
  const schema = await createTestSchema()
  try {
    const [a, b] = await Promise.all([PgStore.open({ url: schema.url }), PgStore.open({ url: schema.url })])
    const versions = await schema.admin`SELECT version FROM ${schema.admin(schema.schema)}.schema_version`
    assert.equal(versions.map(r => r.version), [1, 2])
    await a.createConversation('c', 1)
    assert.is(await b.conversationExists('c'), true)
    await Promise.all([a.close(), b.close()])
  } finally {
    await schema.drop()
  }
})

Pg('a schema written by a newer version is refused with one line', async () => {
  const schema = await createTestSchema()
  try {
    const first = await PgStore.open({ url: schema.url })
    await first.close()
    await schema.admin`INSERT INTO ${schema.admin(schema.schema)}.schema_version (version, applied_at) VALUES (99, 0)`
    try {
      await PgStore.open({ url: schema.url })
      assert.unreachable('opened')
    } catch (e) {
      assert.match((e as Error).message, /version 99, written by a newer Parley/)
    }
  } finally {
    await schema.drop()
  }
})

Pg('its connections commit synchronously whatever the role says, in a schema it may use but not create', async () => {
  const schema = await createTestSchema()
  const role = `parley_async_${schema.schema.slice(-12)}`
  const q = schema.admin
  await q`CREATE ROLE ${q(role)} LOGIN`
  await q`ALTER ROLE ${q(role)} SET synchronous_commit = off`
  await q`GRANT ALL ON SCHEMA ${q(schema.schema)} TO ${q(role)}`
  try {
    const url = new URL(schema.url)
    url.username = role
    // The store checks the setting of its connection at open, and refuses to run without it.
    const store = await PgStore.open({ url: url.href })
    await store.createConversation('c', 1)
    assert.is(await store.conversationExists('c'), true)
    await store.close()
  } finally {
    await q`DROP OWNED BY ${q(role)}`
    await q`DROP ROLE ${q(role)}`
    await schema.drop()
  }
})

Pg('connections PostgreSQL ended while idle (a restart, pg_terminate_backend) cost nothing: the next write connects again', async () => {
  const schema = await createTestSchema()
  const store = await PgStore.open({ url: schema.url, heartbeatMs: 0 })
  try {
    await store.createConversation('a', 1)
    // Its connections name the schema, so this ends no one else's.
    const ended = await schema.admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${`parley ${schema.schema}`}`
    assert.ok(ended.length > 0)
    await new Promise(resolve => setTimeout(resolve, 50))
    await store.createConversation('b', 1)
    assert.is(store.writeFailure, null)
    assert.is(await store.conversationExists('a'), true)
  } finally {
    await store.close()
    await schema.drop()
  }
})

Pg('an unreachable server is refused at open with its address', async () => {
  const proxy = await startTcpProxy(5432)
  await proxy.stop()
  try {
    await PgStore.open({ url: `postgres://postgres@127.0.0.1:${proxy.port}/test` })
    assert.unreachable('opened')
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`PostgreSQL unreachable at 127\\.0\\.0\\.1:${proxy.port} \\(ECONNREFUSED\\)`))
  }
})

Pg('the secret is generated once and the same for every node', async () => {
  const schema = await createTestSchema()
  try {
    const [a, b] = await Promise.all([PgStore.open({ url: schema.url }), PgStore.open({ url: schema.url })])
    const [sa, sb] = await Promise.all([a.loadOrCreateSecret('first-secret-0123456789'), b.loadOrCreateSecret('other-secret-0123456789')])
    assert.is(sa, sb)
    assert.is(await a.loadOrCreateSecret('third-secret-0123456789'), sa)
    await Promise.all([a.close(), b.close()])
  } finally {
    await schema.drop()
  }
})

Pg('the heartbeat notices a lost server before any write', async () => {
  const schema = await createTestSchema()
  const proxy = await startTcpProxy(5432)
  const store = await PgStore.open({ url: schema.urlVia(proxy.port), heartbeatMs: 50 })
  try {
    await proxy.stop()
    for (let i = 0; i < 200 && store.writeFailure === null; i++) await new Promise(resolve => setTimeout(resolve, 25))
    assert.match(store.writeFailure?.reason ?? '', /PostgreSQL unreachable at 127\.0\.0\.1:\d+/)
  } finally {
    await proxy.start()
    await store.close()
    await proxy.stop()
    await schema.drop()
  }
})


Pg('appendExclusive: two nodes at once take turns; the second sees what the first committed, its bindings included, before it builds', async () => {
  const schema = await createTestSchema()
  const [a, b] = await Promise.all([PgStore.open({ url: schema.url }), PgStore.open({ url: schema.url })])
  try {
    await a.appendUpdates('c', 1, [new Uint8Array([1])])
    const seen: Array<{ node: string, updates: number[], owners: Array<[number, string]> }> = []
    let release = (): void => {}
    const firstInside = new Promise<void>(resolve => { release = resolve })
    const first = a.appendExclusive('c', 1, async caught => {
      seen.push({ node: 'a', updates: caught.stored.updates.map(u => u[0]), owners: [...await caught.ownersOf([7])] })
      release()
      await new Promise(resolve => setTimeout(resolve, 200)) // b waits for the lock meanwhile
      return { update: new Uint8Array([2]), with_: { bindings: [{ userId: 'alice', clientIds: [7] }] } }
    })
    await firstInside
    const second = b.appendExclusive('c', 1, async caught => {
      seen.push({ node: 'b', updates: caught.stored.updates.map(u => u[0]), owners: [...await caught.ownersOf([7, 8])] })
      return { update: new Uint8Array([3]), with_: {} }
    })
    assert.equal(await Promise.all([first, second]), [2, 3])
    assert.equal(seen, [
      { node: 'a', updates: [], owners: [] },
      { node: 'b', updates: [2], owners: [[7, 'alice']] }
    ])
    const doc = await b.loadDoc('c')
    assert.equal(doc.updates.map(u => u[0]), [1, 2, 3])
    assert.is(await a.appendExclusive('c', 3, async () => ({ update: null, with_: {} })), 3, 'nothing to append: the head stays')
    let threw = false
    try {
      await a.appendExclusive('c', 2, async () => { throw new Error('refused by the caller') })
    } catch (e) {
      threw = (e as Error).message === 'refused by the caller'
    }
    assert.ok(threw, 'a build that throws rejects the append')
    assert.is((await a.loadDoc('c')).lastSeq, 3, 'and writes nothing')
  } finally {
    await Promise.all([a.close(), b.close()])
    await schema.drop()
  }
})

Pg('appendExclusive: the archive read inside the lock, one id or many at once, sees what another node archived', async () => {
  const schema = await createTestSchema()
  const [a, b] = await Promise.all([PgStore.open({ url: schema.url }), PgStore.open({ url: schema.url })])
  try {
    const m = (id: string): { id: string, senderId: string, text: string, createdAt: number, type: 'UserMessage' } => ({ id, senderId: 'u', text: id, createdAt: 1, type: 'UserMessage' })
    await a.appendUpdates('c', 1, [new Uint8Array([1])], { archive: [{ pos: 0, message: m('m0') }, { pos: 1, message: m('m1') }] })
    let seen: unknown = null
    await b.appendExclusive('c', 1, async caught => {
      seen = {
        one: [await caught.archivePosOf('m1'), await caught.archivePosOf('nope')],
        many: [...await caught.archivePositionsOf(['m0', 'nope', 'm1'])].sort(),
        none: (await caught.archivePositionsOf([])).size
      }
      return { update: null, with_: {} }
    })
    assert.equal(seen, { one: [1, undefined], many: [['m0', 0], ['m1', 1]], none: 0 })
  } finally {
    await Promise.all([a.close(), b.close()])
    await schema.drop()
  }
})

Pg('lockedSection: two nodes changing one key at once, existing or not, take turns; none of their changes is lost', async () => {
  const schema = await createTestSchema()
  const [a, b] = await Promise.all([PgStore.open({ url: schema.url }), PgStore.open({ url: schema.url })])
  try {
    const ra = a.lockedSection('notify')
    const rb = b.lockedSection('notify')
    // Each change reads the count, waits a little (the other node tries meanwhile) and writes it plus one.
    const bump = async (rows: typeof ra, key: string): Promise<number> => await rows.change(key, async current => {
      const n = typeof current === 'number' ? current : 0
      await new Promise(resolve => setTimeout(resolve, 20))
      return { put: n + 1, result: n + 1 }
    })
    const results = await Promise.all([bump(ra, 'v1!p!new'), bump(rb, 'v1!p!new'), bump(ra, 'v1!p!new'), bump(rb, 'v1!p!new')])
    assert.equal(results.sort(), [1, 2, 3, 4])
    assert.is(await a.section('notify').get('v1!p!new'), 4)
    // A change writes its section puts in the same transaction; a change that throws writes nothing.
    await ra.change('v1!p!c', async () => ({ del: true, sections: [{ section: 'outbox', key: 'v1!o!x', value: { nextAt: 0 } }], result: null }))
    assert.equal(await b.section('outbox').get('v1!o!x'), { nextAt: 0 })
    try {
      await rb.change('v1!p!new', async () => { throw new Error('refused') })
    } catch {}
    assert.is(await a.section('notify').get('v1!p!new'), 4)
    await ra.change('v1!p!due', async () => ({ put: { nextAt: 50, text: 'a \u0000 b' }, result: null }))
    await ra.change('v1!p!odd', async () => ({ put: { nextAt: 'soon' }, result: null }))
    await ra.change('v1!p!later', async () => ({ put: { nextAt: 500 }, result: null }))
    assert.equal(await rb.dueKeys('v1!p!', 100, 10), ['v1!p!due'])
    await rb.change('v1!p!due', async () => ({ del: true, result: null }))
    assert.equal(await ra.dueKeys('v1!p!', 1000, 10), ['v1!p!later'])
  } finally {
    await Promise.all([a.close(), b.close()])
    await schema.drop()
  }
})

Pg('an upgrade to version 2 finds when the waiting outbox records and batches are due, from their JSON text (\\u0000 included)', async () => {
  const schema = await createTestSchema()
  try {
    const q = schema.admin
    // A schema as version 1 left it, with rows in it.
    await q.begin(async tx => {
      await tx.unsafe(`SET LOCAL search_path TO ${schema.schema}`)
      await tx.unsafe('CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at bigint NOT NULL)')
      for (const statement of MIGRATIONS[0].statements) await tx.unsafe(statement)
      await tx.unsafe('INSERT INTO schema_version (version, applied_at) VALUES (1, 0)')
      const put = async (section: string, key: string, value: unknown): Promise<void> => {
        await tx.unsafe('INSERT INTO sections (section, key, value) VALUES ($1, $2, $3::text::json)', [section, key, JSON.stringify(value)])
      }
      await put('outbox', 'v1!o!a', { id: 'a', payload: { kind: 'webhook', text: 'nul \u0000 and "nextAt":1 inside' }, attempts: 2, createdAt: 1, nextAt: 1500 })
      await put('outbox', 'v1!o!b', { id: 'b', payload: { kind: 'webhook' }, attempts: 0, createdAt: 1, nextAt: 9e12 })
      await put('notify', 'v1!p!c', { subject: null, recipients: [], busyAt: 5, nextAt: 2500 })
      await put('inbox', 'v1!x', { nextAt: 1 })
    })
    const store = await PgStore.open({ url: schema.url })
    try {
      const versions = await q`SELECT version FROM ${q(schema.schema)}.schema_version ORDER BY version`
      assert.equal(versions.map(r => r.version), [1, 2])
      const queue = store.outboxQueue('outbox')
      assert.equal(await queue.claimDue('v1!o!', 1000, 10, 30_000), [], 'the record\'s own nextAt, not one in its text')
      assert.equal((await queue.claimDue('v1!o!', 2000, 10, 30_000)).map(c => c.key), ['v1!o!a'])
      assert.equal(await store.lockedSection('notify').dueKeys('v1!p!', 3000, 10), ['v1!p!c'])
      const [row] = await q`SELECT next_at FROM ${q(schema.schema)}.sections WHERE section = 'inbox'`
      assert.is(row.next_at, null, 'other sections are left alone')
    } finally {
      await store.close()
    }
  } finally {
    await schema.drop()
  }
})

Pg.run()
