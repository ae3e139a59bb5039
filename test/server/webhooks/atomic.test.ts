import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { startServer } from '../../helpers/server.ts'
import { connectPeer, sendMessage, waitFor } from '../../helpers/clients.ts'
import { spawnServer } from '../../helpers/process.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { SectionPut } from '../../../server/storage/port.ts'
import { startReceiver } from './receiver.ts'

test('a message webhook is written in the same LevelDB batch as the message itself', async () => {
  const s = await startServer()
  const batches: Array<{ updates: number, sections: readonly SectionPut[] }> = []
  const original = s.store.appendUpdates.bind(s.store)
  s.store.appendUpdates = async (conv, seq, updates, with_ = {}) => {
    batches.push({ updates: updates.length, sections: with_.sections ?? [] })
    await original(conv, seq, updates, with_)
  }
  await s.api('PATCH', '/v1/settings', { webhookUrl: 'http://127.0.0.1:9/never' })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  const m = sendMessage(a.doc, 'alice', 'hello')
  await waitFor(() => batches.some(b => b.sections.some(p => JSON.stringify(p.value).includes(m.id))), 5000, 'the staged record')
  const batch = batches.find(b => b.sections.some(p => JSON.stringify(p.value).includes(m.id)))!
  assert.is(batch.updates, 1, 'the record travels with the update that carries the message')
  const put = batch.sections.find(p => p.section === 'outbox' && JSON.stringify(p.value).includes(m.id))!
  assert.ok(put !== undefined, 'the outbox record is in the batch')
  assert.match(put.key, /^v1!o!evt_/)
  assert.is((put.value as { payload: { event: { type: string } } }).payload.event.type, 'message.sent')
  a.destroy()
  await s.stop()
})

test('user and conversation-deletion webhooks are written in the same batch as their change', async () => {
  const s = await startServer()
  const seen: Array<{ what: string, sections: readonly SectionPut[] }> = []
  const putUser = s.store.putUser.bind(s.store)
  s.store.putUser = async (record, sections = []) => { seen.push({ what: 'user', sections }); await putUser(record, sections) }
  const del = s.store.deleteConversation.bind(s.store)
  s.store.deleteConversation = async (conv, members, sections = []) => { seen.push({ what: 'delete', sections }); await del(conv, members, sections) }
  await s.api('PATCH', '/v1/settings', { webhookUrl: 'http://127.0.0.1:9/never' })
  await s.api('PUT', '/v1/users/alice', { name: 'Alice' })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await s.api('DELETE', '/v1/conversations/c1')
  const typeOf = (p: SectionPut): string => (p.value as { payload: { event: { type: string } } }).payload.event.type
  assert.equal(seen.find(x => x.what === 'user')?.sections.map(typeOf), ['user.updated'])
  assert.equal(seen.find(x => x.what === 'delete')?.sections.map(typeOf), ['conversation.deleted'])
  const waiting: string[] = []
  for await (const [, v] of s.store.section('outbox').entries({ gte: 'v1!o!', lt: 'v1!o!\xff' })) waiting.push((v as { payload: { event: { type: string } } }).payload.event.type)
  assert.is(waiting.filter(t => t === 'user.updated').length, 1, 'queued once, not again by the subscriber')
  await s.stop()
})

