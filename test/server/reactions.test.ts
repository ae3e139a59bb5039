import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, waitFor, type Peer } from '../helpers/clients.ts'
import { findMessageIndex, messagesOf, reactionsOf } from '../../shared/doc.ts'
import { startReceiver, type Receiver } from './webhooks/receiver.ts'

interface Ctx { s: TestServer, peers: Peer[], hook: Receiver | null }

const WINDOW = 5
const CHUNK = 2

const Reactions = suite<Ctx>('reactions')
Reactions.before.each(async ctx => {
  ctx.s = await startServer({ config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  ctx.peers = []
  ctx.hook = null
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/c1/participants/reader', { access: 'Read' })
  await ctx.s.api('PUT', '/v1/conversations/c2', { participants: ['alice', 'bob'] })
})
Reactions.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
  await ctx.hook?.close()
})

const peer = async (ctx: Ctx, user: string, room = 'c1', params: Record<string, string> = {}): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, room, await ctx.s.token(user), params)
  ctx.peers.push(p)
  await p.synced
  return p
}

const serverDoc = (ctx: Ctx, room = 'c1'): Y.Doc => ctx.s.server.rooms.peek(room)!.doc

/** Sends a message and waits until the server holds it. */
const sent = async (ctx: Ctx, p: Peer, user: string, text: string, id: string, room = 'c1'): Promise<void> => {
  sendMessage(p.doc, user, text, id)
  await waitFor(() => findMessageIndex(serverDoc(ctx, room), id) >= 0, 5000, `${id} stored`)
}

/** The refusal (close code and error code) of a peer that was closed. */
const refusalOf = async (p: Peer): Promise<{ code: number, reason: string }> => {
  await waitFor(() => p.closes.length > 0, 5000, 'closed')
  return p.closes[0]
}

const restMessages = async (ctx: Ctx, room = 'c1', limit = 100): Promise<Array<{ id: string, reactions?: Record<string, string[]> }>> =>
  (await ctx.s.api('GET', `/v1/conversations/${room}/messages?limit=${limit}`)).body.data

const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 150)) }

Reactions('a participant reacts, others receive it, REST serves reactions and message.reacted is posted', async ctx => {
  ctx.hook = await startReceiver()
  await ctx.s.api('PATCH', '/v1/settings', { webhookUrl: ctx.hook.url })
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  reactionsOf(a.doc).set('m1/alice', ['👍', '🎉'])
  reactionsOf(b.doc).set('m1/bob', ['👍'])
  await waitFor(() => reactionsOf(b.doc).has('m1/alice') && reactionsOf(a.doc).has('m1/bob'), 5000, 'both see both')
  await waitFor(() => ctx.hook!.ok('message.reacted').length === 2, 5000, 'two webhooks')
  const data = (await restMessages(ctx))[0]
  assert.equal(data.reactions, { '👍': ['alice', 'bob'], '🎉': ['alice'] })
  const one = await ctx.s.api('GET', '/v1/conversations/c1/messages/m1', undefined, `Bearer ${await ctx.s.token('bob')}`)
  assert.equal(one.body.reactions, data.reactions)
  const hook = ctx.hook.ok('message.reacted').find(h => h.body.data.userId === 'alice')!
  assert.equal(hook.body.data, { conversationId: 'c1', messageId: 'm1', userId: 'alice', reactions: ['👍', '🎉'] })
  reactionsOf(a.doc).delete('m1/alice')
  await waitFor(() => ctx.hook!.ok('message.reacted').length === 3, 5000, 'removal posted')
  assert.equal(ctx.hook.ok('message.reacted')[2].body.data.reactions, [])
  assert.equal((await restMessages(ctx))[0].reactions, { '👍': ['bob'] })
  assert.is(a.closes.length + b.closes.length, 0)
})

