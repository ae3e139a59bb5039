/**
 * Moderation (issue 13, contract §6 v1.1) over real sockets and real REST: bans, moderators,
 * guest kicks and the events that record who did what.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, connectRaw, sendMessage, texts, waitFor, type Peer, type RawClient } from '../helpers/clients.ts'
import { messagesOf } from '../../shared/doc.ts'
import type { ServerEvent } from '../../server/events.ts'

interface Ctx { s: TestServer, peers: Peer[], raws: RawClient[], events: ServerEvent[] }
const Mod = suite<Ctx>('moderation: bans, moderators, kicks')
const CONV = 'room'

Mod.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
  ctx.raws = []
  ctx.events = []
  ctx.s.server.events.subscribe(e => ctx.events.push(e))
  await ctx.s.api('PUT', `/v1/conversations/${CONV}`, { participants: ['alice', 'bob', 'carol'] })
  await ctx.s.api('PATCH', `/v1/conversations/${CONV}/participants/alice`, { role: 'moderator' })
})
Mod.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  for (const r of ctx.raws) r.ws.terminate()
  await ctx.s.stop()
})

const as = async (ctx: Ctx, user: string): Promise<string> => `Bearer ${await ctx.s.token(user)}`

const join = async (ctx: Ctx, user: string, guest = false): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, CONV, await ctx.s.token(user), guest ? { guest: '1' } : {})
  ctx.peers.push(p)
  await p.synced
  return p
}

const raw = async (ctx: Ctx, user: string, guest = false): Promise<RawClient> => {
  const q = new URLSearchParams({ token: await ctx.s.token(user), ...(guest ? { guest: '1' } : {}) })
  const r = connectRaw(`${ctx.s.wsUrl}/${CONV}?${q.toString()}`)
  ctx.raws.push(r)
  await r.opened
  return r
}

const serverTexts = (ctx: Ctx): string[] => texts(ctx.s.server.rooms.peek(CONV)!.doc)

Mod('a ban closes every live connection of the user at once (participant and guest), removes it and refuses it everywhere', async ctx => {
  const bobP = await join(ctx, 'bob')
  const bobG = await join(ctx, 'bob', true)
  const visitor = await join(ctx, 'visitor', true)
  const ban = await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/bob`, { reason: 'spam' }, await as(ctx, 'alice'))
  assert.is(ban.status, 200)
  assert.equal([ban.body.userId, ban.body.reason, ban.body.until, ban.body.by], ['bob', 'spam', null, 'alice'])
  await waitFor(() => bobP.closes.length > 0 && bobG.closes.length > 0, 5000, 'bob closed')
  assert.equal([bobP.closes[0].code, bobP.closes[0].reason, bobG.closes[0].code], [4403, 'BANNED', 4403])
  const visitorMessage = sendMessage(visitor.doc, 'visitor', 'still here')
  await waitFor(() => serverTexts(ctx).includes(visitorMessage.text), 5000, 'others go on')
  const conv = await ctx.s.api('GET', `/v1/conversations/${CONV}`)
  assert.equal(Object.keys(conv.body.participants).sort(), ['alice', 'carol'])
  // Joins in no role, REST refuses it.
  for (const guest of [false, true]) {
    const r = await raw(ctx, 'bob', guest)
    assert.is((await r.closed).code, 4403)
    assert.is(r.authReason()?.code, 'BANNED')
  }
  const read = await ctx.s.api('GET', `/v1/conversations/${CONV}/messages`, undefined, await as(ctx, 'bob'))
  assert.equal([read.status, read.body.error.code], [403, 'BANNED'])
  // An admin cannot make a banned user a participant without lifting the ban.
  const add = await ctx.s.api('PUT', `/v1/conversations/${CONV}/participants/bob`, {})
  assert.equal([add.status, add.body.error.code], [403, 'BANNED'])
  const list = await ctx.s.api('GET', `/v1/conversations/${CONV}/bans`, undefined, await as(ctx, 'alice'))
  assert.equal(list.body.data.map((b: { userId: string }) => b.userId), ['bob'])
  await waitFor(() => ctx.events.some(e => e.type === 'participant.removed' && e.userId === 'bob'), 5000, 'removal event')
  const banned = ctx.events.find(e => e.type === 'conversation.user_banned')
  assert.equal(banned, { type: 'conversation.user_banned', conversationId: CONV, userId: 'bob', reason: 'spam', until: null, by: 'alice' })
  // Lifted: bob may come back as a guest.
  assert.is((await ctx.s.api('DELETE', `/v1/conversations/${CONV}/bans/bob`, undefined, await as(ctx, 'alice'))).status, 204)
  assert.is((await ctx.s.api('DELETE', `/v1/conversations/${CONV}/bans/bob`)).body.error.code, 'BAN_NOT_FOUND')
  assert.ok(ctx.events.some(e => e.type === 'conversation.user_unbanned' && e.by === 'alice'))
  const back = await join(ctx, 'bob', true)
  sendMessage(back.doc, 'bob', 'sorry')
  await waitFor(() => serverTexts(ctx).includes('sorry'), 5000, 'bob writes again')
})

Mod('a ban ends at its until; bans survive a restart and die with their conversation', async ctx => {
  const until = Date.now() + 3000 // long enough for a loaded machine to check it first
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/brief`, { until })).status, 200)
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/troll`, {})).status, 200)
  const early = await raw(ctx, 'brief', true)
  assert.is((await early.closed).code, 4403)
  await waitFor(() => Date.now() > until + 20, 5000, 'the ban to end')
  const later = await join(ctx, 'brief', true)
  assert.equal(later.closes, [])
  const listed = await ctx.s.api('GET', `/v1/conversations/${CONV}/bans`)
  assert.equal(listed.body.data.map((b: { userId: string }) => b.userId), ['troll'])

  const dir = ctx.s.dir
  for (const p of ctx.peers.splice(0)) p.destroy()
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir })
  const again = await raw(ctx, 'troll', true)
  assert.is((await again.closed).code, 4403)
  assert.is(again.authReason()?.code, 'BANNED')

  assert.is((await ctx.s.api('DELETE', `/v1/conversations/${CONV}`)).status, 204)
  await ctx.s.api('PUT', `/v1/conversations/${CONV}`, { participants: ['alice'] })
  assert.equal((await ctx.s.api('GET', `/v1/conversations/${CONV}/bans`)).body.data, [])
  const fresh = await join(ctx, 'troll', true)
  assert.equal(fresh.closes, [])
})

Mod('a moderator deletes any message over sync and REST, never edits another\'s; others delete only their own', async ctx => {
  const alice = await join(ctx, 'alice')
  const bob = await join(ctx, 'bob')
  const carol = await join(ctx, 'carol')
  const m1 = sendMessage(bob.doc, 'bob', 'one')
  const m2 = sendMessage(bob.doc, 'bob', 'two')
  sendMessage(bob.doc, 'bob', 'three')
  await waitFor(() => texts(alice.doc).length === 3 && texts(carol.doc).length === 3, 5000, 'messages arrive')
  // alice (moderator) deletes bob's message over sync.
  messagesOf(alice.doc).delete(0, 1)
  await waitFor(() => !serverTexts(ctx).includes('one'), 5000, 'deleted on the server')
  await waitFor(() => ctx.events.some(e => e.type === 'message.deleted' && e.message.id === m1.id), 5000, 'event')
  const del = ctx.events.find(e => e.type === 'message.deleted')
  assert.is(del?.type === 'message.deleted' ? del.deletedBy : undefined, 'alice')
  assert.equal(alice.closes, [])
  // Over REST with her own token.
  const rest = await ctx.s.api('DELETE', `/v1/conversations/${CONV}/messages/${m2.id}`, undefined, await as(ctx, 'alice'))
  assert.is(rest.status, 204)
  await waitFor(() => ctx.events.some(e => e.type === 'message.deleted' && e.message.id === m2.id && e.deletedBy === 'alice'), 5000, 'REST event')
  // An edit of another's message stays forbidden to a moderator.
  await waitFor(() => texts(alice.doc).length === 1, 5000, 'alice sees one message')
  const arr = messagesOf(alice.doc)
  const old = arr.get(0)
  alice.doc.transact(() => { arr.delete(0, 1); arr.insert(0, [{ ...old, senderId: 'alice', text: 'edited', editedAt: Date.now() }]) })
  await waitFor(() => alice.closes.length > 0, 5000, 'alice refused')
  assert.is(alice.closes[0].code, 4403)
  assert.ok(serverTexts(ctx).includes('three'))
  // carol is no moderator: neither sync nor REST.
  messagesOf(carol.doc).delete(0, 1)
  await waitFor(() => carol.closes.length > 0, 5000, 'carol refused')
  assert.equal([carol.closes[0].code, carol.closes[0].reason], [4403, 'SENDER_MISMATCH'])
  const forbidden = await ctx.s.api('DELETE', `/v1/conversations/${CONV}/messages/x`, undefined, await as(ctx, 'carol'))
  assert.is(forbidden.status, 403)
  assert.equal(serverTexts(ctx), ['three'])
})

Mod('who may remove, demote or appoint moderators; the creator of a conversation moderates it', async ctx => {
  const dave = await as(ctx, 'dave')
  const eve = await as(ctx, 'eve')
  const created = await ctx.s.api('PUT', '/v1/conversations/dave-room', { participants: ['eve', 'frank'] }, dave)
  assert.is(created.status, 201)
  assert.equal(created.body.participants.dave, { access: 'ReadWrite', notify: true, role: 'moderator' })
  assert.is(created.body.createdBy, 'dave')
  // eve, a ReadWrite participant added by dave, can neither remove nor demote him, nor promote herself.
  for (const [method, body] of [['DELETE', undefined], ['PATCH', { role: null }], ['PUT', { access: 'ReadWrite' }]] as const) {
    const r = await ctx.s.api(method, '/v1/conversations/dave-room/participants/dave', body, eve)
    assert.equal([method, r.status, r.body.error.code], [method, 403, 'FORBIDDEN'])
  }
  assert.is((await ctx.s.api('PATCH', '/v1/conversations/dave-room/participants/eve', { role: 'moderator' }, eve)).status, 403)
  assert.is((await ctx.s.api('PUT', '/v1/conversations/dave-room', { slowMode: 10 }, eve)).status, 403)
  // dave appoints eve; eve may now demote dave; both are moderators until then.
  const appointed = await ctx.s.api('PATCH', '/v1/conversations/dave-room/participants/eve', { role: 'moderator' }, dave)
  assert.equal(appointed.body, { access: 'ReadWrite', notify: true, role: 'moderator' })
  // A PUT without role keeps it (a moderator changing its own notify stays one).
  const kept = await ctx.s.api('PUT', '/v1/conversations/dave-room/participants/eve', { notify: false }, eve)
  assert.equal(kept.body, { access: 'ReadWrite', notify: false, role: 'moderator' })
  const demoted = await ctx.s.api('PATCH', '/v1/conversations/dave-room/participants/dave', { role: null }, eve)
  assert.equal([demoted.status, demoted.body], [200, { access: 'ReadWrite', notify: true }])
  // A moderator removes non-moderator participants even with browserSync off, and sets slowMode
  // and guestAccess (nothing else) there.
  await ctx.s.api('PATCH', '/v1/settings', { browserSync: false })
  assert.is((await ctx.s.api('DELETE', '/v1/conversations/dave-room/participants/frank', undefined, eve)).status, 204)
  const toggled = await ctx.s.api('PUT', '/v1/conversations/dave-room', { slowMode: 30, guestAccess: 'read' }, eve)
  assert.equal([toggled.status, toggled.body.slowMode, toggled.body.guestAccess], [200, 30, 'read'])
  assert.is((await ctx.s.api('PUT', '/v1/conversations/dave-room', { subject: 'mine' }, eve)).body.error.code, 'BROWSER_SYNC_OFF')
  assert.is((await ctx.s.api('DELETE', '/v1/conversations/dave-room/participants/dave', undefined, dave)).status, 403)
  const removed = ctx.events.filter(e => e.type === 'participant.removed' && e.conversationId === 'dave-room')
  assert.equal(removed, [{ type: 'participant.removed', conversationId: 'dave-room', userId: 'frank', by: 'eve' }])
})

Mod('a moderator kicks a guest (4403 KICKED, it may come back) and bans others, not moderators', async ctx => {
  const g1 = await join(ctx, 'visitor', true)
  const g2 = await join(ctx, 'visitor', true)
  const bobP = await join(ctx, 'bob')
  assert.is((await ctx.s.api('DELETE', `/v1/conversations/${CONV}/guests/visitor`, undefined, await as(ctx, 'carol'))).status, 403)
  const kick = await ctx.s.api('DELETE', `/v1/conversations/${CONV}/guests/visitor`, undefined, await as(ctx, 'alice'))
  assert.equal([kick.status, kick.body], [200, { closed: 2 }])
  await waitFor(() => g1.closes.length > 0 && g2.closes.length > 0, 5000, 'guests closed')
  assert.equal([g1.closes[0].code, g1.closes[0].reason], [4403, 'KICKED'])
  assert.ok(ctx.events.some(e => e.type === 'conversation.guest_kicked' && e.userId === 'visitor' && e.connections === 2 && e.by === 'alice'))
  // Only guest connections: a participant of that name would stay.
  assert.equal((await ctx.s.api('DELETE', `/v1/conversations/${CONV}/guests/bob`)).body, { closed: 0 })
  assert.equal(bobP.closes, [])
  const back = await join(ctx, 'visitor', true)
  assert.equal(back.closes, [])
  // Moderators are banned only by admins.
  await ctx.s.api('PATCH', `/v1/conversations/${CONV}/participants/carol`, { role: 'moderator' })
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/carol`, {}, await as(ctx, 'alice'))).status, 403)
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/bob`, {}, await as(ctx, 'bob'))).status, 403)
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}/bans/carol`, {})).status, 200)
})

Mod.run()
