/**
 * Message order and read markers in the client library (contract §4.1): a view never writes a
 * message before it synced (from the server or its local store), so what it sends right after
 * `open` lands after the history; read markers hold whatever the order.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { rm } from 'node:fs/promises'
import * as Y from 'yjs'
import type { Session } from '../../client/node.ts'
import type { ConversationView } from '../../client/view.ts'
import { messagesOf } from '../../shared/doc.ts'
import type { Message } from '../../shared/schema.ts'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, waitFor } from '../helpers/clients.ts'
import { convId, sessionFor, tempDir } from './helpers.ts'

interface Ctx { s: TestServer, sessions: Session[], dirs: string[] }
const Order = suite<Ctx>('client message order')

Order.before.each(async ctx => { ctx.s = await startServer(); ctx.sessions = []; ctx.dirs = [] })
Order.after.each(async ctx => {
  await Promise.all(ctx.sessions.map(async s => { await s.close() }))
  await ctx.s.stop()
  for (const d of ctx.dirs) await rm(d, { recursive: true, force: true })
})

/** A conversation of alice and bob holding "old 1".."old 3", written through REST. */
const withHistory = async (s: TestServer): Promise<string> => {
  const id = convId('order')
  assert.is((await s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })).status, 201)
  for (const text of ['old 1', 'old 2', 'old 3']) {
    assert.is((await s.api('POST', `/v1/conversations/${id}/messages`, [{ text, sender: 'alice', type: 'UserMessage' }])).status, 201)
  }
  return id
}

const restMessages = async (s: TestServer, id: string): Promise<Message[]> => {
  const r = await s.api('GET', `/v1/conversations/${id}/messages?limit=100`)
  assert.is(r.status, 200)
  return r.body.data as Message[]
}

const inboxRow = async (s: TestServer, userId: string, id: string): Promise<{ unreadCount: number, lastMessage: Message | null }> => {
  const r = await s.api('GET', `/v1/users/${userId}/conversations`)
  const row = (r.body.data as Array<{ id: string, unreadCount: number, lastMessage: Message | null }>).find(c => c.id === id)
  assert.ok(row !== undefined)
  return row
}

/** The Yjs item holding message `id` in the server's document. */
const serverItem = (s: TestServer, conv: string, id: string): Y.Item | null => {
  const arr = messagesOf(s.server.rooms.peek(conv)?.doc ?? new Y.Doc())
  for (let item = arr._start; item !== null; item = item.right) {
    if (!item.deleted && item.content.getContent().some(m => (m as Message).id === id)) return item
  }
  return null
}

Order('messages sent right after open land after the history, in send order, written as appends', async ctx => {
  const id = await withHistory(ctx.s)
  const views: ConversationView[] = []
  const sent: Message[] = []
  for (let i = 1; i <= 4; i++) {
    const session = await sessionFor(ctx.s, 'bob', {}, ctx.sessions)
    const view = session.open(id)
    const m = view.send(`new ${i}`)
    assert.is(m.status, 'pending')
    await view.whenSent(m.id)
    views.push(view)
    sent.push(m)
  }
  const want = ['old 1', 'old 2', 'old 3', 'new 1', 'new 2', 'new 3', 'new 4']
  assert.equal((await restMessages(ctx.s, id)).map(m => m.text), want)
  await waitFor(() => views.every(v => v.messages.length === 7), 5000, 'every view has all')
  for (const v of views) assert.equal(v.messages.map(m => m.text), want)
  assert.is((await inboxRow(ctx.s, 'alice', id)).lastMessage?.text, 'new 4')
  for (const [i, v] of views.entries()) {
    const item = serverItem(ctx.s, id, sent[i].id)
    assert.ok(item !== null)
    assert.is(item.id.client, v.doc.clientID, 'written by the view itself (the server did not have to move it)')
    assert.ok(item.origin !== null, 'appended after the history it synced')
  }
})

