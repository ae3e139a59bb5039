import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import type { Session } from '../../client/node.ts'
import type { ChatError } from '../../shared/errors.ts'
import { startServer, UNLIMITED_RATE, type TestServer } from '../helpers/server.ts'
import { connectPeer, texts, waitFor } from '../helpers/clients.ts'
import { startTcpProxy } from '../helpers/tcp-proxy.ts'
import { convId, countingWebSocket, sessionFor, sleep } from './helpers.ts'

type Ctx = { s: TestServer, sessions: Session[] }
const Client = suite<Ctx>('client session and views')

Client.before(async ctx => { ctx.s = await startServer({ settings: UNLIMITED_RATE }) })
Client.after(async ctx => { await ctx.s.stop() })
Client.before.each(ctx => { ctx.sessions = [] })
Client.after.each(async ctx => { await Promise.all(ctx.sessions.map(async s => { await s.close() })) })

const room = async (ctx: Ctx, participants: string[], extra: Record<string, unknown> = {}): Promise<string> => {
  const id = convId()
  const r = await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants, ...extra })
  assert.is(r.status, 201)
  return id
}

Client('send returns the message at once as pending; it becomes sent once durable, and others get it live', async ctx => {
  const id = await room(ctx, ['alice', 'bob'])
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  const bob = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  await Promise.all([alice.whenSynced(), bob.whenSynced()])
  const added: string[] = []
  bob.on('added', m => added.push(m.text))
  const sent: string[] = []
  alice.on('sent', m => sent.push(m.id))
  const m = alice.send('hello', { custom: { topic: 'greeting' } })
  assert.is(m.status, 'pending')
  assert.is(alice.messages.at(-1)?.status, 'pending')
  await alice.whenSent(m.id)
  assert.equal(sent, [m.id])
  assert.is(alice.messages.at(-1)?.status, 'sent')
  const stored = ctx.s.server.rooms.peek(id)?.doc.getArray('messages').toJSON()
  assert.equal(stored?.map(x => (x as { custom?: unknown }).custom), [{ topic: 'greeting' }], 'durable on the server when sent')
  await waitFor(() => added.includes('hello'))
})

Client('a stock y-websocket client keeps working next to the client and sees its messages exactly once', async ctx => {
  const id = await room(ctx, ['alice', 'bob'])
  const peer = connectPeer(ctx.s.wsUrl, id, await ctx.s.token('bob'))
  try {
    await peer.synced
    const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
    await alice.whenSynced()
    for (let i = 0; i < 5; i++) alice.send(`m${i}`)
    await waitFor(() => texts(peer.doc).length === 5)
    await sleep(100)
    assert.equal(texts(peer.doc), ['m0', 'm1', 'm2', 'm3', 'm4'])
    peer.doc.getArray('messages').push([{ id: 'from-stock', senderId: 'bob', text: 'stock', createdAt: Date.now(), type: 'UserMessage' }])
    await waitFor(() => alice.messages.some(m => m.text === 'stock'))
  } finally {
    peer.destroy()
  }
})

Client('edits and deletes of own messages arrive as edited and deleted events; others\' messages are refused locally', async ctx => {
  const id = await room(ctx, ['alice', 'bob'])
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  const bob = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  await Promise.all([alice.whenSynced(), bob.whenSynced()])
  const events: string[] = []
  bob.on('edited', (m, prev) => events.push(`edited ${prev.text} -> ${m.text}`))
  bob.on('deleted', m => events.push(`deleted ${m.text}`))
  const m = alice.send('tpyo')
  await waitFor(() => bob.messages.length === 1)
  const edited = alice.edit(m.id, 'typo')
  assert.ok(edited.editedAt !== undefined)
  await waitFor(() => events.length === 1)
  try { bob.edit(m.id, 'hijack'); assert.unreachable() } catch (e) { assert.is((e as ChatError).code, 'SENDER_MISMATCH') }
  alice.delete(m.id)
  await waitFor(() => events.length === 2)
  assert.equal(events, ['edited tpyo -> typo', 'deleted typo'])
  assert.is(bob.messages.length, 0)
})