Reactions('reactions never count as messages in the conversation list', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  const bob = `Bearer ${await ctx.s.token('bob')}`
  const before = (await ctx.s.api('GET', '/v1/users/bob/conversations', undefined, bob)).body.data.find((c: { id: string }) => c.id === 'c1')
  assert.is(before.unreadCount, 1)
  const b = await peer(ctx, 'bob')
  reactionsOf(b.doc).set('m1/bob', ['❤️'])
  reactionsOf(a.doc).set('m1/alice', ['❤️'])
  await waitFor(() => reactionsOf(serverDoc(ctx)).size === 2, 5000, 'stored')
  await ctx.s.server.rooms.peek('c1')!.whenDurable()
  const after = (await ctx.s.api('GET', '/v1/users/bob/conversations', undefined, bob)).body.data.find((c: { id: string }) => c.id === 'c1')
  assert.equal(after, before)
})

Reactions("setting or deleting someone else's reaction key is refused with 4403 and nothing is stored or forwarded", async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  reactionsOf(a.doc).set('m1/bob', ['👍'])
  assert.equal(await refusalOf(a), { code: 4403, reason: 'WRITE_FORBIDDEN' })
  await settle()
  assert.not.ok(reactionsOf(b.doc).has('m1/bob'))
  assert.not.ok(reactionsOf(serverDoc(ctx)).has('m1/bob'))
  reactionsOf(b.doc).set('m1/bob', ['👍'])
  await waitFor(() => reactionsOf(serverDoc(ctx)).has('m1/bob'), 5000, 'bob reacted')
  const m = await peer(ctx, 'alice')
  await waitFor(() => reactionsOf(m.doc).has('m1/bob'), 5000, 'alice sees it')
  reactionsOf(m.doc).delete('m1/bob')
  assert.equal(await refusalOf(m), { code: 4403, reason: 'WRITE_FORBIDDEN' })
  assert.ok(reactionsOf(serverDoc(ctx)).has('m1/bob'))
})

Reactions('a reaction on an unknown message, a deleted message or another conversation\'s message is refused', async ctx => {
  const a = await peer(ctx, 'alice')
  const other = await peer(ctx, 'alice', 'c2')
  await sent(ctx, other, 'alice', 'elsewhere', 'x1', 'c2')
  await sent(ctx, a, 'alice', 'gone soon', 'm1')
  messagesOf(a.doc).delete(findMessageIndex(a.doc, 'm1'), 1)
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'm1') < 0, 5000, 'deleted')
  for (const target of ['nope', 'm1', 'x1']) {
    const p = await peer(ctx, 'bob')
    reactionsOf(p.doc).set(`${target}/bob`, ['👍'])
    assert.equal(await refusalOf(p), { code: 4403, reason: 'REACTION_TARGET_NOT_FOUND' }, target)
  }
  await settle()
  assert.is(reactionsOf(serverDoc(ctx)).size, 0)
})

Reactions('malformed reactions are refused: too many, too long, whitespace, duplicates, empty, not strings, bad keys', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  const bad: Array<[string, unknown]> = [
    ['m1/bob', Array.from({ length: 21 }, (_, i) => `r${i}`)],
    ['m1/bob', ['x'.repeat(33)]],
    ['m1/bob', ['a b']],
    ['m1/bob', ['\t']],
    ['m1/bob', ['👍', '👍']],
    ['m1/bob', []],
    ['m1/bob', ['']],
    ['m1/bob', [1]],
    ['m1/bob', '👍'],
    ['m1', ['👍']],
    ['m1/bob/x', ['👍']]
  ]
  for (const [key, value] of bad) {
    const p = await peer(ctx, 'bob')
    reactionsOf(p.doc).set(key, value as string[])
    assert.equal(await refusalOf(p), { code: 4403, reason: 'INVALID_REACTION' }, JSON.stringify([key, value]))
  }
  const ok = await peer(ctx, 'bob')
  const twenty = Array.from({ length: 20 }, (_, i) => `r${i}`)
  reactionsOf(ok.doc).set('m1/bob', [...twenty.slice(1), '👨‍👩‍👧‍👦', 'x'.repeat(32)].slice(-20))
  await waitFor(() => reactionsOf(serverDoc(ctx)).has('m1/bob'), 5000, 'twenty reactions accepted')
  assert.is(ok.closes.length, 0)
})

