/**
 * Message order (contract §4.1): a message is never placed before messages committed before its
 * sender first synced, whatever the client. A stock provider that pushes before the first sync
 * has its message moved to the end by the server (kept once, connection open); concurrent
 * appends of synced peers are all kept; every peer, REST and the inbox agree on the order.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, texts, waitFor, type Peer } from '../helpers/clients.ts'
import { findMessageIndex, messagesOf } from '../../shared/doc.ts'
import type { Message } from '../../shared/schema.ts'
import type { ServerEvent } from '../../server/events.ts'

interface Ctx { s: TestServer, peers: Peer[], events: ServerEvent[] }
const Order = suite<Ctx>('message order')

Order.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
  ctx.events = []
  ctx.s.server.events.subscribe(e => ctx.events.push(e))
})
Order.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

let n = 0
/** A conversation of `participants` holding "old 1".."old 3", written through REST. */
const withHistory = async (ctx: Ctx, participants: string[]): Promise<string> => {
  const id = `order-${++n}`
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants })).status, 201)
  for (const text of ['old 1', 'old 2', 'old 3']) {
    assert.is((await ctx.s.api('POST', `/v1/conversations/${id}/messages`, [{ text, sender: participants[0], type: 'UserMessage' }])).status, 201)
  }
  return id
}

/**
 * A stock peer whose Y.Doc has client id `clientId`: a small id makes Yjs put a message pushed
 * before the first sync in front of the server's own items (concurrent inserts at one position
 * are ordered by client id), the case that must not happen.
 */
const peerWithClientId = async (ctx: Ctx, conv: string, userId: string, clientId: number): Promise<Peer> => {
  const doc = new Y.Doc()
  doc.clientID = clientId
  const p = connectPeer(ctx.s.wsUrl, conv, await ctx.s.token(userId), {}, doc)
  ctx.peers.push(p)
  return p
}

const join = async (ctx: Ctx, conv: string, userId: string): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, conv, await ctx.s.token(userId))
  ctx.peers.push(p)
  await p.synced
  return p
}

const message = (senderId: string, text: string, id: string, createdAt = Date.now()): Message =>
  ({ id, senderId, text, createdAt, type: 'UserMessage' })

const restTexts = async (ctx: Ctx, conv: string): Promise<string[]> => {
  const r = await ctx.s.api('GET', `/v1/conversations/${conv}/messages?limit=100`)
  assert.is(r.status, 200)
  return (r.body.data as Message[]).map(m => m.text)
}

const restIds = async (ctx: Ctx, conv: string): Promise<string[]> =>
  ((await ctx.s.api('GET', `/v1/conversations/${conv}/messages?limit=100`)).body.data as Message[]).map(m => m.id)

const inboxRow = async (ctx: Ctx, userId: string, conv: string): Promise<{ lastMessage: Message | null, unreadCount: number }> => {
  const r = await ctx.s.api('GET', `/v1/users/${userId}/conversations`)
  assert.is(r.status, 200)
  const row = (r.body.data as Array<{ id: string, lastMessage: Message | null, unreadCount: number }>).find(x => x.id === conv)
  assert.ok(row !== undefined, `inbox row of ${conv}`)
  return row
}

const serverTexts = (ctx: Ctx, conv: string): string[] => texts(ctx.s.server.rooms.peek(conv)?.doc ?? new Y.Doc())

