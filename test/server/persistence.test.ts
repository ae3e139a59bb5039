import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { startServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { spawnServer } from '../helpers/process.ts'
import { connectPeer, sendMessage, texts, waitFor } from '../helpers/clients.ts'
import { messagesOf } from '../../shared/doc.ts'

const Persist = suite('persistence')

Persist('a restart keeps conversations, participants and messages', async () => {
  const s = await startServer({ settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'], subject: 'Kept' })
  await s.api('PUT', '/v1/conversations/c1/participants/carol', { access: 'Read', notify: false })
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  for (let i = 0; i < 30; i++) sendMessage(a.doc, 'alice', `m${i}`)
  await waitFor(() => s.server.rooms.peek('c1')?.doc.getArray('messages').length === 30)
  a.destroy()
  await s.stop(true)

  const s2 = await startServer({ dir: s.dir })
  const conv = await s2.api('GET', '/v1/conversations/c1')
  assert.is(conv.body.subject, 'Kept')
  assert.equal(conv.body.participants.carol, { access: 'Read', notify: false })
  const msgs = await s2.api('GET', '/v1/conversations/c1/messages?limit=100')
  assert.is(msgs.body.data.length, 30)
  const b = connectPeer(s2.wsUrl, 'c1', await s2.token('bob'))
  await b.synced
  await waitFor(() => texts(b.doc).length === 30)
  b.destroy()
  await s2.stop()
})

Persist('the log is compacted into a snapshot and the document loads the same', async () => {
  const s = await startServer({ config: { compactAfterUpdates: 10 }, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  for (let i = 0; i < 45; i++) {
    sendMessage(a.doc, 'alice', `m${i}`)
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  await waitFor(() => s.server.rooms.peek('c1')?.doc.getArray('messages').length === 45)
  await s.server.rooms.peek('c1')!.whenDurable()
  const stored = await s.store.loadDoc('c1')
  assert.ok(stored.snapshot !== null, 'a snapshot was written')
  assert.ok(stored.updates.length < 45, `log holds ${stored.updates.length} entries`)
  a.destroy()
  await s.stop(true)
  const s2 = await startServer({ dir: s.dir })
  const msgs = await s2.api('GET', '/v1/conversations/c1/messages?limit=100')
  assert.equal(msgs.body.data.map((m: { text: string }) => m.text), Array.from({ length: 45 }, (_, i) => `m${i}`))
  await s2.stop()
})

Persist('an idle conversation is unloaded after its last peer leaves and reloads on demand', async () => {
  const s = await startServer({ config: { idleUnloadMs: 50 } })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  sendMessage(a.doc, 'alice', 'before unload')
  await waitFor(() => s.server.rooms.peek('c1')?.doc.getArray('messages').length === 1)
  a.destroy()
  await waitFor(() => s.server.rooms.peek('c1') === undefined, 5000, 'unload')
  const b = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await b.synced
  await waitFor(() => texts(b.doc).includes('before unload'))
  b.destroy()
  await s.stop()
})

Persist('kill -9 in the middle of a 300-message burst loses no message a reader had received', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-kill-'))
  const secret = 'kill-secret-0123456789abc'
  const args = ['--port', '0', '--data', join(dir, 'data'), '--secret', secret]
  const key = new TextEncoder().encode(secret)
  const token = async (sub: string): Promise<string> => await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(key)
  const s = await spawnServer(args)
  const put = await fetch(s.url + '/v1/conversations/burst', { method: 'PUT', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ participants: ['w', 'r'] }) })
  assert.is(put.status, 201)
  const patched = await fetch(s.url + '/v1/settings', { method: 'PATCH', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify(UNLIMITED_RATE) })
  assert.is(patched.status, 200)
  const writer = connectPeer(s.wsUrl, 'burst', await token('w'))
  const reader = connectPeer(s.wsUrl, 'burst', await token('r'))
  await Promise.all([writer.synced, reader.synced])
  const seen = new Set<string>()
  messagesOf(reader.doc).observe(() => { for (const m of messagesOf(reader.doc).toArray()) seen.add(m.id) })
  for (let i = 0; i < 300; i++) {
    sendMessage(writer.doc, 'w', `b${i}`, `b${i}`)
    if (i % 10 === 9) await new Promise(resolve => setImmediate(resolve))
    if (i === 150) {
      await waitFor(() => seen.size > 20, 10000, 'reader received part of the burst')
      s.child.kill('SIGKILL')
    }
  }
  await s.exited
  const received = [...seen]
  writer.destroy(); reader.destroy()
  assert.ok(received.length > 0)

  const s2 = await spawnServer(args)
  const fresh = connectPeer(s2.wsUrl, 'burst', await token('r'))
  await fresh.synced
  await waitFor(() => messagesOf(fresh.doc).length >= received.length, 5000, 'fresh reader syncs')
  const after = new Set(messagesOf(fresh.doc).toArray().map(m => m.id))
  const lost = received.filter(id => !after.has(id))
  assert.equal(lost, [], `lost ${lost.length} of ${received.length} received messages`)
  fresh.destroy()
  s2.child.kill('SIGTERM')
  await s2.exited
  await rm(dir, { recursive: true, force: true })
})

Persist.run()
