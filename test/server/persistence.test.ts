import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { spawnServer } from '../helpers/process.ts'
import { assertNothingLost, killMidBurst } from '../helpers/burst.ts'
import { connectPeer, sendMessage, texts, waitFor } from '../helpers/clients.ts'
import * as Y from 'yjs'
import { messagesOf, metaOf, participantsOf } from '../../shared/doc.ts'
import { LevelStore } from '../../server/storage/level-store.ts'
import { SERVER_OWNER } from '../../server/rooms/room.ts'
import type { AppendWith } from '../../server/storage/port.ts'

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
  const received = await killMidBurst(await spawnServer(args), secret)
  const s2 = await spawnServer(args)
  await assertNothingLost(s2, secret, received)
  s2.child.kill('SIGTERM')
  await s2.exited
  await rm(dir, { recursive: true, force: true })
})

Persist('creating a conversation is one LevelDB batch: its document, its record and its memberships', async () => {
  const s = await startServer()
  const writes: Array<{ updates: number, with_: AppendWith }> = []
  const appendUpdates = s.store.appendUpdates.bind(s.store)
  s.store.appendUpdates = async (conv, seq, updates, with_ = {}) => { writes.push({ updates: updates.length, with_ }); await appendUpdates(conv, seq, updates, with_) }
  const separate: string[] = []
  s.store.createConversation = async () => { separate.push('createConversation') }
  s.store.setMember = async () => { separate.push('setMember') }
  assert.is((await s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })).status, 201)
  assert.is(writes.length, 1, 'one write')
  assert.is(writes[0].updates, 1, 'holding the document')
  assert.type(writes[0].with_.conversation?.createdAt, 'number')
  assert.equal(writes[0].with_.members?.map(m => m.userId).sort(), ['alice', 'bob'])
  await s.api('PUT', '/v1/conversations/c1/participants/carol', {})
  await s.api('DELETE', '/v1/conversations/c1/participants/bob')
  assert.equal(writes.slice(1).map(w => [w.updates, w.with_.members?.map(m => [m.userId, m.joinedAt === null ? 'removed' : 'member'])]), [[1, [['carol', 'member']]], [1, [['bob', 'removed']]]])
  assert.equal(separate, [], 'no separate record or membership write')
  assert.equal((await s.api('GET', '/v1/users/carol/conversations')).body.data.map((c: { id: string }) => c.id), ['c1'])
  assert.equal((await s.api('GET', '/v1/users/bob/conversations')).body.data, [])
  await s.stop()
})

Persist('of two concurrent creations of one conversation, one creates (201) and the other merges (200)', async () => {
  const s = await startServer()
  for (let i = 0; i < 5; i++) {
    const statuses = (await Promise.all([
      s.api('PUT', `/v1/conversations/race${i}`, { participants: ['alice'] }),
      s.api('PUT', `/v1/conversations/race${i}`, { participants: ['bob'] })
    ])).map(r => r.status).sort()
    assert.equal(statuses, [200, 201], `round ${i}`)
    assert.equal(Object.keys((await s.api('GET', `/v1/conversations/race${i}`)).body.participants).sort(), ['alice', 'bob'])
  }
  await s.stop()
})

/** Writes what a creation cut short by a crash left: the document, and the record only if `withRecord`. */
const crashedCreation = async (dir: string, conv: string, withRecord: boolean): Promise<void> => {
  const store = await LevelStore.open(join(dir, 'db'))
  const doc = new Y.Doc()
  doc.transact(() => {
    metaOf(doc).set('createdAt', 1000)
    metaOf(doc).set('guestAccess', 'write')
    participantsOf(doc).set('alice', { access: 'ReadWrite', notify: true, joinedAt: 1000 })
    participantsOf(doc).set('bob', { access: 'ReadWrite', notify: true, joinedAt: 1000 })
  })
  await store.appendUpdates(conv, 1, [Y.encodeStateAsUpdate(doc)], { bindings: [{ userId: SERVER_OWNER, clientIds: [doc.clientID] }] })
  if (withRecord) await store.createConversation(conv, 1000)
  await store.close()
}

const listed = async (s: Awaited<ReturnType<typeof startServer>>, user: string): Promise<string[]> =>
  (await s.api('GET', `/v1/users/${user}/conversations`)).body.data.map((c: { id: string }) => c.id)

Persist('a creation cut short before its record is 404 everywhere, and a repeated PUT completes it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-crash-create-'))
  await crashedCreation(dir, 'half', false)
  const s = await startServer({ dir })
  assert.is((await s.api('GET', '/v1/conversations/half')).status, 404)
  const refused = connectPeer(s.wsUrl, 'half', await s.token('alice'))
  await waitFor(() => refused.closes.length > 0, 5000, 'a refusal')
  assert.is(refused.closes[0].code, 4404)
  refused.destroy()
  const r = await s.api('PUT', '/v1/conversations/half', { subject: 'again' })
  assert.is(r.status, 201, 'the creation completes now')
  assert.equal(Object.keys(r.body.participants).sort(), ['alice', 'bob'])
  assert.is((await s.api('GET', '/v1/conversations/half')).body.subject, 'again')
  assert.equal(await listed(s, 'alice'), ['half'])
  assert.equal(await listed(s, 'bob'), ['half'])
  assert.equal(await s.store.listMemberships('bob'), [{ conv: 'half', joinedAt: 1000 }])
  const a = connectPeer(s.wsUrl, 'half', await s.token('alice'))
  await a.synced
  assert.is((await s.api('PUT', '/v1/conversations/half', {})).status, 200, 'then it is an update')
  a.destroy()
  assert.is((await s.api('DELETE', '/v1/conversations/half')).status, 204)
  await s.stop()
})

Persist('a creation cut short before its memberships: a repeated PUT naming the participants writes them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-crash-members-'))
  await crashedCreation(dir, 'nomembers', true)
  const s = await startServer({ dir })
  assert.is((await s.api('GET', '/v1/conversations/nomembers')).status, 200)
  assert.equal(await s.store.listMemberships('alice'), [])
  assert.is((await s.api('PUT', '/v1/conversations/nomembers', { participants: ['alice', 'bob'] })).status, 200)
  assert.equal(await s.store.listMemberships('alice'), [{ conv: 'nomembers', joinedAt: 1000 }])
  assert.equal(await s.store.listMemberships('bob'), [{ conv: 'nomembers', joinedAt: 1000 }])
  await s.stop()
})

Persist.run()