Order('a stock provider that pushes before the first sync ends up with its message at the end, once, still connected', async ctx => {
  const conv = await withHistory(ctx, ['alice', 'bob'])
  const watcher = await join(ctx, conv, 'alice')
  const serverClientId = ctx.s.server.rooms.peek(conv)?.doc.clientID
  const bob = await peerWithClientId(ctx, conv, 'bob', 1)
  const early = message('bob', 'early', 'early-1')
  messagesOf(bob.doc).push([early]) // right after new WebsocketProvider(...): not synced yet
  await bob.synced
  const want = ['old 1', 'old 2', 'old 3', 'early']
  await waitFor(() => texts(bob.doc).length === 4 && texts(watcher.doc).length === 4, 5000, 'the message on both peers')
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  assert.equal(texts(bob.doc), want, 'the sender sees its message moved to the end, not duplicated')
  assert.equal(texts(watcher.doc), want)
  assert.equal(serverTexts(ctx, conv), want)
  assert.equal(await restTexts(ctx, conv), want)
  assert.equal((await restIds(ctx, conv)).filter(id => id === 'early-1').length, 1)
  const moved = messagesOf(bob.doc).get(3)
  assert.equal(moved, early, 'the same message object: id, sender, text and createdAt kept')
  assert.equal((await inboxRow(ctx, 'alice', conv)).lastMessage?.id, 'early-1')
  assert.is(bob.provider.wsconnected, true)
  assert.equal(bob.closes, [], 'the connection stays open')
  const about = ctx.events.filter(e => 'message' in e && e.message.id === 'early-1').map(e => e.type)
  assert.equal(about, ['message.sent'], 'one message.sent, no delete or update')
  // After the move the sender goes on as any synced peer: its next message is an append.
  messagesOf(bob.doc).push([message('bob', 'later', 'later-1')])
  await waitFor(() => texts(watcher.doc).length === 5)
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  assert.equal(await restTexts(ctx, conv), [...want, 'later'])
  assert.equal(texts(bob.doc), [...want, 'later'])
  assert.is(ctx.s.server.rooms.peek(conv)?.doc.clientID, serverClientId, 'the server keeps its Yjs client id')
  // The moved message is still the sender's own: it may edit it in place.
  bob.doc.transact(() => {
    const i = findMessageIndex(bob.doc, early.id)
    messagesOf(bob.doc).delete(i, 1)
    messagesOf(bob.doc).insert(i, [{ ...early, text: 'early, edited', editedAt: Date.now() }])
  })
  await waitFor(() => texts(watcher.doc)[3] === 'early, edited')
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  assert.equal(await restTexts(ctx, conv), ['old 1', 'old 2', 'old 3', 'early, edited', 'later'])
  assert.equal(bob.closes, [])

  // What was stored is the moved result.
  for (const p of ctx.peers) p.destroy()
  ctx.peers = []
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir: ctx.s.dir })
  const stored = ['old 1', 'old 2', 'old 3', 'early, edited', 'later']
  assert.equal(await restTexts(ctx, conv), stored)
  const again = await join(ctx, conv, 'bob')
  assert.equal(texts(again.doc), stored)
})

Order('several messages pushed before sync, in the handshake and as updates before it, keep their order at the end', async ctx => {
  const conv = await withHistory(ctx, ['alice', 'bob'])
  const watcher = await join(ctx, conv, 'alice')
  const bob = await peerWithClientId(ctx, conv, 'bob', 2)
  // On open the provider sends what the app pushes as update frames before its sync step 1.
  bob.provider.on('status', ({ status }: { status: string }) => {
    if (status !== 'connected' || texts(bob.doc).length > 0) return
    messagesOf(bob.doc).push([message('bob', 'e1', 'e-1')])
    messagesOf(bob.doc).push([message('bob', 'e2', 'e-2')])
  })
  await bob.synced
  const want = ['old 1', 'old 2', 'old 3', 'e1', 'e2']
  await waitFor(() => texts(watcher.doc).length === 5 && texts(bob.doc).length === 5, 5000, 'both messages on both peers')
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  assert.equal(texts(watcher.doc), want)
  assert.equal(texts(bob.doc), want)
  assert.equal(await restTexts(ctx, conv), want)
  assert.equal(bob.closes, [])

  // And pushed before the socket even opened (they travel in the sync step 2 answer).
  const carol = await peerWithClientId(ctx, conv, 'bob', 3)
  messagesOf(carol.doc).push([message('bob', 'f1', 'f-1')])
  messagesOf(carol.doc).push([message('bob', 'f2', 'f-2')])
  await carol.synced
  await waitFor(() => texts(watcher.doc).length === 7)
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  assert.equal(texts(watcher.doc), [...want, 'f1', 'f2'])
  assert.equal(await restTexts(ctx, conv), [...want, 'f1', 'f2'])
  await waitFor(() => texts(carol.doc).length === 7)
  assert.equal(texts(carol.doc), [...want, 'f1', 'f2'])
})

