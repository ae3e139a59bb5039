/**
 * Storage faults with real storage: the real `parley` process on a real, tiny tmpfs that fills
 * up during a burst of REST and sync writes. Needs root (to mount); CI runs as root.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { spawnServer, type RunningServer } from '../../helpers/process.ts'
import { UNLIMITED_RATE } from '../../helpers/server.ts'
import { connectPeer, sendMessage, waitFor } from '../../helpers/clients.ts'
import { messagesOf } from '../../../shared/doc.ts'

const DiskFull = suite('storage: disk full')
const SECRET = 'disk-full-secret-0123456789'
const TEXT = 'x'.repeat(9000)

const token = async (sub: string): Promise<string> =>
  await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET))

const api = async (url: string, method: string, path: string, body?: unknown): Promise<{ status: number, body: any, retryAfter: string | null }> => {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${SECRET}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text), retryAfter: res.headers.get('retry-after') }
}

const mountTmpfs = async (size: string): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-tmpfs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  return dir
}

const unmount = async (dir: string): Promise<void> => {
  execFileSync('umount', [dir])
  await rm(dir, { recursive: true, force: true })
}

/** Starts the server; these tests write as fast as they can, so the message rate limit is lifted. */
const start = async (data: string, env: Record<string, string> = {}): Promise<RunningServer> => {
  const server = await spawnServer(['--port', '0', '--data', data, '--secret', SECRET, '--demo', 'off'], { PARLEY_LOG_LEVEL: 'info', ...env })
  const res = await api(server.url, 'PATCH', '/v1/settings', UNLIMITED_RATE)
  if (res.status !== 200) throw new Error(`settings: HTTP ${res.status}`)
  return server
}

const stop = async (server: RunningServer, signal: NodeJS.Signals): Promise<{ code: number | null, signal: NodeJS.Signals | null }> => {
  server.child.kill(signal)
  return await server.exited
}

/**
 * Fills the disk with REST posts and sync writes, frees space, writes more, then stops the
 * server with `signal`, restarts it and checks that every acknowledged write is there.
 */
