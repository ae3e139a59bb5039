import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, connectRaw, sendMessage, texts, waitFor, type Peer } from '../helpers/clients.ts'
import { encodeAwareness } from '../../shared/protocol.ts'

const Guests = suite<{ s: TestServer, peers: Peer[] }>('guest access')

Guests.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
  await ctx.s.api('PUT', '/v1/conversations/room', { participants: ['alice', 'bob'], subject: 'Super group' })
})
Guests.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

const join = async (ctx: { s: TestServer, peers: Peer[] }, user: string, guest = false): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token(user), guest ? { guest: '1' } : {})
  ctx.peers.push(p)
  return p
}

type State = { user?: { id?: string, role?: string, name?: string, nameSource?: string }, parley?: { guestCount: number } }
const states = (p: Peer): State[] => [...p.provider.awareness.getStates().values()] as State[]
const roleOf = (p: Peer, id: string): string | undefined => states(p).find(s => s.user?.id === id)?.user?.role

Guests('a non-participant joins as a guest, reads history and writes when guestAccess is write', async ctx => {
  const a = await join(ctx, 'alice')
  await a.synced
  sendMessage(a.doc, 'alice', 'welcome')
  const g = await join(ctx, 'visitor', true)
  await g.synced
  await waitFor(() => texts(g.doc).includes('welcome'))
  sendMessage(g.doc, 'visitor', 'hi from a guest')
  await waitFor(() => texts(a.doc).includes('hi from a guest'))
})

Guests('a guest is never a member: not in participants, not in its conversation list', async ctx => {
  const g = await join(ctx, 'visitor', true)
  await g.synced
  sendMessage(g.doc, 'visitor', 'trace')
  await waitFor(() => ctx.s.server.rooms.peek('room')?.doc.getArray('messages').length === 1)
  const conv = await ctx.s.api('GET', '/v1/conversations/room')
  assert.equal(Object.keys(conv.body.participants).sort(), ['alice', 'bob'])
  const list = await ctx.s.api('GET', '/v1/users/visitor/conversations')
  assert.equal(list.body.data, [])
  g.destroy()
  const again = await ctx.s.api('GET', '/v1/conversations/room')
  assert.equal(Object.keys(again.body.participants).sort(), ['alice', 'bob'])
})

Guests('a read-only guest reads; a write closes it with 4403 and is neither stored nor forwarded', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/room', { guestAccess: 'read' })
  const a = await join(ctx, 'alice')
  const g = await join(ctx, 'watcher', true)
  await Promise.all([a.synced, g.synced])
  sendMessage(a.doc, 'alice', 'visible')
  await waitFor(() => texts(g.doc).includes('visible'))
  sendMessage(g.doc, 'watcher', 'nope')
  await waitFor(() => g.closes.length > 0)
  assert.is(g.closes[0].code, 4403)
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(texts(a.doc), ['visible'])
})

Guests('guests are refused when guestAccess is none or browserSync is off, and without guest=1', async ctx => {
  let c = connectRaw(`${ctx.s.wsUrl}/room?token=${await ctx.s.token('x')}`)
  assert.is((await c.closed).code, 4403)
  assert.is(c.authReason()?.code, 'NOT_PARTICIPANT')
  await ctx.s.api('PUT', '/v1/conversations/room', { guestAccess: 'none' })
  c = connectRaw(`${ctx.s.wsUrl}/room?guest=1&token=${await ctx.s.token('x')}`)
  assert.is((await c.closed).code, 4403)
  assert.is(c.authReason()?.code, 'GUEST_ACCESS_OFF')
  await ctx.s.api('PUT', '/v1/conversations/room', { guestAccess: 'write' })
  await ctx.s.api('PATCH', '/v1/settings', { browserSync: false })
  c = connectRaw(`${ctx.s.wsUrl}/room?guest=1&token=${await ctx.s.token('x')}`)
  assert.is((await c.closed).code, 4403)
})