Client('a read-only view refuses send locally with READ_ONLY, as the server would', async ctx => {
  const id = await room(ctx, ['alice', 'reader'], { guestAccess: 'read' })
  await ctx.s.api('PATCH', `/v1/conversations/${id}/participants/reader`, { access: 'Read' })
  const reader = (await sessionFor(ctx.s, 'reader', {}, ctx.sessions)).open(id)
  const guest = (await sessionFor(ctx.s, 'watcher', {}, ctx.sessions)).open(id, { asGuest: true })
  await Promise.all([reader.whenSynced(), guest.whenSynced()])
  assert.is(reader.role, 'participant')
  assert.is(guest.role, 'guest')
  for (const v of [reader, guest]) {
    assert.is(v.canWrite, false)
    try { v.send('nope'); assert.unreachable() } catch (e) { assert.is((e as ChatError).code, 'READ_ONLY') }
  }
  await sleep(100)
  assert.is(reader.status, 'synced', 'nothing was sent, so the server closed nothing')
  assert.is(guest.status, 'synced')
})

Client('a guest writes when guestAccess is write, appears in participants\' presence and vanishes on close', async ctx => {
  const id = await room(ctx, ['alice'])
  const alice = (await sessionFor(ctx.s, 'alice', { profile: { name: 'Alice' } }, ctx.sessions)).open(id)
  await alice.whenSynced()
  const g1 = (await sessionFor(ctx.s, 'g1', {}, ctx.sessions)).open(id, { asGuest: true })
  const g2 = (await sessionFor(ctx.s, 'g2', {}, ctx.sessions)).open(id, { asGuest: true })
  await Promise.all([g1.whenSynced(), g2.whenSynced()])
  await waitFor(() => alice.presence.guests.length === 2, 5000, 'participant sees both guests')
  assert.equal(alice.presence.guests.map(u => [u.id, u.role]), [['g1', 'guest'], ['g2', 'guest']])
  await waitFor(() => g1.presence.guestCount === 2, 5000, 'guest sees the server guest count')
  assert.equal(g1.presence.guests, [], 'guests do not see each other')
  assert.equal(g1.presence.participants.map(u => [u.id, u.name]), [['alice', 'Alice']])
  const m = g1.send('hi from a guest')
  await g1.whenSent(m.id)
  await waitFor(() => alice.messages.some(x => x.text === 'hi from a guest'))
  g2.typing(true)
  await waitFor(() => alice.presence.typing.includes('g2'), 5000, 'typing shows')
  await g1.close()
  await waitFor(() => alice.presence.guests.length === 1, 5000, 'closed guest removed at once')
})

Client('a 44xx refusal becomes a typed error with the server code and no reconnect loop', async ctx => {
  const id = await room(ctx, ['alice'], { guestAccess: 'none' })
  const ws = countingWebSocket()
  const session = await sessionFor(ctx.s, 'stranger', { WebSocket: ws.ctor }, ctx.sessions)
  const cases: Array<[string, boolean, string]> = [[id, false, 'NOT_PARTICIPANT'], [id, true, 'GUEST_ACCESS_OFF'], ['no-such-room', true, 'CONVERSATION_NOT_FOUND']]
  for (const [conv, asGuest, code] of cases) {
    const v = session.open(conv, { asGuest })
    const err = await v.whenSynced().then(() => null, (e: ChatError) => e)
    assert.is(err?.code, code)
    assert.is(v.error?.code, code)
    assert.is(v.status, 'closed')
  }
  await sleep(600)
  assert.is(ws.count(), 3, 'one socket per view, no retries')
})

Client('a full conversation refuses a guest with GUEST_LIMIT', async ctx => {
  const id = await room(ctx, ['alice'])
  await ctx.s.api('PATCH', '/v1/settings', { maxGuests: 1 })
  try {
    const g1 = (await sessionFor(ctx.s, 'g1', {}, ctx.sessions)).open(id, { asGuest: true })
    await g1.whenSynced()
    const g2 = (await sessionFor(ctx.s, 'g2', {}, ctx.sessions)).open(id, { asGuest: true })
    const err = await g2.whenSynced().then(() => null, (e: ChatError) => e)
    assert.is(err?.code, 'GUEST_LIMIT')
    assert.is(err?.closeCode, 4409)
  } finally {
    await ctx.s.api('PATCH', '/v1/settings', { maxGuests: 10000 })
  }
})