test('edits and deletes of archived messages are written in the same batch as their webhooks (a delete with its reactions)', async () => {
  const s = await startServer({ config: { historyWindow: 2, archiveChunk: 1 } })
  const seen: Array<{ message: unknown, sections: readonly SectionPut[] }> = []
  const updateArchived = s.store.updateArchived.bind(s.store)
  s.store.updateArchived = async (conv, pos, message, sections = []) => { seen.push({ message, sections }); await updateArchived(conv, pos, message, sections) }
  // A delete goes with the removal of the message's reactions from the document: one append.
  const appendUpdates = s.store.appendUpdates.bind(s.store)
  s.store.appendUpdates = async (conv, seq, updates, with_ = {}) => {
    for (const a of with_.archiveDeletes ?? []) seen.push({ message: null, sections: with_.sections ?? [] })
    await appendUpdates(conv, seq, updates, with_)
  }
  await s.api('PATCH', '/v1/settings', { webhookUrl: 'http://127.0.0.1:9/never' })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const posted: Array<{ id: string }> = []
  for (let i = 0; i < 5; i++) posted.push(...(await s.api('POST', '/v1/conversations/c1/messages', [{ text: `m${i}`, sender: 'alice', type: 'UserMessage' }])).body)
  await s.server.rooms.peek('c1')!.whenDurable()
  const [first, second] = posted
  assert.ok((await s.store.archivePosOf('c1', first.id)) !== undefined, 'the first message is archived')
  assert.is((await s.api('PATCH', `/v1/conversations/c1/messages/${first.id}`, { text: 'edited' })).status, 200)
  assert.is((await s.api('DELETE', `/v1/conversations/c1/messages/${second.id}`)).status, 204)
  const typeOf = (p: SectionPut): string => (p.value as { payload: { event: { type: string } } }).payload.event.type
  const outbox = (x: { sections: readonly SectionPut[] }): SectionPut[] => x.sections.filter(p => p.section === 'outbox')
  assert.equal(seen.map(x => outbox(x).map(typeOf)), [['message.updated'], ['message.deleted']])
  assert.ok(seen.every(x => x.sections.some(p => p.section === 'search')), 'the search index log entry rides in the same batch')
  const waiting: string[] = []
  for await (const [, v] of s.store.section('outbox').entries({ gte: 'v1!o!', lt: 'v1!o!\xff' })) waiting.push((v as { payload: { event: { type: string } } }).payload.event.type)
  assert.is(waiting.filter(t => t === 'message.updated').length, 1, 'queued once')
  assert.is(waiting.filter(t => t === 'message.deleted').length, 1, 'queued once')
  await s.stop()
})

test('kill -9 right after a burst: every message a reader received is posted as a webhook after restart', async () => {
  const receiver = await startReceiver()
  const dir = await mkdtemp(join(tmpdir(), 'parley-hook-kill-'))
  const secret = 'hook-kill-secret-0123456789'
  const args = ['--port', '0', '--data', join(dir, 'data'), '--secret', secret]
  const token = async (sub: string): Promise<string> => await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(secret))
  const admin = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }
  receiver.status = 503 // nothing is delivered before the crash: everything must come from the outbox on disk
  const s = await spawnServer(args)
  await fetch(s.url + '/v1/settings', { method: 'PATCH', headers: admin, body: JSON.stringify({ webhookUrl: receiver.url }) })
  await fetch(s.url + '/v1/conversations/k', { method: 'PUT', headers: admin, body: JSON.stringify({ participants: ['w', 'r'] }) })
  const writer = connectPeer(s.wsUrl, 'k', await token('w'))
  const reader = connectPeer(s.wsUrl, 'k', await token('r'))
  await Promise.all([writer.synced, reader.synced])
  for (let i = 0; i < 50; i++) sendMessage(writer.doc, 'w', `b${i}`, `b${i}`)
  await waitFor(() => messagesOf(reader.doc).length >= 20, 10000, 'reader received part of the burst')
  s.child.kill('SIGKILL')
  await s.exited
  const received = messagesOf(reader.doc).toArray().map(m => m.id)
  writer.destroy(); reader.destroy()
  receiver.status = 200
  const s2 = await spawnServer(args)
  await waitFor(() => received.every(id => receiver.ok('message.sent').some(r => (r.body.data.message as { id: string }).id === id)), 20000, 'every received message posted')
  s2.child.kill('SIGTERM')
  await s2.exited
  await receiver.close()
  await rm(dir, { recursive: true, force: true })
})

test.run()