Guests('a participant asking guest=1 joins as a participant; once removed it can join as a guest', async ctx => {
  const b = await join(ctx, 'bob')
  const a = await join(ctx, 'alice', true)
  await Promise.all([a.synced, b.synced])
  a.provider.awareness.setLocalStateField('typing', true)
  await waitFor(() => roleOf(b, 'alice') === 'participant')
  a.destroy()
  await ctx.s.api('DELETE', '/v1/conversations/room/participants/alice')
  const again = await join(ctx, 'alice', true)
  await again.synced
  again.provider.awareness.setLocalStateField('typing', true)
  await waitFor(() => roleOf(b, 'alice') === 'guest')
})

Guests('guests do not count toward maxParticipants; maxGuests caps distinct guest users with 4409', async ctx => {
  await ctx.s.api('PATCH', '/v1/settings', { maxParticipants: 2, maxGuests: 2 })
  const g1 = await join(ctx, 'g1', true)
  const g2 = await join(ctx, 'g2', true)
  const g1b = await join(ctx, 'g1', true)
  await Promise.all([g1.synced, g2.synced, g1b.synced])
  const c = connectRaw(`${ctx.s.wsUrl}/room?guest=1&token=${await ctx.s.token('g3')}`)
  assert.is((await c.closed).code, 4409)
  assert.is(c.authReason()?.code, 'GUEST_LIMIT')
  const r = await ctx.s.api('PUT', '/v1/conversations/room/participants/carol', {})
  assert.is(r.status, 409, 'participants are still limited by maxParticipants alone')
  g2.destroy()
  await waitFor(() => ctx.s.server.rooms.peek('room')!.presence.distinctGuestUsers() === 1)
  const g3 = await join(ctx, 'g3', true)
  await g3.synced
})

Guests('in a full room, a guest already online opens another tab, also one past the first 100 listed', async ctx => {
  const n = 101
  await ctx.s.api('PATCH', '/v1/settings', { maxGuests: n })
  const hub = (): { distinctGuestUsers: () => number, summary: () => { guests: string[] } } => ctx.s.server.rooms.peek('room')!.presence
  const raws: Array<ReturnType<typeof connectRaw>> = []
  const guest = async (user: string): Promise<ReturnType<typeof connectRaw>> => {
    const c = connectRaw(`${ctx.s.wsUrl}/room?guest=1&token=${await ctx.s.token(user)}`)
    raws.push(c)
    return c
  }
  for (let i = 0; i < n - 1; i++) await guest(`g${i}`)
  await waitFor(() => ctx.s.server.rooms.peek('room')?.presence.distinctGuestUsers() === n - 1, 10000, 'the first guests admitted')
  await guest('last')
  await waitFor(() => hub().distinctGuestUsers() === n, 5000, 'the room full')
  assert.not.ok(hub().summary().guests.includes('last'), 'the listed guests stop before it')
  const tab = await guest('last')
  await waitFor(() => tab.frames.some(f => f[0] === 0), 5000, 'the second tab synced')
  const outsider = await guest('outsider')
  assert.is((await outsider.closed).code, 4409)
  assert.is(tab.ws.readyState, tab.ws.OPEN, 'the second tab was admitted and stays')
  assert.is(hub().distinctGuestUsers(), n)
  for (const c of raws) c.ws.terminate()
})

Guests('a guest with a user record is shown by its record\'s name, whatever it claims', async ctx => {
  await ctx.s.api('PUT', '/v1/users/gina', { name: 'Gina' })
  const a = await join(ctx, 'alice')
  const g = await join(ctx, 'gina', true)
  await Promise.all([a.synced, g.synced])
  g.provider.awareness.setLocalState({ user: { name: 'bob' }, typing: true })
  await waitFor(() => states(a).some(s => s.user?.id === 'gina' && (s as { typing?: boolean }).typing === true))
  assert.equal(states(a).find(s => s.user?.id === 'gina')?.user, { id: 'gina', role: 'guest', name: 'Gina' })
})