Client('getOrCreateConversation and setParticipant work through REST with the user token', async ctx => {
  const alice = await sessionFor(ctx.s, 'alice', {}, ctx.sessions)
  const id = convId('own')
  const created = await alice.getOrCreateConversation(id, { subject: 'Plans', participants: ['bob'] })
  assert.equal(Object.keys(created.participants).sort(), ['alice', 'bob'])
  const again = await alice.getOrCreateConversation(id)
  assert.is(again.subject, 'Plans')
  assert.equal(await alice.setParticipant(id, 'carol', { access: 'Read', notify: false }), { access: 'Read', notify: false })
  const carol = await sessionFor(ctx.s, 'carol', {}, ctx.sessions)
  const refused = await carol.setParticipant(id, 'dave').then(() => null, (e: ChatError) => e)
  assert.is(refused?.code, 'READ_ONLY', 'a Read participant may not change the conversation')
  await ctx.s.api('PATCH', '/v1/settings', { browserSync: false })
  try {
    const off = await alice.getOrCreateConversation(convId('off'), { subject: 'x' }).then(() => null, (e: ChatError) => e)
    assert.is(off?.code, 'BROWSER_SYNC_OFF')
  } finally {
    await ctx.s.api('PATCH', '/v1/settings', { browserSync: true })
  }
})

Client('loadOlder pages older messages over REST until hasMore is false', async ctx => {
  const id = await room(ctx, ['alice', 'bob'])
  for (let i = 0; i < 45; i += 10) {
    const batch = Array.from({ length: Math.min(10, 45 - i) }, (_, j) => ({ text: `n${i + j}`, sender: 'bob', type: 'UserMessage' }))
    assert.is((await ctx.s.api('POST', `/v1/conversations/${id}/messages`, batch)).status, 201)
  }
  const v = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id, { pageSize: 20 })
  await v.whenSynced()
  assert.is(v.messages.length, 20)
  assert.is(v.messages[0].text, 'n25')
  assert.is(v.hasMore, true)
  assert.equal(await v.loadOlder(), { added: 20, hasMore: true })
  assert.equal(await v.loadOlder(), { added: 5, hasMore: false })
  assert.equal(v.messages.map(m => m.text), Array.from({ length: 45 }, (_, i) => `n${i}`))
  v.send('newest')
  assert.is(v.messages.length, 46, 'new messages widen the window')
})

Client('markRead writes the read marker and the conversation list shows unread counts, newest first', async ctx => {
  const older = await room(ctx, ['alice', 'bob'], { subject: 'older' })
  const id = await room(ctx, ['alice', 'bob'], { subject: 'newer' })
  const aliceSession = await sessionFor(ctx.s, 'alice', {}, ctx.sessions)
  const bobSession = await sessionFor(ctx.s, 'bob', {}, ctx.sessions)
  const a0 = aliceSession.open(older)
  await a0.whenSynced()
  await a0.whenSent(a0.send('old news').id)
  const alice = aliceSession.open(id)
  await alice.whenSynced()
  for (const t of ['one', 'two', 'three']) alice.send(t)
  await alice.whenSent(alice.messages.at(-1)!.id)
  const list = bobSession.conversations({ intervalMs: 200 })
  await waitFor(() => list.items.find(c => c.id === id)?.unreadCount === 3, 5000, 'unread 3')
  assert.equal(list.items.filter(c => c.id === id || c.id === older).map(c => c.id), [id, older])
  assert.is(list.items[0].lastMessage?.text, 'three')
  const bob = bobSession.open(id)
  await bob.whenSynced()
  assert.ok(bob.markRead())
  assert.is(bob.readUpTo, bob.messages.at(-1)!.createdAt)
  assert.not.ok(bob.markRead(), 'nothing new to mark')
  await waitFor(() => list.items.find(c => c.id === id)?.unreadCount === 0, 5000, 'unread 0 after markRead')
  const guest = (await sessionFor(ctx.s, 'gx', {}, ctx.sessions)).open(id, { asGuest: true })
  await guest.whenSynced()
  try { guest.markRead(); assert.unreachable() } catch (e) { assert.is((e as ChatError).code, 'WRITE_FORBIDDEN') }
  list.close()
})

