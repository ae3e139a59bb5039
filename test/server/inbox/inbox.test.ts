import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join as joinPath } from 'node:path'
import type * as Y from 'yjs'
import { startServer, type TestServer } from '../../helpers/server.ts'
import { connectPeer, waitFor, type Peer } from '../../helpers/clients.ts'
import { messagesOf, readsOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'
import { LevelStore } from '../../../server/storage/level-store.ts'
import { InboxIndex } from '../../../server/inbox/inbox-index.ts'

interface Ctx { s: TestServer, peers: Peer[] }

const Inbox = suite<Ctx>('inbox index')

Inbox.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
})

Inbox.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

const join = async (ctx: Ctx, conv: string, userId: string, guest = false): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, conv, await ctx.s.token(userId), guest ? { guest: '1' } : {})
  ctx.peers.push(p)
  await p.synced
  return p
}

/** Appends a message with a chosen createdAt, as an honest client does. */
const say = (doc: Y.Doc, senderId: string, text: string, createdAt: number, id = `m${createdAt}`): Message => {
  const m: Message = { id, senderId, text, createdAt, type: 'UserMessage' }
  messagesOf(doc).push([m])
  return m
}

const list = async (ctx: Ctx, userId: string): Promise<Array<{ id: string, subject: string | null, lastMessage: Message | null, unreadCount: number, lastActivityAt: number }>> => {
  const r = await ctx.s.api('GET', `/v1/users/${userId}/conversations`)
  assert.is(r.status, 200)
  return r.body.data
}

/** Waits until `n` message events were handled and written. */
const settled = async (ctx: Ctx, check: () => boolean): Promise<void> => {
  await waitFor(check, 5000)
  await ctx.s.server.eventServices.inbox.settled()
}

Inbox('lists the conversations where the user is a participant, newest activity first, with subject and last message', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/old', { subject: 'Old one', participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/new', { subject: 'New one', participants: ['alice'] })
  await ctx.s.api('PUT', '/v1/conversations/other', { participants: ['bob'] })
  const b = await join(ctx, 'old', 'bob')
  const t = Date.now() + 1000
  say(b.doc, 'bob', 'hello from the past', t)
  const a = await join(ctx, 'new', 'alice')
  say(a.doc, 'alice', 'fresh', t + 10)
  await settled(ctx, () => ctx.s.server.rooms.peek('new')?.doc.getArray('messages').length === 1)
  const rows = await list(ctx, 'alice')
  assert.equal(rows.map(r => r.id), ['new', 'old'])
  const [first, second] = rows
  assert.is(first.subject, 'New one')
  assert.is(first.lastMessage?.text, 'fresh')
  assert.is(second.subject, 'Old one')
  assert.is(second.lastMessage?.text, 'hello from the past')
  assert.is(second.unreadCount, 1)
  assert.is(first.unreadCount, 0)
  assert.is(second.lastActivityAt, t)
  assert.is(first.lastActivityAt, t + 10)
})

Inbox('a guest never sees a conversation it visited in its list, while its messages count as unread for participants', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/room', { participants: ['alice'] })
  const g = await join(ctx, 'room', 'visitor', true)
  say(g.doc, 'visitor', 'hi from a guest', Date.now())
  await settled(ctx, () => ctx.s.server.rooms.peek('room')?.doc.getArray('messages').length === 1)
  assert.equal(await list(ctx, 'visitor'), [])
  const rows = await list(ctx, 'alice')
  assert.is(rows.length, 1)
  assert.is(rows[0].unreadCount, 1)
  assert.is(rows[0].lastMessage?.senderId, 'visitor')
})