const fillFreeAndRestart = async (signal: NodeJS.Signals): Promise<void> => {
  const mnt = await mountTmpfs('3m')
  const data = join(mnt, 'data')
  let server = await start(data)
  try {
    assert.is((await api(server.url, 'PUT', '/v1/conversations/c1', { participants: ['alice', 'reader'] })).status, 201)
    assert.is((await api(server.url, 'PUT', '/v1/conversations/c1/participants/reader', { access: 'Read' })).status, 200)
    const reader = connectPeer(server.wsUrl, 'c1', await token('reader'))
    const writer = connectPeer(server.wsUrl, 'c1', await token('alice'))
    await Promise.all([reader.synced, writer.synced])

    // A burst: REST posts of ten 9,000-character messages, and sync writes, until refused.
    const acknowledged: string[] = []
    const sentBySync: string[] = []
    let refusal: Awaited<ReturnType<typeof api>> | null = null
    for (let i = 0; i < 200 && refusal === null; i++) {
      sentBySync.push(sendMessage(writer.doc, 'alice', `sync ${i} ${TEXT}`).id)
      const res = await api(server.url, 'POST', '/v1/conversations/c1/messages',
        Array.from({ length: 10 }, (_, j) => ({ text: `rest ${i}.${j} ${TEXT}`, sender: 'alice', type: 'UserMessage' })))
      if (res.status === 201) acknowledged.push(...res.body.map((m: { id: string }) => m.id))
      else refusal = res
    }
    assert.ok(refusal !== null, 'the disk filled up')
    assert.is(refusal.status, 503)
    assert.is(refusal.body.error.code, 'STORAGE_UNAVAILABLE')
    assert.is(refusal.retryAfter, '5')
    assert.ok(acknowledged.length > 0)

    const health = await api(server.url, 'GET', '/healthz')
    assert.is(health.status, 503)
    assert.is(health.body.error.code, 'STORAGE_UNAVAILABLE')
    assert.match(health.body.error.message, /disk full at .*ENOSPC/)
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(metrics, /parley_storage_failures_total 1\b/)
    assert.match(metrics, /parley_storage_available 0\b/)
    // Said once in the log, not once per refused write.
    assert.is(server.output().split('\n').filter(l => l.includes('storage failed: disk full')).length, 1)

    // More refused writes while the disk is full: every one is refused clearly.
    for (let i = 0; i < 3; i++) {
      const res = await api(server.url, 'POST', '/v1/conversations/c1/messages', [{ text: `refused ${i}`, sender: 'alice', type: 'UserMessage' }])
      assert.is(res.status, 503)
    }
    const newConv = await api(server.url, 'PUT', '/v1/conversations/c2', { participants: ['alice'] })
    assert.is(newConv.status, 503)
    // The writer that tried to write is asked to come back later (1013), the reader stays.
    sendMessage(writer.doc, 'alice', 'while full')
    await waitFor(() => writer.closes.some(c => c.code === 1013 && c.reason === 'STORAGE_UNAVAILABLE'), 10_000, 'writer refused with 1013')
    assert.equal(reader.closes, [], 'the reader was never kicked')
    const seenBeforeSpace = messagesOf(reader.doc).toArray().map(m => m.id)

    // Space comes back: service resumes by itself.
    execFileSync('mount', ['-o', 'remount,size=50m', mnt])
    const deadline = Date.now() + 20_000
    while ((await api(server.url, 'GET', '/healthz')).status !== 200) {
      assert.ok(Date.now() < deadline, `storage recovered within 20 s\n${server.output().slice(-3000)}`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const after = await api(server.url, 'POST', '/v1/conversations/c1/messages', [{ text: 'after space returned', sender: 'alice', type: 'UserMessage' }])
    assert.is(after.status, 201)
    acknowledged.push(after.body[0].id)
    assert.is((await api(server.url, 'PUT', '/v1/conversations/c3', { participants: ['alice'] })).status, 201)
    // The writer's messages, refused while the disk was full, arrive once it is back.
    await waitFor(() => sentBySync.every(id => messagesOf(reader.doc).toArray().some(m => m.id === id)), 20_000, 'writer messages delivered after recovery')
    await waitFor(() => messagesOf(reader.doc).toArray().some(m => m.id === after.body[0].id), 10_000, 'reader got the new message')
    const seen = messagesOf(reader.doc).toArray().map(m => m.id)
    assert.ok(seenBeforeSpace.every(id => seen.includes(id)))
    reader.destroy()
    writer.destroy()

    const exit = await stop(server, signal)
    if (signal === 'SIGTERM') assert.equal(exit, { code: 0, signal: null }, server.output())

    server = await start(data)
    const stored = new Set<string>()
    let before: string | undefined
    for (let page = 0; page < 100; page++) {
      const res = await api(server.url, 'GET', `/v1/conversations/c1/messages?limit=100${before === undefined ? '' : `&before=${before}`}`)
      assert.is(res.status, 200)
      for (const m of res.body.data) stored.add(m.id)
      if (!res.body.hasMore) break
      before = res.body.data[0].id
    }
    for (const id of acknowledged) assert.ok(stored.has(id), `acknowledged REST message ${id} is stored`)
    for (const id of seen) assert.ok(stored.has(id), `message ${id} a reader saw is stored`)
    for (const id of sentBySync) assert.ok(stored.has(id), `sync message ${id} is stored`)
    assert.is((await api(server.url, 'GET', '/v1/conversations/c3')).status, 200)
    // The conversation list counts every stored message, also those whose inbox update storage
    // refused at the moment it failed.
    const inbox = await api(server.url, 'GET', '/v1/users/reader/conversations')
    assert.is(inbox.body.data.find((c: { id: string }) => c.id === 'c1')?.unreadCount, stored.size)
    assert.is((await api(server.url, 'GET', '/v1/conversations/c2')).status, 404, 'the refused creation did not happen')
    assert.equal(await stop(server, 'SIGTERM'), { code: 0, signal: null })
  } finally {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL')
      await server.exited
    }
    await unmount(mnt)
  }
}

DiskFull('a full disk refuses writes clearly, keeps readers, resumes when space returns, and loses nothing across SIGTERM', async () => {
  await fillFreeAndRestart('SIGTERM')
})

DiskFull('the same with kill -9 after space returned: nothing acknowledged is lost', async () => {
  await fillFreeAndRestart('SIGKILL')
})

DiskFull('shutdown while the disk is still full needs no space and exits 0, and the server starts again on the full disk', async () => {
  const mnt = await mountTmpfs('3m')
  const data = join(mnt, 'data')
  const env = { PARLEY_RESERVE_MB: '1' }
  let server = await start(data, env)
  try {
    await api(server.url, 'PUT', '/v1/conversations/c1', { participants: ['alice'] })
    const reader = connectPeer(server.wsUrl, 'c1', await token('alice'))
    await reader.synced
    let acknowledged = 0
    let status = 201
    for (let i = 0; i < 200 && status === 201; i++) {
      status = (await api(server.url, 'POST', '/v1/conversations/c1/messages',
        Array.from({ length: 10 }, () => ({ text: TEXT, sender: 'alice', type: 'UserMessage' })))).status
      if (status === 201) acknowledged += 10
    }
    assert.is(status, 503)
    reader.destroy()
    assert.equal(await stop(server, 'SIGTERM'), { code: 0, signal: null }, server.output())
    assert.match(server.output(), /"stopped"/)

    // LevelDB needs free space to replay its log: the server gives it its reserve.
    server = await start(data, env)
    const page = await api(server.url, 'GET', '/v1/conversations/c1/messages?limit=100')
    assert.is(page.status, 200)
    assert.is(page.body.data.length, Math.min(100, acknowledged))
    assert.equal(await stop(server, 'SIGTERM'), { code: 0, signal: null }, server.output())
  } finally {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
    await server.exited
    await unmount(mnt)
  }
})

DiskFull.run()