Client('a participant with access Read moves its own read marker and its unread count clears', async ctx => {
  const id = await room(ctx, ['alice', 'reader'])
  await ctx.s.api('PATCH', `/v1/conversations/${id}/participants/reader`, { access: 'Read' })
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  await alice.whenSynced()
  for (const t of ['one', 'two']) alice.send(t)
  await alice.whenSent(alice.messages.at(-1)!.id)
  const readerSession = await sessionFor(ctx.s, 'reader', {}, ctx.sessions)
  const list = readerSession.conversations({ intervalMs: 200 })
  await waitFor(() => list.items.find(c => c.id === id)?.unreadCount === 2, 5000, 'unread 2')
  const reader = readerSession.open(id)
  await reader.whenSynced()
  assert.is(reader.canWrite, false)
  assert.ok(reader.markRead())
  await waitFor(() => list.items.find(c => c.id === id)?.unreadCount === 0, 5000, 'unread 0 after markRead')
  await waitFor(() => alice.doc.getMap('reads').get('reader') === alice.messages.at(-1)!.createdAt, 5000, 'the marker reached alice')
  await ctx.s.server.rooms.peek(id)!.whenDurable()
  const stored = new Y.Doc()
  const { snapshot, updates } = await ctx.s.store.loadDoc(id)
  if (snapshot !== null) Y.applyUpdate(stored, snapshot)
  for (const u of updates) Y.applyUpdate(stored, u)
  assert.is(stored.getMap('reads').get('reader'), alice.messages.at(-1)!.createdAt, 'stored')
  assert.is(reader.status, 'synced', 'the connection stays open')
  list.close()
})

Client('getToken is asked for a token on connect and again when the server says it expired', async ctx => {
  const id = await room(ctx, ['alice'])
  let calls = 0
  const session = await sessionFor(ctx.s, 'alice', {
    token: undefined,
    getToken: async () => { calls++; return await ctx.s.server.auth.signUserToken('alice', calls === 1 ? -10 : 3600) }
  }, ctx.sessions)
  const v = session.open(id)
  await v.whenSynced()
  assert.is(calls, 2, 'the expired token was replaced once')
  const list = await session.getOrCreateConversation(id)
  assert.is(list.id, id)
  assert.is(calls, 2, 'a fresh token is kept until it nears expiry')
})

Client('the server closes a live connection when its token expires; the view comes back with a fresh token from getToken', async ctx => {
  const id = await room(ctx, ['alice'])
  let calls = 0
  const session = await sessionFor(ctx.s, 'alice', {
    token: undefined,
    getToken: async () => { calls++; return await ctx.s.server.auth.signUserToken('alice', 2) }
  }, ctx.sessions)
  const v = session.open(id)
  const errors: unknown[] = []
  v.on('error', e => errors.push(e))
  await v.whenSynced()
  const first = calls
  await waitFor(() => calls > first, 8000, 'a fresh token once the server closed the expired one')
  const m = v.send('after expiry')
  await v.whenSent(m.id)
  assert.equal(errors, [])
  assert.ok(ctx.s.server.rooms.peek(id)?.doc.getArray('messages').toArray().some(x => (x as { text: string }).text === 'after expiry'))
})

Client('a moderator\'s view deletes anyone\'s message; another participant\'s view only its own', async ctx => {
  const id = await room(ctx, ['alice', 'bob', 'carol'])
  await ctx.s.api('PATCH', `/v1/conversations/${id}/participants/alice`, { role: 'moderator' })
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  const bob = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  const carol = (await sessionFor(ctx.s, 'carol', {}, ctx.sessions)).open(id)
  await Promise.all([alice.whenSynced(), bob.whenSynced(), carol.whenSynced()])
  const m = bob.send('to be moderated')
  await bob.whenSent(m.id)
  await waitFor(() => alice.messages.some(x => x.id === m.id) && carol.messages.some(x => x.id === m.id), 5000, 'the message arrives')
  assert.ok(alice.isModerator)
  assert.not.ok(carol.isModerator)
  try { carol.delete(m.id); assert.unreachable() } catch (e) { assert.is((e as ChatError).code, 'SENDER_MISMATCH') }
  alice.delete(m.id)
  await waitFor(() => !bob.messages.some(x => x.id === m.id), 5000, 'deleted for bob')
  assert.is(alice.error, null)
})