Reactions('a Read participant and a read-only guest may not react; a writing guest may', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  const r = await peer(ctx, 'reader')
  reactionsOf(r.doc).set('m1/reader', ['👍'])
  assert.equal(await refusalOf(r), { code: 4403, reason: 'READ_ONLY' })
  const g = await peer(ctx, 'guest1', 'c1', { guest: '1' })
  reactionsOf(g.doc).set('m1/guest1', ['👍'])
  await waitFor(() => reactionsOf(a.doc).has('m1/guest1'), 5000, 'guest reaction forwarded')
  await ctx.s.api('PUT', '/v1/conversations/c1', { guestAccess: 'read' })
  const ro = await peer(ctx, 'guest2', 'c1', { guest: '1' })
  reactionsOf(ro.doc).set('m1/guest2', ['👍'])
  assert.equal(await refusalOf(ro), { code: 4403, reason: 'READ_ONLY' })
  assert.not.ok(reactionsOf(serverDoc(ctx)).has('m1/guest2'))
})

/** Sends `n` messages a0..; the oldest move to the archive. */
const fill = async (ctx: Ctx, p: Peer, n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await sent(ctx, p, 'alice', `a${i}`, `a${i}`)
  const room = ctx.s.server.rooms.peek('c1')!
  await waitFor(() => room.archivedCount > 0, 5000, 'archived')
  await room.whenDurable()
}

Reactions('reactions survive archiving, an archived message may get reactions, REST serves them for archived messages', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'first', 'a-first')
  reactionsOf(a.doc).set('a-first/alice', ['🎉'])
  await fill(ctx, a, WINDOW + CHUNK + 1)
  assert.ok(findMessageIndex(serverDoc(ctx), 'a-first') < 0, 'a-first is archived')
  const b = await peer(ctx, 'bob')
  reactionsOf(b.doc).set('a-first/bob', ['🎉', '😮'])
  await waitFor(() => reactionsOf(serverDoc(ctx)).has('a-first/bob'), 5000, 'reaction on an archived message')
  assert.is(b.closes.length, 0)
  const all = await restMessages(ctx)
  assert.is(all[0].id, 'a-first')
  assert.equal(all[0].reactions, { '🎉': ['alice', 'bob'], '😮': ['bob'] })
  assert.is(all.filter(m => m.reactions !== undefined).length, 1)
  const one = await ctx.s.api('GET', '/v1/conversations/c1/messages/a-first')
  assert.equal(one.body.reactions, all[0].reactions)
  const edited = await ctx.s.api('PATCH', '/v1/conversations/c1/messages/a-first', { text: 'first, edited' })
  assert.equal(edited.body.reactions, all[0].reactions, 'an edit keeps them')
  // After a restart too (the archive and the document both come from disk).
  const dir = ctx.s.dir
  for (const p of ctx.peers) p.destroy()
  ctx.peers = []
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir, config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  assert.equal((await restMessages(ctx))[0].reactions, { '🎉': ['alice', 'bob'], '😮': ['bob'] })
})