Guests('presence is set by the server: forged ids and roles are corrected', async ctx => {
  const a = await join(ctx, 'alice')
  const g = await join(ctx, 'mallory', true)
  await Promise.all([a.synced, g.synced])
  g.provider.awareness.setLocalState({ user: { id: 'bob', role: 'participant', name: 'Bob' } })
  await waitFor(() => states(a).some(s => s.user?.name === 'Bob'))
  const forged = states(a).find(s => s.user?.name === 'Bob')!
  // The name stays the guest's own choice, and says so: it never passes for participant bob's.
  assert.equal(forged.user, { id: 'mallory', role: 'guest', name: 'Bob', nameSource: 'self' })
})

Guests('a peer cannot remove the awareness ids of another connection: the entry is dropped', async ctx => {
  const a = await join(ctx, 'alice')
  await a.synced
  a.provider.awareness.setLocalStateField('typing', true)
  const c = connectRaw(`${ctx.s.wsUrl}/room?guest=1&token=${await ctx.s.token('mallory')}`)
  await c.opened
  const fake = new awarenessProtocol.Awareness(new Y.Doc())
  fake.clientID = a.doc.clientID
  fake.setLocalState(null)
  const removal = awarenessProtocol.encodeAwarenessUpdate(fake, [a.doc.clientID], new Map([[a.doc.clientID, null]]) as unknown as Map<number, Record<string, unknown>>)
  c.ws.send(encodeAwareness(removal))
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.is(c.ws.readyState, c.ws.OPEN, 'an echo-like entry is dropped, not refused')
  c.ws.close()
  const b = await join(ctx, 'bob')
  await b.synced
  await waitFor(() => roleOf(b, 'alice') === 'participant', 5000, 'alice still visible')
})

Guests('guests see participants and a guest count; participants see guests; a closed guest vanishes at once', async ctx => {
  const a = await join(ctx, 'alice')
  await a.synced
  a.provider.awareness.setLocalStateField('user', { name: 'Alice' })
  const g1 = await join(ctx, 'g1', true)
  const g2 = await join(ctx, 'g2', true)
  await Promise.all([g1.synced, g2.synced])
  g1.provider.awareness.setLocalStateField('typing', false)
  g2.provider.awareness.setLocalStateField('typing', false)
  await waitFor(() => roleOf(a, 'g1') === 'guest' && roleOf(a, 'g2') === 'guest', 5000, 'participant sees guests')
  await waitFor(() => roleOf(g1, 'alice') === 'participant', 5000, 'guest sees participant')
  await waitFor(() => states(g1).some(s => s.parley?.guestCount === 2), 5000, 'guest count')
  assert.is(roleOf(g1, 'g2'), undefined, 'guests do not see each other')
  const presence = await ctx.s.api('GET', '/v1/conversations/room/presence')
  assert.equal(presence.body.participants, ['alice'])
  assert.is(presence.body.guestCount, 2)
  assert.equal([...presence.body.guests].sort(), ['g1', 'g2'])
  g1.destroy()
  // The removal is sent when the socket closes (no 30 s awareness timeout): it arrives at once.
  await waitFor(() => roleOf(a, 'g1') === undefined, 5000, 'guest removed when it left')
})

Guests('rights change live: guestAccess none closes guests with 4403, read stops their writes', async ctx => {
  const g = await join(ctx, 'g1', true)
  const h = await join(ctx, 'g2', true)
  await Promise.all([g.synced, h.synced])
  await ctx.s.api('PUT', '/v1/conversations/room', { guestAccess: 'read' })
  sendMessage(h.doc, 'g2', 'after read')
  await waitFor(() => h.closes.length > 0)
  assert.is(h.closes[0].code, 4403)
  await ctx.s.api('PUT', '/v1/conversations/room', { guestAccess: 'none' })
  await waitFor(() => g.closes.length > 0)
  assert.is(g.closes[0].code, 4403)
})

Guests('turning browserSync off closes live guests with 4403', async ctx => {
  const g = await join(ctx, 'g1', true)
  const a = await join(ctx, 'alice')
  await Promise.all([g.synced, a.synced])
  await ctx.s.api('PATCH', '/v1/settings', { browserSync: false })
  await waitFor(() => g.closes.length > 0)
  assert.is(g.closes[0].code, 4403)
  assert.is(a.closes.length, 0)
})

Guests.run()
