import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runServer, spawnServer } from '../helpers/process.ts'
import { connectPeer, connectRaw } from '../helpers/clients.ts'
import { messagesOf } from '../../shared/doc.ts'
import { parseProcessOptions, ConfigError } from '../../server/config.ts'
import { UNLIMITED_RATE } from '../helpers/server.ts'

const Proc = suite<{ dir: string }>('the parley process')
Proc.before.each(async ctx => { ctx.dir = await mkdtemp(join(tmpdir(), 'parley-proc-')) })
Proc.after.each(async ctx => { await rm(ctx.dir, { recursive: true, force: true }) })

const SECRET = 'process-secret-0123456789'

Proc('flags are read from argv first, then the environment, then defaults', () => {
  const o = parseProcessOptions(['--port', '0'], { PARLEY_HOST: '0.0.0.0', PARLEY_PORT: '99', PARLEY_DATA: '/x' })
  assert.equal(o, { host: '0.0.0.0', port: 0, data: '/x', secret: undefined, demo: 'auto', smtp: undefined, fsync: true, reserveBytes: 8 * 1024 * 1024, postgres: undefined, redis: undefined, presenceTtlMs: 10_000, help: false })
  assert.equal(parseProcessOptions([], {}), { host: '127.0.0.1', port: 1234, data: './data', secret: undefined, demo: 'auto', smtp: undefined, fsync: true, reserveBytes: 8 * 1024 * 1024, postgres: undefined, redis: undefined, presenceTtlMs: 10_000, help: false })
  assert.is(parseProcessOptions(['--postgres', 'postgres://db/x'], {}).postgres, 'postgres://db/x')
  assert.is(parseProcessOptions([], { PARLEY_POSTGRES_URL: 'postgresql://u@db/x?schema=p' }).postgres, 'postgresql://u@db/x?schema=p')
  assert.throws(() => parseProcessOptions(['--postgres', 'mysql://db/x'], {}), (e: unknown) => e instanceof ConfigError && /--postgres/.test(e.message))
  assert.is(parseProcessOptions(['--postgres', 'postgres://db/x', '--redis', 'redis://r:6379'], {}).redis, 'redis://r:6379')
  assert.is(parseProcessOptions([], { PARLEY_POSTGRES_URL: 'postgres://db/x', PARLEY_REDIS_URL: 'rediss://:pw@r:6380/2' }).redis, 'rediss://:pw@r:6380/2')
  assert.throws(() => parseProcessOptions(['--redis', 'redis://r:6379'], {}), (e: unknown) => e instanceof ConfigError && /--redis needs --postgres/.test(e.message))
  assert.is(parseProcessOptions([], { PARLEY_PRESENCE_TTL_MS: '2000' }).presenceTtlMs, 2000)
  for (const bad of ['999', '30001', '2s', '']) {
    assert.throws(() => parseProcessOptions([], { PARLEY_PRESENCE_TTL_MS: bad }), (e: unknown) => e instanceof ConfigError && /PARLEY_PRESENCE_TTL_MS/.test(e.message))
  }
  assert.throws(() => parseProcessOptions(['--postgres', 'postgres://db/x', '--redis', 'http://r'], {}), (e: unknown) => e instanceof ConfigError && /--redis/.test(e.message))
  assert.is(parseProcessOptions(['--fsync', 'off'], {}).fsync, false)
  assert.is(parseProcessOptions([], { PARLEY_FSYNC: 'off' }).fsync, false)
  assert.throws(() => parseProcessOptions(['--fsync', 'maybe'], {}), (e: unknown) => e instanceof ConfigError)
  assert.is(parseProcessOptions(['--demo', 'off', '--smtp', 'smtp://127.0.0.1:2525'], {}).smtp, 'smtp://127.0.0.1:2525')
  assert.throws(() => parseProcessOptions(['--demo', 'maybe'], {}), (e: unknown) => e instanceof ConfigError)
  assert.throws(() => parseProcessOptions(['--port', 'abc'], {}), (e: unknown) => e instanceof ConfigError)
  assert.throws(() => parseProcessOptions(['--bogus'], {}), (e: unknown) => e instanceof ConfigError)
  assert.throws(() => parseProcessOptions(['--port', '70000'], {}), (e: unknown) => e instanceof ConfigError)
})

Proc('--help lists every flag and exits 0', async () => {
  const r = await runServer(['--help'])
  assert.is(r.code, 0)
  for (const f of ['--host', '--port', '--data', '--secret', '--postgres', '--redis', 'PARLEY_HOST', 'PARLEY_PORT', 'PARLEY_DATA', 'PARLEY_SECRET', 'PARLEY_POSTGRES_URL', 'PARLEY_REDIS_URL']) assert.ok(r.stdout.includes(f), f)
})

