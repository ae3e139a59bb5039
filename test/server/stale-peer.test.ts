/**
 * A peer that comes back holding changes the server lost (here: the data folder restored from
 * an older copy) is never locked out: its own changes are taken again, the rest is dropped at
 * the peer, and every peer converges on what the server holds.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { cp, rm } from 'node:fs/promises'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, waitFor } from '../helpers/clients.ts'
import { messagesOf } from '../../shared/doc.ts'
import type { Message } from '../../shared/schema.ts'
import { PDF_BYTES, uploadFile } from '../helpers/uploads.ts'

const Stale = suite('peers holding changes the server lost')

const ids = (list: Message[]): string[] => list.map(m => m.id)

const restServed = async (s: TestServer): Promise<Message[]> => (await s.api('GET', '/v1/conversations/c1/messages?limit=100')).body.data

Stale('a peer whose history the server lost is not closed; its own messages are taken again, the rest dropped at the peer', async () => {
  const s1 = await startServer()
  const port = Number(new URL(s1.url).port)
  const dir = s1.dir
  await s1.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  const alice = connectPeer(s1.wsUrl, 'c1', await s1.token('alice'))
  const bob = connectPeer(s1.wsUrl, 'c1', await s1.token('bob'))
  await Promise.all([alice.synced, bob.synced])
  const a1 = sendMessage(alice.doc, 'alice', 'a1')
  await waitFor(() => messagesOf(bob.doc).length === 1)
  await s1.stop(true)
  await cp(dir, `${dir}-old`, { recursive: true })

  // The server comes back; more happens that the restore below will lose.
  const s2 = await startServer({ dir, config: { port } })
  await waitFor(() => alice.provider.wsconnected && bob.provider.wsconnected, 10_000, 'peers reconnected')
  await s2.api('POST', '/v1/conversations/c1/messages', [{ text: 'sys', type: 'SystemMessage' }])
  await waitFor(() => messagesOf(bob.doc).length === 2 && messagesOf(alice.doc).length === 2)
  const b1 = sendMessage(bob.doc, 'bob', 'b1')
  await waitFor(() => messagesOf(alice.doc).length === 3)
  const a2 = sendMessage(alice.doc, 'alice', 'a2')
  await waitFor(() => messagesOf(bob.doc).length === 4)
  await s2.stop(true)

  // Restored from the older copy: sys, b1 and a2 are gone from the server.
  await rm(dir, { recursive: true, force: true })
  await cp(`${dir}-old`, dir, { recursive: true })
  const s3 = await startServer({ dir, config: { port } })
  try {
    const expected = [a1.id, b1.id, a2.id]
    const deadline = Date.now() + 15_000
    while (JSON.stringify(ids(await restServed(s3)).sort()) !== JSON.stringify([...expected].sort())) {
      assert.ok(Date.now() < deadline, `server got ${JSON.stringify(ids(await restServed(s3)))}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const served = ids(await restServed(s3))
    assert.is(served[0], a1.id, 'what the server kept stays first')
    // Every peer converges on the server's messages, in the server's order, without duplicates.
    await waitFor(() => JSON.stringify(ids(messagesOf(alice.doc).toArray())) === JSON.stringify(served), 10_000, 'alice converged')
    await waitFor(() => JSON.stringify(ids(messagesOf(bob.doc).toArray())) === JSON.stringify(served), 10_000, 'bob converged')
    assert.not.ok(messagesOf(alice.doc).toArray().some(m => m.text === 'sys'), 'the lost system message is dropped at the peer')
    for (const p of [alice, bob]) assert.not.ok(p.closes.some(c => c.code >= 4400 && c.code < 4500), `no final close: ${JSON.stringify(p.closes)}`)
    // And they go on writing.
    const a3 = sendMessage(alice.doc, 'alice', 'a3')
    await waitFor(() => messagesOf(bob.doc).toArray().some(m => m.id === a3.id), 10_000, 'bob got a3')
    const after = ids(await restServed(s3))
    assert.is(after[after.length - 1], a3.id)
    const metrics = await (await fetch(`${s3.url}/metrics`)).text()
    assert.match(metrics, /parley_stale_peers_total [12]\b/)
  } finally {
    alice.destroy()
    bob.destroy()
    await s3.stop()
    await rm(`${dir}-old`, { recursive: true, force: true })
  }
})

Stale('an update that forges content under fresh client ids is still refused with 4403', async () => {
  const s = await startServer()
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const alice = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  // Written before the first sync, so it travels in the catch-up (sync step 2).
  alice.doc.getMap('participants').set('mallory', { access: 'ReadWrite', notify: true, joinedAt: 1 })
  await waitFor(() => alice.closes.some(c => c.code === 4403), 10_000, 'refused')
  alice.destroy()
  await s.stop()
})

Stale('a lost message carrying an attachment the server does not hold is not taken again', async () => {
  const s1 = await startServer()
  const port = Number(new URL(s1.url).port)
  const dir = s1.dir
  await s1.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const alice = connectPeer(s1.wsUrl, 'c1', await s1.token('alice'))
  await alice.synced
  sendMessage(alice.doc, 'alice', 'a1')
  await waitFor(() => messagesOf(s1.server.rooms.peek('c1')!.doc).length === 1)
  await s1.stop(true)
  await cp(dir, `${dir}-old`, { recursive: true })

  const s2 = await startServer({ dir, config: { port } })
  await waitFor(() => alice.provider.wsconnected, 10_000, 'reconnected')
  // A system message alice holds and the restored server lacks puts her in recovery mode.
  await s2.api('POST', '/v1/conversations/c1/messages', [{ text: 'sys', type: 'SystemMessage' }])
  await waitFor(() => messagesOf(alice.doc).length === 2)
  const up = await uploadFile(s2.url, 'c1', `Bearer ${await s2.token('alice')}`, 'doc.pdf', PDF_BYTES)
  assert.is(up.status, 201)
  const withFile: Message = { id: 'with-file', senderId: 'alice', text: 'file', createdAt: Date.now(), type: 'UserMessage', attachment: { fileId: up.body.fileId, name: up.body.name, size: up.body.size, contentType: up.body.contentType } }
  messagesOf(alice.doc).push([withFile])
  const plain = sendMessage(alice.doc, 'alice', 'plain')
  await waitFor(() => messagesOf(s2.server.rooms.peek('c1')!.doc).length === 4)
  await s2.server.rooms.peek('c1')!.whenDurable()
  await s2.stop(true)

  // Restored from the older copy: both messages and the upload are gone from the server.
  await rm(dir, { recursive: true, force: true })
  await cp(`${dir}-old`, dir, { recursive: true })
  const s3 = await startServer({ dir, config: { port } })
  try {
    const deadline = Date.now() + 15_000
    while (!ids(await restServed(s3)).includes(plain.id)) {
      assert.ok(Date.now() < deadline, 'the plain message was taken again')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    await s3.server.rooms.peek('c1')?.whenDurable()
    assert.not.ok(ids(await restServed(s3)).includes(withFile.id), 'the message naming a file the server lost is dropped')
  } finally {
    alice.destroy()
    await s3.stop()
    await rm(`${dir}-old`, { recursive: true, force: true })
  }
})

Stale.run()

const Ids = suite('server client ids')

Ids('the server recognises its own tagged client ids, and not made-up ones', async () => {
  const { createServerClientIds } = await import('../../server/rooms/server-client-ids.ts')
  const ids = createServerClientIds('secret-a-0123456789')
  const other = createServerClientIds('secret-b-0123456789')
  const mine = Array.from({ length: 50 }, () => ids.next(() => false))
  assert.ok(mine.every(id => ids.isServers(id) && id >= 0 && id <= 0xffffffff))
  assert.ok(mine.filter(id => other.isServers(id)).length < 3, 'another secret does not recognise them')
  let passed = 0
  for (let i = 0; i < 2000; i++) if (ids.isServers((i * 2654435761) >>> 0)) passed++
  assert.ok(passed < 5, `${passed} of 2000 made-up ids passed`)
  assert.is(ids.next(id => id === mine[0]) === mine[0], false)
})

Ids.run()