Client('an empty conversation list emits change once it is known, so a UI can leave "Loading…"', async ctx => {
  const session = await sessionFor(ctx.s, `lonely-${convId()}`, {}, ctx.sessions)
  const list = session.conversations({ intervalMs: 200 })
  assert.not.ok(list.loaded)
  let seen: readonly unknown[] | null = null
  list.on('change', items => { seen = items })
  await waitFor(() => seen !== null, 5000, 'change for the empty list')
  assert.equal(seen, [])
  assert.ok(list.loaded)
  list.close()
})

Client('users: names and photos come from user records, fetched once and cached; unknown users show their id', async ctx => {
  await ctx.s.api('PUT', '/v1/users/carol', { name: 'Carol', photoUrl: 'https://example.com/c.png', email: 'c@example.com' })
  let fetched = 0
  const counting: typeof fetch = async (input, init) => {
    if (String(input).includes('/v1/users/')) fetched++
    return await fetch(input, init)
  }
  const session = await sessionFor(ctx.s, 'dave', { fetch: counting }, ctx.sessions)
  assert.is(session.users.get('carol'), null, 'not loaded yet')
  let changed: string[] = []
  session.users.on('change', ids => { changed = ids })
  await waitFor(() => changed.length > 0, 5000, 'carol loaded')
  assert.equal(changed, ['carol'])
  assert.equal(session.users.get('carol'), { id: 'carol', name: 'Carol', photoUrl: 'https://example.com/c.png', known: true })
  assert.equal(await session.users.load('carol'), session.users.get('carol'))
  assert.equal(await session.users.load('nobody-here'), { id: 'nobody-here', name: 'nobody-here', photoUrl: null, known: false })
  session.users.get('nobody-here')
  assert.is(fetched, 2, 'each user fetched once')
  // A profile this session writes shows at once, over an older cached record.
  await ctx.s.api('PUT', '/v1/users/dave', { name: 'Old Dave' })
  assert.is((await session.users.load('dave')).name, 'Old Dave')
  await session.syncProfile({ name: 'Dave Grohl' })
  assert.is(session.users.get('dave')?.name, 'Dave Grohl')
})

Client('a guest\'s view knows the subject, guest access and participants from the document; read markers are shown', async ctx => {
  const id = await room(ctx, ['alice'], { subject: 'Open day', guestAccess: 'read' })
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  await alice.whenSynced()
  await alice.whenSent(alice.send('welcome').id)
  const guest = (await sessionFor(ctx.s, 'gz', {}, ctx.sessions)).open(id, { asGuest: true })
  await guest.whenSynced()
  assert.is(guest.subject, 'Open day')
  assert.is(guest.guestAccess, 'read')
  assert.equal([...guest.participants.keys()], ['alice'])
  let changes = 0
  guest.on('change', () => { changes++ })
  assert.ok(alice.markRead())
  await waitFor(() => guest.reads.get('alice') === alice.messages[0].createdAt, 5000, 'read marker seen')
  assert.ok(changes > 0, 'a read marker change is a change')
})

Client('a lost connection announces its retry delay (for a countdown), and comes back', async ctx => {
  const id = await room(ctx, ['alice'])
  const proxy = await startTcpProxy(Number(new URL(ctx.s.url).port))
  try {
    const session = await sessionFor(ctx.s, 'alice', { serverUrl: `http://127.0.0.1:${proxy.port}`, backoff: { baseMs: 200, maxMs: 400 } }, ctx.sessions)
    const view = session.open(id)
    await view.whenSynced()
    const delays: number[] = []
    view.on('retry', ms => { delays.push(ms) })
    await proxy.stop()
    await waitFor(() => delays.length > 0, 5000, 'a retry announced')
    assert.ok(delays[0] > 0 && delays[0] <= 400, `delay ${delays[0]}`)
    assert.is(view.status, 'connecting')
    await proxy.start()
    await waitFor(() => view.status === 'synced', 5000, 'back')
  } finally {
    await proxy.stop()
  }
})

Client.run()
