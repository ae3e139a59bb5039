/**
 * The real `parley` process on PostgreSQL (`--postgres`), each test in its own schema: REST and
 * stock providers, restarts, kill -9 mid-burst, and PostgreSQL becoming unreachable (through a
 * loopback proxy the test stops and starts).
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runServer, spawnServer, type RunningServer } from '../helpers/process.ts'
import { connectPeer, sendMessage, texts, waitFor } from '../helpers/clients.ts'
import { assertNothingLost, killMidBurst, signToken } from '../helpers/burst.ts'
import { createTestSchema, PG_URL, type TestSchema } from '../helpers/postgres.ts'
import { startTcpProxy } from '../helpers/tcp-proxy.ts'
import { messagesOf } from '../../shared/doc.ts'
import { PNG_1X1, uploadFile } from '../helpers/uploads.ts'

const Pg = suite<{ schema: TestSchema, dir: string }>('the parley process on PostgreSQL')
Pg.before.each(async ctx => {
  ctx.schema = await createTestSchema()
  ctx.dir = await mkdtemp(join(tmpdir(), 'parley-pg-'))
})
Pg.after.each(async ctx => {
  await ctx.schema.drop()
  await rm(ctx.dir, { recursive: true, force: true })
})

const SECRET = 'postgres-secret-0123456789'

const api = async (url: string, secret: string, method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> => {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${secret}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

const stop = async (s: RunningServer): Promise<void> => {
  s.child.kill('SIGTERM')
  assert.equal(await s.exited, { code: 0, signal: null }, s.output())
}

Pg('with --postgres everything lives in PostgreSQL: a generated secret kept there, REST and sync, across a restart', async ({ schema, dir }) => {
  const data = join(dir, 'unused')
  const args = ['--port', '0', '--data', data, '--postgres', schema.url, '--demo', 'off']
  let s = await spawnServer(args)
  assert.match(s.output(), /"postgres":"postgres:\/\/postgres@127\.0\.0\.1:5432\/test\?schema=parley_test_/)
  const [row] = await schema.admin`SELECT value FROM ${schema.admin(schema.schema)}.meta WHERE name = 'secret'`
  const secret = row.value as string
  assert.ok(secret.length >= 32, 'a secret was generated and kept in PostgreSQL')
  assert.is((await api(s.url, secret, 'PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'], subject: 'Kept' })).status, 201)
  assert.is((await api(s.url, secret, 'PUT', '/v1/users/alice', { name: 'Alice' })).status < 300, true)
  const alice = connectPeer(s.wsUrl, 'c1', await signToken(secret, 'alice'))
  const bob = connectPeer(s.wsUrl, 'c1', await signToken(secret, 'bob'))
  await Promise.all([alice.synced, bob.synced])
  for (let i = 0; i < 20; i++) sendMessage(alice.doc, 'alice', `m${i}`)
  await waitFor(() => texts(bob.doc).length === 20, 5000, 'bob receives')
  const posted = await api(s.url, secret, 'POST', '/v1/conversations/c1/messages', [{ text: 'by rest', sender: 'bob', type: 'UserMessage' }])
  assert.is(posted.status, 201)
  await waitFor(() => texts(alice.doc).includes('by rest'), 5000, 'alice receives the REST message')
  const uploaded = await uploadFile(s.url, 'c1', `Bearer ${await signToken(secret, 'alice')}`, 'pic.png', PNG_1X1)
  assert.is(uploaded.status, 201)
  alice.destroy()
  bob.destroy()
  await stop(s)
  // Nothing on the node's disk, uploaded files included: no LevelDB, no secret, no server.json.
  await stat(data).then(() => assert.unreachable('the data folder was created'), () => {})

  s = await spawnServer(args)
  const conv = await api(s.url, secret, 'GET', '/v1/conversations/c1')
  assert.is(conv.status, 200, 'the same secret is used again')
  assert.is(conv.body.subject, 'Kept')
  const msgs = await api(s.url, secret, 'GET', '/v1/conversations/c1/messages?limit=100')
  assert.equal(msgs.body.data.map((m: { text: string }) => m.text), [...Array.from({ length: 20 }, (_, i) => `m${i}`), 'by rest'])
  assert.is((await api(s.url, secret, 'GET', '/v1/users/alice')).body.name, 'Alice')
  const file = await fetch(`${s.url}/v1/conversations/c1/files/${uploaded.body.fileId as string}`, { headers: { authorization: `Bearer ${secret}` } })
  assert.is(file.status, 200)
  assert.ok(Buffer.from(await file.arrayBuffer()).equals(PNG_1X1), 'the uploaded file, from PostgreSQL')
  const list = await api(s.url, secret, 'GET', '/v1/users/bob/conversations')
  assert.is(list.status, 200)
  const fresh = connectPeer(s.wsUrl, 'c1', await signToken(secret, 'bob'))
  await fresh.synced
  await waitFor(() => texts(fresh.doc).length === 21, 5000, 'a fresh peer syncs everything')
  fresh.destroy()
  assert.is((await fetch(`${s.url}/healthz`)).status, 200)
  await stop(s)
})

Pg('kill -9 in the middle of a 300-message burst loses no message a reader had received', async ({ schema }) => {
  const args = ['--port', '0', '--postgres', schema.url, '--secret', SECRET]
  const received = await killMidBurst(await spawnServer(args), SECRET)
  const s = await spawnServer(args)
  await assertNothingLost(s, SECRET, received)
  await stop(s)
})

Pg('an unreachable PostgreSQL at start is one line and exit 1, without the password', async () => {
  const proxy = await startTcpProxy(5432)
  await proxy.stop()
  const r = await runServer(['--port', '0', '--postgres', `postgres://postgres:hunter2-secret@127.0.0.1:${proxy.port}/test`, '--secret', SECRET])
  assert.is(r.code, 1)
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  assert.match(r.stderr, new RegExp(`cannot use PostgreSQL at postgres://postgres@127\\.0\\.0\\.1:${proxy.port}/test: PostgreSQL unreachable at 127\\.0\\.0\\.1:${proxy.port}`))
  assert.not.match(r.stderr, /hunter2/)
})

Pg('PostgreSQL unreachable: writes are refused with 503, /healthz says why, readers stay, and service resumes by itself', async ({ schema }) => {
  const proxy = await startTcpProxy(Number(new URL(PG_URL).port || 5432), new URL(PG_URL).hostname)
  const s = await spawnServer(['--port', '0', '--postgres', schema.urlVia(proxy.port), '--secret', SECRET, '--demo', 'off'])
  try {
    assert.is((await api(s.url, SECRET, 'PUT', '/v1/conversations/c1', { participants: ['alice', 'reader'] })).status, 201)
    assert.is((await api(s.url, SECRET, 'PUT', '/v1/conversations/c1/participants/reader', { access: 'Read' })).status, 200)
    const reader = connectPeer(s.wsUrl, 'c1', await signToken(SECRET, 'reader'))
    const writer = connectPeer(s.wsUrl, 'c1', await signToken(SECRET, 'alice'))
    await Promise.all([reader.synced, writer.synced])
    const before = await api(s.url, SECRET, 'POST', '/v1/conversations/c1/messages', [{ text: 'before', sender: 'alice', type: 'UserMessage' }])
    assert.is(before.status, 201)

    await proxy.stop()
    const refused = await api(s.url, SECRET, 'POST', '/v1/conversations/c1/messages', [{ text: 'refused', sender: 'alice', type: 'UserMessage' }])
    assert.is(refused.status, 503)
    assert.is(refused.body.error.code, 'STORAGE_UNAVAILABLE')
    const health = await api(s.url, SECRET, 'GET', '/healthz')
    assert.is(health.status, 503)
    assert.match(health.body.error.message, new RegExp(`PostgreSQL unreachable at 127\\.0\\.0\\.1:${proxy.port}`))
    assert.is((await api(s.url, SECRET, 'PUT', '/v1/conversations/c2', { participants: ['alice'] })).status, 503)
    // A sync writer is asked to come back later (1013); the reader stays.
    const during = sendMessage(writer.doc, 'alice', 'while unreachable')
    await waitFor(() => writer.closes.some(c => c.code === 1013), 10_000, 'writer refused with 1013')
    assert.equal(reader.closes, [], 'the reader was never kicked')
    assert.is(s.output().split('\n').filter(l => l.includes('storage failed: PostgreSQL unreachable')).length, 1, 'said once in the log')

    await proxy.start()
    for (let i = 0; i < 100 && (await api(s.url, SECRET, 'GET', '/healthz')).status !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
    assert.is((await api(s.url, SECRET, 'GET', '/healthz')).status, 200, 'service resumed by itself')
    const after = await api(s.url, SECRET, 'POST', '/v1/conversations/c1/messages', [{ text: 'after', sender: 'alice', type: 'UserMessage' }])
    assert.is(after.status, 201)
    await waitFor(() => messagesOf(reader.doc).toArray().some(m => m.id === during.id), 15_000, 'the refused sync write arrives once PostgreSQL is back')
    await waitFor(() => texts(reader.doc).includes('after'), 5000, 'the reader gets the new message')
    assert.ok(!texts(reader.doc).includes('refused'))
    assert.is((await api(s.url, SECRET, 'GET', '/v1/conversations/c2')).status, 404, 'the refused creation did not happen')
    reader.destroy()
    writer.destroy()
    await stop(s)
  } finally {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill('SIGKILL')
      await s.exited
    }
    await proxy.stop()
  }
})

Pg.run()