Inbox('unread counts messages from others after the read marker and follow reads, sends and deletes', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  const a = await join(ctx, 'c1', 'alice')
  const b = await join(ctx, 'c1', 'bob')
  const t = Date.now()
  say(b.doc, 'bob', 'one', t + 1)
  const two = say(b.doc, 'bob', 'two', t + 2)
  say(b.doc, 'bob', 'three', t + 3)
  await settled(ctx, () => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 3)
  assert.is((await list(ctx, 'alice'))[0].unreadCount, 3)
  assert.is((await list(ctx, 'bob'))[0].unreadCount, 0)

  readsOf(a.doc).set('alice', two.createdAt)
  await settled(ctx, () => ctx.s.server.rooms.peek('c1')?.doc.getMap('reads').get('alice') === two.createdAt)
  assert.is((await list(ctx, 'alice'))[0].unreadCount, 1)

  say(a.doc, 'alice', 'my own', t + 4)
  await settled(ctx, () => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 4)
  const afterOwn = (await list(ctx, 'alice'))[0]
  assert.is(afterOwn.unreadCount, 1)
  assert.is(afterOwn.lastMessage?.text, 'my own')
  assert.is((await list(ctx, 'bob'))[0].unreadCount, 1)

  b.doc.transact(() => { messagesOf(b.doc).delete(2, 1) }) // bob deletes 'three'
  await settled(ctx, () => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 3)
  assert.is((await list(ctx, 'alice'))[0].unreadCount, 0)

  a.doc.transact(() => { messagesOf(a.doc).delete(2, 1) }) // alice deletes her last message
  await settled(ctx, () => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 2)
  const row = (await list(ctx, 'bob'))[0]
  assert.is(row.unreadCount, 0)
  assert.is(row.lastMessage?.text, 'two')
})

Inbox('a participant with access None sees no row for the conversation, and gets it back with access restored', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/secret', { subject: 'secret plan', participants: ['alice'] })
  await ctx.s.api('PUT', '/v1/conversations/secret/participants/eve', { access: 'None' })
  await ctx.s.api('POST', '/v1/conversations/secret/messages', [{ text: 'the plan', sender: 'alice', type: 'UserMessage' }])
  const list = async (): Promise<string[]> => (await ctx.s.api('GET', '/v1/users/eve/conversations')).body.data.map((c: { id: string }) => c.id)
  assert.equal(await list(), [])
  await ctx.s.api('PATCH', '/v1/conversations/secret/participants/eve', { access: 'Read' })
  assert.equal(await list(), ['secret'])
  await ctx.s.api('PATCH', '/v1/conversations/secret/participants/eve', { access: 'None' })
  assert.equal(await list(), [])
})

Inbox('a removed participant loses the conversation from its list, and a deleted conversation leaves every list', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/c2', { participants: ['alice', 'bob'] })
  await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'hi', sender: 'bob', type: 'UserMessage' }])
  assert.equal((await list(ctx, 'alice')).map(r => r.id).sort(), ['c1', 'c2'])
  assert.ok((await ctx.s.api('DELETE', '/v1/conversations/c1/participants/alice')).status < 300)
  assert.equal((await list(ctx, 'alice')).map(r => r.id), ['c2'])
  assert.equal((await list(ctx, 'bob')).map(r => r.id).sort(), ['c1', 'c2'])
  assert.is((await ctx.s.api('DELETE', '/v1/conversations/c2')).status, 204)
  assert.equal(await list(ctx, 'alice'), [])
  assert.equal((await list(ctx, 'bob')).map(r => r.id), ['c1'])
  // Re-added, the conversation comes back with what the user has not read.
  await ctx.s.api('PUT', '/v1/conversations/c1/participants/alice', {})
  const rows = await list(ctx, 'alice')
  assert.equal(rows.map(r => [r.id, r.unreadCount]), [['c1', 1]])
})

Inbox('a list read right after a REST write sees it', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'first', sender: 'bob', type: 'UserMessage' }])
  const rows = await list(ctx, 'alice')
  assert.is(rows[0].lastMessage?.text, 'first')
  assert.is(rows[0].unreadCount, 1)
})

Inbox('the list is read from the index: it survives a restart and loads no document', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/c1', { subject: 'S', participants: ['alice', 'bob'] })
  await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'kept', sender: 'bob', type: 'UserMessage' }])
  const before = await list(ctx, 'alice')
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir: ctx.s.dir })
  assert.equal(await list(ctx, 'alice'), before)
  assert.is(ctx.s.server.rooms.loaded().length, 0)
})