Proc('bad flags, a busy port and an unusable data folder exit non-zero with one line', async ({ dir }) => {
  let r = await runServer(['--port', 'nope', '--data', dir])
  assert.is.not(r.code, 0)
  assert.is(r.stderr.trim().split('\n').length, 1)
  assert.match(r.stderr, /--port/)
  const blocker = createNetServer()
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', () => resolve()))
  const port = (blocker.address() as { port: number }).port
  r = await runServer(['--port', String(port), '--data', join(dir, 'd1'), '--secret', SECRET])
  blocker.close()
  assert.is.not(r.code, 0)
  assert.match(r.stderr, /in use/)
  assert.is(r.stderr.trim().split('\n').length, 1)
  const file = join(dir, 'a-file')
  await writeFile(file, 'not a folder')
  r = await runServer(['--port', '0', '--data', file])
  assert.is.not(r.code, 0)
  assert.match(r.stderr, /data folder/)
  assert.is(r.stderr.trim().split('\n').length, 1)
})

Proc('on port 0 it prints the real port, keeps a generated owner-only secret, and stops cleanly on SIGTERM', async ({ dir }) => {
  const data = join(dir, 'data')
  const s = await spawnServer(['--port', '0', '--data', data])
  assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.is.not(s.url, 'http://127.0.0.1:0')
  const health = await fetch(s.url + '/healthz')
  assert.equal(await health.json(), { ok: true })
  const st = await stat(join(data, 'secret'))
  assert.is(st.mode & 0o777, 0o600)
  const secret = (await readFile(join(data, 'secret'), 'utf8')).trim()
  const conv = await fetch(s.url + '/v1/conversations/c1', { method: 'PUT', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ participants: ['a'] }) })
  assert.is(conv.status, 201)
  const { SignJWT } = await import('jose')
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('a').setExpirationTime('1h').sign(new TextEncoder().encode(secret))
  const c = connectRaw(`${s.wsUrl}/c1?token=${token}`)
  await c.opened
  const started = Date.now()
  s.child.kill('SIGTERM')
  const closed = await c.closed
  assert.is(closed.code, 1001)
  const exit = await s.exited
  assert.is(exit.code, 0)
  assert.ok(Date.now() - started < 5000)
  const again = await spawnServer(['--port', '0', '--data', data])
  const conv2 = await fetch(again.url + '/v1/conversations/c1', { headers: { authorization: `Bearer ${secret}` } })
  assert.is(conv2.status, 200, 'the generated secret is kept across restarts')
  again.child.kill('SIGINT')
  assert.is((await again.exited).code, 0)
})

Proc('SIGTERM right after a burst of messages exits 0, with every message in the reader\'s unread count', async ({ dir }) => {
  const args = ['--port', '0', '--data', join(dir, 'data'), '--secret', SECRET]
  const admin = { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' }
  const s = await spawnServer(args)
  await fetch(s.url + '/v1/conversations/big', { method: 'PUT', headers: admin, body: JSON.stringify({ participants: ['w', 'r'] }) })
  // A burst as fast as it goes: the message rate limit (tested in abuse.test.ts) is lifted.
  assert.is((await fetch(s.url + '/v1/settings', { method: 'PATCH', headers: admin, body: JSON.stringify(UNLIMITED_RATE) })).status, 200)
  const { SignJWT } = await import('jose')
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('w').setExpirationTime('1h').sign(new TextEncoder().encode(SECRET))
  const w = connectPeer(s.wsUrl, 'big', token)
  await w.synced
  const N = 20_000
  for (let i = 0; i < N; i += 1000) {
    messagesOf(w.doc).push(Array.from({ length: 1000 }, (_, j) => ({ id: `m${i + j}`, senderId: 'w', text: `burst ${i + j}`, createdAt: 1_700_000_000_000 + i + j, type: 'UserMessage' as const })))
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  const newest = async (url: string): Promise<string | undefined> =>
    ((await (await fetch(url + '/v1/conversations/big/messages?limit=1', { headers: admin })).json()) as { data: Array<{ id: string }> }).data[0]?.id
  for (let guard = 0; guard < 200 && await newest(s.url) !== `m${N - 1}`; guard++) await new Promise(resolve => setTimeout(resolve, 50))
  assert.is(await newest(s.url), `m${N - 1}`, 'the burst is durable')
  s.child.kill('SIGTERM')
  const exit = await s.exited
  w.destroy()
  assert.is(exit.code, 0, s.output().split('\n').filter(l => l.includes('"level":50')).join('\n'))
  assert.match(s.output(), /"msg":"stopped"/)
  const again = await spawnServer(args)
  const list = await (await fetch(again.url + '/v1/users/r/conversations', { headers: admin })).json() as { data: Array<{ id: string, unreadCount: number }> }
  assert.equal(list.data.map(c => [c.id, c.unreadCount]), [['big', N]], 'the inbox index was flushed before the exit')
  // The search index of the burst was cut short by the shutdown: the next start goes on from its durable log.
  const found = await (await fetch(again.url + `/v1/conversations/big/messages?q=${N - 1}`, { headers: admin })).json() as { data: Array<{ id: string }> }
  assert.equal(found.data.map(m => m.id), [`m${N - 1}`], 'the newest message of the burst is found')
  const first = await (await fetch(again.url + '/v1/conversations/big/messages?q=0', { headers: admin })).json() as { data: Array<{ id: string }> }
  assert.equal(first.data.map(m => m.id), ['m0'], 'and the oldest')
  again.child.kill('SIGTERM')
  assert.is((await again.exited).code, 0)
})

Proc.run()