Order('before the first sync, sends show at once as pending, can be edited and deleted, and go out once, in order', async ctx => {
  const id = await withHistory(ctx.s)
  const view = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  const added: string[] = []
  const edited: string[] = []
  const deleted: string[] = []
  view.on('added', m => added.push(m.text))
  view.on('edited', (m, prev) => edited.push(`${prev.text} -> ${m.text}`))
  view.on('deleted', m => deleted.push(m.text))
  const a = view.send('a')
  const b = view.send('b')
  const c = view.send('c')
  assert.equal(view.messages.map(m => [m.text, m.status]), [['a', 'pending'], ['b', 'pending'], ['c', 'pending']])
  const b2 = view.edit(b.id, 'B')
  assert.ok(b2.editedAt !== undefined)
  view.delete(c.id)
  assert.equal(view.messages.map(m => m.text), ['a', 'B'])
  await view.whenSent(b.id)
  await view.whenSent(a.id)
  assert.equal(view.messages.map(m => [m.text, m.status]), [['old 1', 'sent'], ['old 2', 'sent'], ['old 3', 'sent'], ['a', 'sent'], ['B', 'sent']])
  assert.equal((await restMessages(ctx.s, id)).map(m => m.text), ['old 1', 'old 2', 'old 3', 'a', 'B'])
  assert.equal(added.filter(t => t === 'a' || t === 'b' || t === 'c'), ['a', 'b', 'c'], 'added once each, at send time')
  assert.equal(edited, ['b -> B'])
  assert.equal(deleted, ['c'])
})

Order('markRead marks everything read when the last message is not the newest, and the unread count clears', async ctx => {
  const id = await withHistory(ctx.s)
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  await alice.whenSynced()
  const bob = connectPeer(ctx.s.wsUrl, id, await ctx.s.token('bob'))
  try {
    await bob.synced
    const now = Date.now()
    messagesOf(bob.doc).push([{ id: 'b1', senderId: 'bob', text: 'b1', createdAt: now, type: 'UserMessage' }])
    messagesOf(bob.doc).push([{ id: 'b2', senderId: 'bob', text: 'b2', createdAt: now + 1, type: 'UserMessage' }])
    // Written offline an hour ago, delivered now: last in the conversation, oldest createdAt.
    messagesOf(bob.doc).push([{ id: 'late', senderId: 'bob', text: 'late', createdAt: now - 3_600_000, type: 'UserMessage' }])
    await waitFor(() => alice.messages.length === 6, 5000, 'alice has all')
    await ctx.s.server.rooms.peek(id)?.whenDurable()
    assert.is((await inboxRow(ctx.s, 'alice', id)).unreadCount, 3)
    assert.is((await inboxRow(ctx.s, 'alice', id)).lastMessage?.id, 'late')
    assert.ok(alice.markRead())
    assert.is(alice.readUpTo, now + 1, 'the newest createdAt read, not the last element\'s')
    assert.not.ok(alice.markRead(), 'nothing new to mark')
    await waitFor(() => ctx.s.server.rooms.peek(id)?.doc.getMap('reads').get('alice') === now + 1, 5000, 'marker on the server')
    await ctx.s.server.rooms.peek(id)?.whenDurable()
    assert.is((await inboxRow(ctx.s, 'alice', id)).unreadCount, 0)
  } finally {
    bob.destroy()
  }
})

Order('a message sent before any sync is kept in the local folder across a restart and lands after the history', async ctx => {
  const id = await withHistory(ctx.s)
  const port = Number(new URL(ctx.s.url).port)
  const dir = await tempDir()
  ctx.dirs.push(dir)
  await ctx.s.stop(true)
  const first = await sessionFor(ctx.s, 'bob', { dir }, [])
  const v1 = first.open(id)
  await v1.ready
  const m = v1.send('written offline')
  assert.equal(v1.messages.map(x => [x.text, x.status]), [['written offline', 'pending']])
  await first.close() // the app quits before it ever reached the server
  ctx.s = await startServer({ dir: ctx.s.dir, config: { port } })
  const second = await sessionFor(ctx.s, 'bob', { dir }, ctx.sessions)
  const v2 = second.open(id)
  await v2.ready
  assert.equal(v2.messages.map(x => [x.id, x.status]), [[m.id, 'pending']], 'restored from the folder')
  await v2.whenSent(m.id)
  assert.equal((await restMessages(ctx.s, id)).map(x => x.text), ['old 1', 'old 2', 'old 3', 'written offline'])
  await v2.close()
  const v3 = (await sessionFor(ctx.s, 'bob', { dir }, ctx.sessions)).open(id)
  await v3.whenSynced()
  assert.equal(v3.messages.map(x => [x.text, x.status]), [['old 1', 'sent'], ['old 2', 'sent'], ['old 3', 'sent'], ['written offline', 'sent']])
  assert.equal((await restMessages(ctx.s, id)).map(x => x.text), ['old 1', 'old 2', 'old 3', 'written offline'], 'sent once')
})

Order.run()