Reactions('deleting a message removes its reactions in the same batch: by its sender over sync, and over REST (live and archived)', async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await sent(ctx, a, 'alice', 'archived soon', 'old')
  reactionsOf(b.doc).set('old/bob', ['👍'])
  await fill(ctx, a, WINDOW + CHUNK + 1)
  for (const id of ['p1', 'r1']) await sent(ctx, a, 'alice', id, id)
  reactionsOf(b.doc).set('p1/bob', ['👍'])
  reactionsOf(b.doc).set('r1/bob', ['👍'])
  reactionsOf(a.doc).set('r1/alice', ['😂'])
  await waitFor(() => reactionsOf(serverDoc(ctx)).size === 4, 5000, 'four reactions stored')
  const room = ctx.s.server.rooms.peek('c1')!

  messagesOf(a.doc).delete(findMessageIndex(a.doc, 'p1'), 1)
  await waitFor(() => !reactionsOf(b.doc).has('p1/bob') && !reactionsOf(a.doc).has('p1/bob'), 5000, 'peer delete removes reactions at every peer')
  assert.is(await ctx.s.store.archivePosOf('c1', 'p1'), undefined)

  assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/messages/r1')).status, 204)
  assert.not.ok(reactionsOf(room.doc).has('r1/bob') || reactionsOf(room.doc).has('r1/alice'))
  await waitFor(() => !reactionsOf(b.doc).has('r1/bob'), 5000, 'REST delete reaches peers')

  assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/messages/old')).status, 204)
  assert.not.ok(reactionsOf(room.doc).has('old/bob'))
  assert.is(reactionsOf(room.doc).size, 0)
  assert.is((await ctx.s.api('GET', '/v1/conversations/c1/messages/old')).status, 404)
  // A reaction to the deleted archived message is refused.
  reactionsOf(b.doc).set('old/bob', ['👍'])
  assert.equal(await refusalOf(b), { code: 4403, reason: 'REACTION_TARGET_NOT_FOUND' })
  // And it all holds after a restart: no reaction outlived its message.
  const dir = ctx.s.dir
  for (const p of ctx.peers) p.destroy()
  ctx.peers = []
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir, config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  const c = await peer(ctx, 'bob')
  assert.is(reactionsOf(c.doc).size, 0)
  assert.is((await restMessages(ctx)).filter(m => m.reactions !== undefined).length, 0)
})

Reactions('an edit keeps the reactions; a message and a reaction to it may come in one update', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'hello', 'm1')
  reactionsOf(a.doc).set('m1/alice', ['👍'])
  const m = messagesOf(a.doc).get(0)
  a.doc.transact(() => {
    messagesOf(a.doc).delete(0, 1)
    messagesOf(a.doc).insert(0, [{ ...m, text: 'hello!', editedAt: Date.now() }])
  })
  a.doc.transact(() => {
    sendMessage(a.doc, 'alice', 'and a reaction at once', 'm2')
    reactionsOf(a.doc).set('m2/alice', ['🎉'])
  })
  await waitFor(() => reactionsOf(serverDoc(ctx)).has('m2/alice'), 5000, 'stored')
  await settle()
  assert.ok(reactionsOf(serverDoc(ctx)).has('m1/alice'), 'the edit kept the reaction')
  assert.is(a.closes.length, 0)
})

Reactions('a peer back from offline with a reaction to a message deleted meanwhile keeps the rest of its changes and is not closed', async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await sent(ctx, a, 'alice', 'mine', 'm1')
  await sent(ctx, b, 'bob', 'soon deleted', 'b1')
  await waitFor(() => findMessageIndex(a.doc, 'b1') >= 0, 5000, 'alice has b1')
  a.provider.disconnect()
  reactionsOf(a.doc).set('b1/alice', ['👍'])
  reactionsOf(a.doc).set('m1/alice', ['🎉'])
  sendMessage(a.doc, 'alice', 'written offline', 'a2')
  reactionsOf(a.doc).set('a2/alice', ['😮'])
  messagesOf(b.doc).delete(findMessageIndex(b.doc, 'b1'), 1)
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'b1') < 0, 5000, 'b1 deleted')
  a.provider.connect()
  const server = reactionsOf(serverDoc(ctx))
  await waitFor(() => server.has('m1/alice') && server.has('a2/alice') && findMessageIndex(serverDoc(ctx), 'a2') >= 0, 5000, 'the valid offline changes are taken')
  await waitFor(() => !reactionsOf(a.doc).has('b1/alice'), 5000, 'the reaction to the deleted message is dropped at the peer')
  assert.not.ok(server.has('b1/alice'))
  await waitFor(() => reactionsOf(b.doc).has('a2/alice'), 5000, 'bob gets them')
  assert.equal(reactionsOf(b.doc).toJSON(), { 'm1/alice': ['🎉'], 'a2/alice': ['😮'] })
  assert.not.ok(a.closes.some(c => c.code >= 4400 && c.code < 4500), JSON.stringify(a.closes))
})