Inbox('memberships from before the index are backfilled on the first list read', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/c1', { subject: 'Legacy', participants: ['alice', 'bob'] })
  await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'from before', sender: 'bob', type: 'UserMessage' }])
  await ctx.s.server.eventServices.inbox.settled()
  // Wipe the index, as if the data predated it.
  const kv = ctx.s.store.section('inbox')
  const keys: string[] = []
  for await (const [k] of kv.entries({})) keys.push(k)
  await kv.batch(keys.map(key => ({ type: 'del' as const, key })))
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir: ctx.s.dir })
  const rows = await list(ctx, 'alice')
  assert.equal(rows.map(r => [r.id, r.subject, r.lastMessage?.text, r.unreadCount]), [['c1', 'Legacy', 'from before', 1]])
})

Inbox.run()

const Scale = suite('inbox index at scale')

Scale('a user in 3,000 conversations gets its list, newest first, from one scan', async () => {
  const dir = await mkdtemp(joinPath(tmpdir(), 'parley-inbox-'))
  const store = await LevelStore.open(joinPath(dir, 'db'))
  try {
    const inbox = new InboxIndex({
      section: store.section('inbox'),
      peekDoc: () => undefined,
      withDoc: async () => { throw new Error('no document may be loaded') },
      listMemberships: async () => [],
      conversationExists: async () => false,
      now: () => 0,
      onError: err => { throw err }
    })
    const N = 3000
    for (let i = 0; i < N; i++) {
      const conv = `c${i}`
      inbox.handle({ type: 'participant.added', conversationId: conv, userId: 'alice', participant: { access: 'ReadWrite', notify: true, joinedAt: 0 } })
      inbox.handle({ type: 'message.sent', conversationId: conv, message: { id: `m${i}`, senderId: 'bob', text: `n${i}`, createdAt: 1_000 + i, type: 'UserMessage' } })
    }
    await inbox.settled()
    // The list is one prefix scan of the user's rows (its cost is measured by benchmarks, not here).
    const rows = await inbox.list('alice')
    assert.is(rows.length, N)
    assert.is(rows[0].id, `c${N - 1}`)
    assert.is(rows[N - 1].id, 'c0')
    assert.ok(rows.every(r => r.unreadCount === 1))
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
})

Scale('a burst of events is indexed in a few batches, in order, so the backlog a shutdown waits for stays small', async () => {
  const dir = await mkdtemp(joinPath(tmpdir(), 'parley-inbox-'))
  const store = await LevelStore.open(joinPath(dir, 'db'))
  try {
    const section = store.section('inbox')
    let batches = 0
    const inbox = new InboxIndex({
      section: { ...section, batch: async ops => { batches++; await section.batch(ops) } },
      peekDoc: () => undefined,
      withDoc: async () => { throw new Error('no document may be loaded') },
      listMemberships: async () => [],
      conversationExists: async () => true,
      now: () => 0,
      onError: err => { throw err }
    })
    const N = 2000
    for (const userId of ['alice', 'bob']) inbox.handle({ type: 'participant.added', conversationId: 'c', userId, participant: { access: 'ReadWrite', notify: true, joinedAt: 0 } })
    for (let i = 1; i <= N; i++) {
      inbox.handle({ type: 'message.sent', conversationId: 'c', message: { id: `m${i}`, senderId: 'bob', text: `n${i}`, createdAt: i, type: 'UserMessage' } })
      // A marker in the middle of the burst reads what the messages before it wrote.
      if (i === N / 2) inbox.handle({ type: 'reads.updated', conversationId: 'c', userId: 'alice', readUpTo: N / 4 })
    }
    await inbox.settled()
    assert.ok(batches <= 10, `${batches} batches for ${N} messages`)
    const [row] = await inbox.list('alice')
    assert.is(row.unreadCount, N - N / 4)
    assert.is(row.lastMessage?.text, `n${N}`)
    assert.is((await inbox.list('bob'))[0].unreadCount, 0)
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
})

Scale.run()