Order('an edit of the first message stays in place', async ctx => {
  const id = `order-${++n}`
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const alice = await join(ctx, id, 'alice')
  const m = message('alice', 'frist', 'first-1')
  messagesOf(alice.doc).push([m])
  messagesOf(alice.doc).push([message('alice', 'second', 'second-1')])
  const bob = await join(ctx, id, 'bob')
  await waitFor(() => texts(bob.doc).length === 2)
  alice.doc.transact(() => {
    const i = findMessageIndex(alice.doc, m.id)
    messagesOf(alice.doc).delete(i, 1)
    messagesOf(alice.doc).insert(i, [{ ...m, text: 'first', editedAt: Date.now() }])
  })
  await waitFor(() => texts(bob.doc)[0] === 'first')
  await ctx.s.server.rooms.peek(id)?.whenDurable()
  assert.equal(await restTexts(ctx, id), ['first', 'second'])
  assert.equal(texts(alice.doc), ['first', 'second'])
})

Order('concurrent appends of synced peers are all kept; peers, REST and the inbox agree on the order', async ctx => {
  const conv = await withHistory(ctx, ['alice', 'bob', 'carol'])
  // Client ids chosen so that Yjs puts the later-arriving append first: a's (client 10) goes
  // before b's (client 20) although b's reaches the server first.
  const a = await peerWithClientId(ctx, conv, 'alice', 10)
  const b = await peerWithClientId(ctx, conv, 'bob', 20)
  const watcher = await join(ctx, conv, 'carol')
  await Promise.all([a.synced, b.synced])
  a.provider.disconnect()
  messagesOf(a.doc).push([message('alice', 'a', 'a-1')])
  messagesOf(b.doc).push([message('bob', 'b', 'b-1')])
  await waitFor(() => texts(watcher.doc).length === 4)
  a.provider.connect()
  await waitFor(() => texts(watcher.doc).length === 5 && texts(a.doc).length === 5 && texts(b.doc).length === 5, 5000, 'all five everywhere')
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  const order = texts(watcher.doc)
  assert.equal(order, ['old 1', 'old 2', 'old 3', 'a', 'b'])
  assert.equal(texts(a.doc), order)
  assert.equal(texts(b.doc), order)
  assert.equal(await restTexts(ctx, conv), order)
  for (const user of ['alice', 'bob', 'carol']) {
    assert.is((await inboxRow(ctx, user, conv)).lastMessage?.text, 'b', `the inbox of ${user} shows the last message in document order`)
  }

  // Many appends at once from three synced peers: all kept, one order everywhere.
  for (let i = 0; i < 5; i++) {
    messagesOf(a.doc).push([message('alice', `a${i}`, `a-${i + 2}`)])
    messagesOf(b.doc).push([message('bob', `b${i}`, `b-${i + 2}`)])
    messagesOf(watcher.doc).push([message('carol', `c${i}`, `c-${i}`)])
  }
  const all = (p: Peer): boolean => texts(p.doc).length === 20
  await waitFor(() => all(a) && all(b) && all(watcher), 5000, 'twenty messages everywhere')
  await ctx.s.server.rooms.peek(conv)?.whenDurable()
  const final = texts(watcher.doc)
  assert.equal(texts(a.doc), final)
  assert.equal(texts(b.doc), final)
  assert.equal(await restTexts(ctx, conv), final)
  assert.equal(final.slice(0, 5), ['old 1', 'old 2', 'old 3', 'a', 'b'])
  assert.is(new Set(final).size, 20)
  for (const p of ['a', 'b', 'c']) {
    assert.equal(final.filter(t => t.startsWith(p) && t.length === 2), [0, 1, 2, 3, 4].map(i => `${p}${i}`), `${p}'s messages in its own order`)
  }
  assert.is((await inboxRow(ctx, 'alice', conv)).lastMessage?.text, final[19])
})

Order.run()