const Replies = suite<Ctx>('replies')
Replies.before.each(async ctx => {
  ctx.s = await startServer({ config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  ctx.peers = []
  ctx.hook = null
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/c2', { participants: ['alice', 'bob'] })
})
Replies.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

Replies('a reply to a live message is accepted; to an unknown id, a deleted message or another conversation\'s message it is refused', async ctx => {
  const a = await peer(ctx, 'alice')
  const other = await peer(ctx, 'alice', 'c2')
  await sent(ctx, other, 'alice', 'elsewhere', 'x1', 'c2')
  await sent(ctx, a, 'alice', 'question', 'q1')
  await sent(ctx, a, 'alice', 'deleted', 'd1')
  messagesOf(a.doc).delete(findMessageIndex(a.doc, 'd1'), 1)
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'd1') < 0, 5000, 'deleted')
  const b = await peer(ctx, 'bob')
  messagesOf(b.doc).push([{ id: 'r1', senderId: 'bob', text: 'answer', createdAt: Date.now(), type: 'UserMessage', referencedMessageId: 'q1' }])
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'r1') >= 0, 5000, 'reply stored')
  for (const ref of ['nope', 'd1', 'x1', 'self']) {
    const p = await peer(ctx, 'bob')
    messagesOf(p.doc).push([{ id: 'self', senderId: 'bob', text: 'bad', createdAt: Date.now(), type: 'UserMessage', referencedMessageId: ref }])
    assert.equal(await refusalOf(p), { code: 4403, reason: 'REFERENCED_MESSAGE_NOT_FOUND' }, ref)
  }
  await settle()
  assert.is(findMessageIndex(serverDoc(ctx), 'self'), -1)
})

Replies('a reply to an archived message is accepted over sync and REST; REST refuses unknown references with 400', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'old question', 'q0')
  await fill(ctx, a, WINDOW + CHUNK + 1)
  assert.ok(findMessageIndex(serverDoc(ctx), 'q0') < 0, 'q0 is archived')
  messagesOf(a.doc).push([{ id: 'r0', senderId: 'alice', text: 'late answer', createdAt: Date.now(), type: 'UserMessage', referencedMessageId: 'q0' }])
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'r0') >= 0, 5000, 'reply to archived stored')
  assert.is(a.closes.length, 0)
  const ok = await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'admin answer', sender: 'bob', type: 'UserMessage', referencedMessageId: 'q0' }])
  assert.is(ok.status, 201)
  assert.is(ok.body[0].referencedMessageId, 'q0')
  for (const ref of ['nope', 'x1']) {
    const bad = await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'bob', type: 'UserMessage', referencedMessageId: ref }])
    assert.is(bad.status, 400)
    assert.is(bad.body.error.code, 'REFERENCED_MESSAGE_NOT_FOUND')
  }
  assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/messages/q0')).status, 204)
  const gone = await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'bob', type: 'UserMessage', referencedMessageId: 'q0' }])
  assert.is(gone.body.error.code, 'REFERENCED_MESSAGE_NOT_FOUND')
})

Replies('an edit of a reply keeps its reference even after the referenced message was deleted', async ctx => {
  const a = await peer(ctx, 'alice')
  await sent(ctx, a, 'alice', 'question', 'q1')
  messagesOf(a.doc).push([{ id: 'r1', senderId: 'alice', text: 'answer', createdAt: Date.now(), type: 'UserMessage', referencedMessageId: 'q1' }])
  await waitFor(() => findMessageIndex(serverDoc(ctx), 'r1') >= 0, 5000, 'reply stored')
  assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/messages/q1')).status, 204)
  await waitFor(() => findMessageIndex(a.doc, 'q1') < 0, 5000, 'deletion seen')
  const i = findMessageIndex(a.doc, 'r1')
  const r = messagesOf(a.doc).get(i)
  a.doc.transact(() => {
    messagesOf(a.doc).delete(i, 1)
    messagesOf(a.doc).insert(i, [{ ...r, text: 'answer (edited)', editedAt: Date.now() }])
  })
  await waitFor(() => messagesOf(serverDoc(ctx)).toArray().some(m => m.text === 'answer (edited)'), 5000, 'edit stored')
  assert.is(a.closes.length, 0)
})

Reactions.run()
Replies.run()
