import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as encoding from 'lib0/encoding'
import { isChatError } from '../../../shared/errors.ts'
import type { Role } from '../../../shared/schema.ts'
import { PresenceHub, type PresenceOptions, type PresencePeer } from '../../../server/presence/presence-hub.ts'
import { createFakeTime, entriesOf, StockClient, type FakeTime } from './helpers.ts'

const SERVER_ID = 999_999
const BATCH = 40
const RENEWAL = 5_000
const SUMMARY = 1_000
const KEEPALIVE = 15_000

interface Ctx {
  time: FakeTime
  hub: PresenceHub
  clients: StockClient[]
  nextClientId: number
  client: (userId: string, role: Role) => StockClient
}

const Hub = suite<Ctx>('PresenceHub')

const setup = (ctx: Ctx, options: Partial<PresenceOptions> = {}): void => {
  ctx.time = createFakeTime()
  ctx.hub = new PresenceHub({
    serverClientId: SERVER_ID,
    batchMs: BATCH,
    renewalMs: RENEWAL,
    summaryMs: SUMMARY,
    keepaliveMs: KEEPALIVE,
    timers: ctx.time.timers,
    now: ctx.time.now,
    ...options
  })
  ctx.clients = []
  ctx.nextClientId = 100
  ctx.client = (userId, role) => {
    const c = new StockClient(ctx.hub, userId, role, ctx.nextClientId++)
    ctx.clients.push(c)
    return c
  }
}

Hub.before.each(ctx => setup(ctx))
Hub.after.each(ctx => {
  ctx.hub.destroy()
  for (const c of ctx.clients) c.destroy()
})

/** Lets every batch and summary go out, then forgets the frames seen so far. */
const settle = (ctx: Ctx): void => {
  ctx.time.advance(SUMMARY + BATCH)
  for (const c of ctx.clients) c.peer.frames.length = 0
}

const expectCode = (fn: () => void, code: string): void => {
  try {
    fn()
  } catch (e) {
    assert.ok(isChatError(e), `expected a ChatError, got ${String(e)}`)
    assert.is(e.code, code)
    return
  }
  assert.unreachable(`expected ${code}`)
}

const userOf = (state: unknown): unknown => (state as { user?: unknown } | undefined)?.user
const serverState = (c: StockClient): unknown => c.awareness.getStates().get(SERVER_ID)

/** An awareness update written by hand: [clientId, clock, JSON text]. */
const rawUpdate = (entries: Array<[number, number, string]>): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const [id, clock, json] of entries) {
    encoding.writeVarUint(e, id)
    encoding.writeVarUint(e, clock)
    encoding.writeVarString(e, json)
  }
  return encoding.toUint8Array(e)
}

Hub('a joining peer receives the participants\' states and the server summary in one frame', ctx => {
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  const guest = ctx.client('g1', 'guest').join()
  guest.set({ user: { name: 'G' } })
  settle(ctx)
  const late = ctx.client('g2', 'guest').join()
  assert.is(late.peer.frames.length, 1)
  assert.equal(userOf(late.seen().get(alice.clientId)), { id: 'alice', role: 'participant', name: 'Alice' })
  assert.not.ok(late.seen().has(guest.clientId))
  assert.equal(serverState(late), { parley: { guestCount: 2, participantCount: 1 } })
  const boss = ctx.client('bob', 'participant').join()
  assert.is(boss.peer.frames.length, 1)
  assert.ok(boss.seen().has(guest.clientId), 'a joining participant sees the guests too')
})

Hub('the server sets user.id and user.role and overwrites forged claims', ctx => {
  const observer = ctx.client('boss', 'participant').join()
  const mallory = ctx.client('mallory', 'guest').join()
  mallory.set({ user: { id: 'boss', role: 'participant', name: 'Boss', color: '#f00' }, typing: true })
  ctx.time.advance(BATCH)
  assert.equal(observer.seen().get(mallory.clientId), { user: { id: 'mallory', role: 'guest', name: 'Boss', nameSource: 'self', color: '#f00' }, typing: true })
  mallory.set({ user: { name: 'x'.repeat(101) } })
  ctx.time.advance(BATCH)
  assert.equal(observer.seen().get(mallory.clientId), { user: { id: 'mallory', role: 'guest' } }, 'a name over 100 characters is dropped')
  mallory.set({ user: 'boss' })
  ctx.time.advance(BATCH)
  assert.equal(observer.seen().get(mallory.clientId), { user: { id: 'mallory', role: 'guest' } })
})

Hub('entries for client ids another user\'s connection holds are dropped, the rest of the update applies', ctx => {
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  const bob = ctx.client('bob', 'participant').join()
  bob.set({ user: { name: 'Bob' } })
  const observer = ctx.client('carol', 'participant').join()
  settle(ctx)
  ctx.hub.receive(bob.peer, rawUpdate([[alice.clientId, 50, '{"user":{"name":"fake"}}']]))
  ctx.hub.receive(bob.peer, rawUpdate([[alice.clientId, 51, 'null']]))
  ctx.hub.receive(bob.peer, rawUpdate([[bob.clientId, 5, '{"typing":true}'], [alice.clientId, 52, 'null']]))
  ctx.time.advance(BATCH)
  assert.equal(userOf(observer.seen().get(alice.clientId)), { id: 'alice', role: 'participant', name: 'Alice' })
  assert.equal(observer.seen().get(bob.clientId), { typing: true, user: { id: 'bob', role: 'participant' } })
  ctx.hub.leave(bob.peer)
  ctx.time.advance(BATCH)
  assert.ok(observer.seen().has(alice.clientId), 'bob\'s leave does not remove alice')
})

Hub('a late echo of a removed state from another connection does not bring it back', ctx => {
  const observer = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  settle(ctx)
  const echoed = [...observer.seen().keys()]
  ctx.hub.leave(alice.drop())
  ctx.time.advance(BATCH)
  assert.not.ok(observer.seen().has(alice.clientId))
  observer.set({ user: { name: 'Boss' } })
  ctx.hub.receive(observer.peer, rawUpdate([[alice.clientId, 1, '{"user":{"name":"Alice"}}']]))
  ctx.time.advance(BATCH)
  const other = ctx.client('zed', 'participant').join()
  assert.not.ok(other.seen().has(alice.clientId), `echoed ids ${echoed.join(',')}`)
})

Hub('the server\'s own client id is never accepted from a peer', ctx => {
  const alice = ctx.client('alice', 'participant').join()
  ctx.hub.receive(alice.peer, rawUpdate([[SERVER_ID, 1_000_000, '{"parley":{"guestCount":99}}']]))
  ctx.hub.receive(alice.peer, rawUpdate([[SERVER_ID, 1_000_001, 'null']]))
  settle(ctx)
  const bob = ctx.client('bob', 'participant').join()
  assert.equal(serverState(bob), { parley: { guestCount: 0, participantCount: 2 } })
})

Hub('a reconnect whose state arrives as "updated" takes the id over and leaves no ghost', ctx => {
  const observer = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'guest').join()
  alice.set({ user: { name: 'Alice' } })
  ctx.time.advance(BATCH)
  const oldPeer = alice.drop()
  alice.reconnect() // the same client id and clock: an "updated" state, not an "added" one
  ctx.hub.leave(oldPeer) // the old socket's close arrives after the new connection
  ctx.time.advance(BATCH)
  assert.ok(observer.seen().has(alice.clientId), 'the old connection\'s leave does not remove the taken-over id')
  ctx.hub.leave(alice.peer)
  ctx.time.advance(BATCH)
  assert.not.ok(observer.seen().has(alice.clientId), 'the new connection\'s leave removes it at once')
})

Hub('a client reconnecting after its old connection left is visible again at once', ctx => {
  const observer = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  ctx.time.advance(BATCH)
  ctx.hub.leave(alice.drop())
  ctx.time.advance(BATCH)
  assert.not.ok(observer.seen().has(alice.clientId))
  alice.reconnect() // same clock as before the removal: a stock receiver would ignore it as is
  ctx.time.advance(BATCH)
  assert.equal(userOf(observer.seen().get(alice.clientId)), { id: 'alice', role: 'participant', name: 'Alice' })
  alice.set({ user: { name: 'Alice' }, typing: true })
  ctx.time.advance(BATCH)
  assert.equal(observer.seen().get(alice.clientId), { user: { id: 'alice', role: 'participant', name: 'Alice' }, typing: true })
})

Hub('a connection of the same user reconnecting as a guest makes its state vanish for guests', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const guest = ctx.client('g1', 'guest').join()
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  ctx.time.advance(BATCH)
  assert.ok(guest.seen().has(alice.clientId))
  alice.drop()
  const asGuest = new StockClient(ctx.hub, 'alice', 'guest', alice.clientId)
  ctx.clients.push(asGuest)
  asGuest.join()
  asGuest.set({ user: { name: 'Alice' } })
  ctx.time.advance(BATCH)
  assert.not.ok(guest.seen().has(alice.clientId))
  assert.equal(userOf(boss.seen().get(alice.clientId)), { id: 'alice', role: 'guest', name: 'Alice', nameSource: 'self' })
})

Hub('guests do not receive other guests\' states but see the guest count in the server state', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  boss.set({ user: { name: 'Boss' } })
  const guests = [1, 2, 3].map(i => ctx.client(`g${i}`, 'guest').join())
  for (const g of guests) g.set({ user: { name: 'guest' } })
  ctx.time.advance(SUMMARY + BATCH)
  for (const g of guests) {
    assert.equal(Array.from(g.seen().keys()).sort(), [boss.clientId, SERVER_ID].sort())
    assert.equal(serverState(g), { parley: { guestCount: 3, participantCount: 1 } })
  }
})

Hub('participants receive the guests\' states', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const guests = [1, 2, 3].map(i => ctx.client(`g${i}`, 'guest').join())
  for (const g of guests) g.set({ user: { name: `guest ${g.userId}` } })
  ctx.time.advance(BATCH)
  for (const g of guests) assert.equal(userOf(boss.seen().get(g.clientId)), { id: g.userId, role: 'guest', name: `guest ${g.userId}`, nameSource: 'self' })
})

Hub('changes within one window go out as one frame per audience, the same buffer to every receiver', ctx => {
  const ps = [1, 2, 3].map(i => ctx.client(`p${i}`, 'participant').join())
  const gs = [1, 2, 3].map(i => ctx.client(`g${i}`, 'guest').join())
  settle(ctx)
  ps[0].set({ typing: true })
  gs[0].set({ typing: true })
  gs[1].set({ typing: false })
  ctx.time.advance(BATCH - 1)
  for (const c of ctx.clients) assert.is(c.peer.frames.length, 0, 'nothing before the window ends')
  ctx.time.advance(1)
  for (const c of ctx.clients) assert.is(c.peer.frames.length, 1)
  assert.is(ps[1].peer.frames[0], ps[2].peer.frames[0], 'participants share one buffer')
  assert.is(gs[0].peer.frames[0], gs[1].peer.frames[0], 'guests share one buffer')
  assert.is(gs[1].peer.frames[0], gs[2].peer.frames[0])
  assert.equal(entriesOf(gs[2].peer.frames[0]).map(e => e.clientId), [ps[0].clientId])
  assert.equal(entriesOf(ps[1].peer.frames[0]).map(e => e.clientId).sort(), [ps[0].clientId, gs[0].clientId, gs[1].clientId].sort())
  assert.equal(entriesOf(ps[0].peer.frames[0]).map(e => e.clientId).sort(), [gs[0].clientId, gs[1].clientId].sort(), 'the author gets the others only')
})

Hub('a window with only guest changes sends nothing to guests', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const gs = [1, 2].map(i => ctx.client(`g${i}`, 'guest').join())
  settle(ctx)
  gs[0].set({ typing: true })
  ctx.time.advance(SUMMARY + BATCH)
  assert.is(boss.peer.frames.length, 1)
  assert.is(gs[0].peer.frames.length, 0)
  assert.is(gs[1].peer.frames.length, 0)
})

Hub('nobody receives its own state back', ctx => {
  const alice = ctx.client('alice', 'participant').join()
  const guest = ctx.client('g', 'guest').join()
  settle(ctx)
  alice.set({ typing: true })
  guest.set({ typing: true })
  ctx.time.advance(BATCH)
  for (const c of [alice, guest]) {
    for (const f of c.peer.frames) assert.not.ok(entriesOf(f).some(e => e.clientId === c.clientId))
  }
})

Hub('a leaving peer\'s states vanish from everyone within the batch window and it is sent nothing more', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'participant').join()
  const guest = ctx.client('g', 'guest').join()
  alice.set({ user: { name: 'Alice' } })
  settle(ctx)
  assert.ok(boss.seen().has(alice.clientId) && guest.seen().has(alice.clientId))
  ctx.hub.leave(alice.peer)
  ctx.time.advance(BATCH)
  assert.not.ok(boss.seen().has(alice.clientId))
  assert.not.ok(guest.seen().has(alice.clientId))
  assert.equal(serverState(guest), { parley: { guestCount: 1, participantCount: 1 } })
  ctx.time.advance(KEEPALIVE * 2)
  assert.is(alice.peer.frames.length, 0)
  assert.is(ctx.hub.size(), 2)
})

Hub('a peer removing its own state reaches the others with a clock they apply', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  ctx.time.advance(BATCH)
  alice.set(null)
  ctx.time.advance(BATCH)
  assert.not.ok(boss.seen().has(alice.clientId))
})

Hub('a mass leave reaches each remaining peer as one frame', ctx => {
  const ps = [1, 2].map(i => ctx.client(`p${i}`, 'participant').join())
  const stay = ctx.client('stay', 'guest').join()
  const leavers = Array.from({ length: 50 }, (_, i) => ctx.client(`g${i}`, 'guest').join())
  for (const g of leavers) g.set({ user: { name: g.userId } })
  settle(ctx)
  assert.is(ps[0].seen().size, 51)
  for (const g of leavers) ctx.hub.leave(g.peer)
  ctx.time.advance(BATCH)
  for (const p of ps) {
    assert.is(p.peer.frames.length, 1)
    assert.equal(Array.from(p.seen().keys()), [SERVER_ID])
  }
  assert.is(ps[0].peer.frames[0], ps[1].peer.frames[0])
  assert.is(stay.peer.frames.length, 1, 'the remaining guest gets the new count only')
  assert.equal(serverState(stay), { parley: { guestCount: 1, participantCount: 2 } })
})

Hub('the keepalive renews the server state for every peer with one shared frame', ctx => {
  const p = ctx.client('p', 'participant').join()
  const gs = [1, 2].map(i => ctx.client(`g${i}`, 'guest').join())
  settle(ctx)
  const clockBefore = gs[0].awareness.meta.get(SERVER_ID)?.clock ?? -1
  ctx.time.advance(KEEPALIVE - SUMMARY - BATCH)
  for (const c of ctx.clients) assert.is(c.peer.frames.length, 1)
  assert.is(p.peer.frames[0], gs[0].peer.frames[0])
  assert.is(gs[0].peer.frames[0], gs[1].peer.frames[0])
  assert.is(gs[0].awareness.meta.get(SERVER_ID)?.clock, clockBefore + 1)
  ctx.time.advance(KEEPALIVE * 3)
  for (const c of ctx.clients) assert.is(c.peer.frames.length, 4, 'one frame per keepalive, even in a silent room')
})

Hub('renewals are forwarded within renewalMs and only to the audiences that see them', ctx => {
  const boss = ctx.client('boss', 'participant').join()
  const gs = [1, 2].map(i => ctx.client(`g${i}`, 'guest').join())
  for (const g of gs) g.set({ user: { name: g.userId } })
  settle(ctx)
  for (const g of gs) g.renew()
  ctx.time.advance(BATCH)
  assert.is(boss.peer.frames.length, 0, 'a renewal does not open a batch window')
  ctx.time.advance(RENEWAL)
  assert.is(boss.peer.frames.length, 1, 'both renewals in one frame')
  for (const g of gs) {
    assert.is(g.peer.frames.length, 0)
    assert.is(boss.awareness.meta.get(g.clientId)?.clock, g.awareness.meta.get(g.clientId)?.clock)
  }
  boss.renew()
  ctx.time.advance(RENEWAL)
  for (const g of gs) assert.is(g.awareness.meta.get(boss.clientId)?.clock, boss.awareness.meta.get(boss.clientId)?.clock)
})

Hub('summary changes reach guests at most once per summaryMs', ctx => {
  ctx.client('boss', 'participant').join()
  const first = ctx.client('g0', 'guest').join()
  settle(ctx)
  for (let i = 1; i <= 20; i++) {
    ctx.client(`g${i}`, 'guest').join()
    ctx.time.advance(100) // 20 joins over 2 s
  }
  ctx.time.advance(SUMMARY)
  assert.ok(first.peer.frames.length <= 3, `got ${first.peer.frames.length} frames`)
  assert.equal(serverState(first), { parley: { guestCount: 21, participantCount: 1 } })
})

Hub('malformed bytes and states throw MALFORMED_MESSAGE', ctx => {
  const alice = ctx.client('alice', 'participant').join()
  const bad: Uint8Array[] = [
    new Uint8Array([]),
    new Uint8Array([5]),
    new Uint8Array([1, 101, 1]),
    new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    Uint8Array.of(...rawUpdate([[alice.clientId, 1, '{}']]), 0),
    rawUpdate([[alice.clientId, 1, '{not json']]),
    rawUpdate([[alice.clientId, 1, '[1,2]']]),
    rawUpdate([[alice.clientId, 1, '"hi"']]),
    rawUpdate([[alice.clientId, 1, '42']])
  ]
  for (const b of bad) expectCode(() => ctx.hub.receive(alice.peer, b), 'MALFORMED_MESSAGE')
})

Hub('caps on state size and states per connection are refused, and nothing of the update is recorded', ctx => {
  ctx.hub.destroy()
  setup(ctx, { maxStateBytes: 200, maxStatesPerConnection: 2 })
  const boss = ctx.client('boss', 'participant').join()
  const alice = ctx.client('alice', 'participant').join()
  expectCode(() => alice.set({ user: { name: 'Alice' }, blob: 'x'.repeat(200) }), 'MALFORMED_MESSAGE')
  expectCode(() => ctx.hub.receive(alice.peer, rawUpdate([[1, 1, '{}'], [2, 1, '{}'], [3, 1, '{}']])), 'MALFORMED_MESSAGE')
  ctx.time.advance(BATCH)
  assert.equal(Array.from(boss.seen().keys()), [SERVER_ID])
  ctx.hub.receive(alice.peer, rawUpdate([[1, 1, '{}'], [2, 1, '{}']]))
  expectCode(() => ctx.hub.receive(alice.peer, rawUpdate([[3, 1, '{}']])), 'MALFORMED_MESSAGE')
  ctx.hub.receive(alice.peer, rawUpdate([[2, 2, 'null'], [3, 1, '{}']]))
  ctx.time.advance(BATCH)
  assert.equal(Array.from(boss.seen().keys()).sort(), [1, 3, SERVER_ID])
})

Hub('summary lists distinct users online and at most 100 guests', ctx => {
  ctx.client('alice', 'participant').join()
  ctx.client('alice', 'participant').join()
  ctx.client('bob', 'participant').join()
  for (let i = 0; i < 130; i++) ctx.client(`g${i % 120}`, 'guest').join()
  const s = ctx.hub.summary()
  assert.equal(s.participants.sort(), ['alice', 'bob'])
  assert.is(s.guestCount, 120)
  assert.is(s.guests.length, 100)
  assert.is(new Set(s.guests).size, 100)
  assert.is(ctx.hub.distinctGuestUsers(), 120)
  assert.is(ctx.hub.size(), 133)
  for (const c of ctx.clients.slice(3, 13)) ctx.hub.leave(c.peer) // g0..g9, each still has a second connection
  assert.is(ctx.hub.distinctGuestUsers(), 120)
})

Hub('hasGuest knows every guest online, also past the 100 listed', ctx => {
  for (let i = 0; i < 120; i++) ctx.client(`g${i}`, 'guest').join()
  assert.not.ok(ctx.hub.summary().guests.includes('g119'))
  assert.ok(ctx.hub.hasGuest('g119'))
  assert.not.ok(ctx.hub.hasGuest('nobody'))
  ctx.hub.leave(ctx.clients[119].peer)
  assert.not.ok(ctx.hub.hasGuest('g119'))
})

Hub('typing changes are told as they happen: start, stop, a typing peer leaving, destroy', ctx => {
  let changes = 0
  const stop = ctx.hub.onTypingChange(() => { changes++ })
  const a = ctx.client('alice', 'participant').join()
  const g = ctx.client('gina', 'guest').join()
  a.set({ name: 'A' })
  assert.is(changes, 0)
  a.set({ name: 'A', typing: true })
  assert.equal([changes, ctx.hub.isTyping()], [1, true])
  a.set({ name: 'A2', typing: true })
  g.set({ typing: true })
  assert.is(changes, 2, 'only a peer starting or stopping counts')
  a.set({ name: 'A2', typing: false })
  assert.equal([changes, ctx.hub.isTyping()], [3, true])
  ctx.hub.leave(g.peer)
  assert.equal([changes, ctx.hub.isTyping()], [4, false])
  a.set({ typing: true })
  ctx.hub.destroy()
  assert.equal([changes, ctx.hub.isTyping()], [6, false])
  stop()
})

Hub('a thousand guests joining within a second cost frames linear in the guests', ctx => {
  let frames = 0
  const peer = (connId: number, userId: string, role: Role): PresencePeer => ({ connId, userId, role, send: () => { frames++ } })
  const participants = [1, 2, 3].map(i => peer(10_000 + i, `p${i}`, 'participant'))
  for (const p of participants) {
    ctx.hub.join(p)
    ctx.hub.receive(p, rawUpdate([[p.connId, 1, '{}']]))
  }
  ctx.time.advance(SUMMARY)
  frames = 0
  for (let i = 0; i < 1000; i++) {
    const g = peer(i, `g${i}`, 'guest')
    ctx.hub.join(g)
    ctx.hub.receive(g, rawUpdate([[i + 1_000_000, 1, '{}']]))
    ctx.time.advance(1)
  }
  ctx.time.advance(SUMMARY)
  // 1,000 join frames, at most one frame per guest per summary broadcast (about 2 in this
  // second), and one frame per participant per batch window (25 windows).
  assert.ok(frames < 1000 + 1000 * 3 + 3 * 30, `sent ${frames} frames`)
  assert.is(ctx.hub.distinctGuestUsers(), 1000)
})

Hub('timers stop when the room empties and on destroy', ctx => {
  const a = ctx.client('a', 'participant').join()
  a.set({ typing: true })
  assert.ok(ctx.time.pending() > 0)
  ctx.hub.leave(a.peer)
  assert.is(ctx.time.pending(), 0)
  const b = ctx.client('b', 'guest').join()
  b.set({ typing: true })
  ctx.hub.destroy()
  assert.is(ctx.time.pending(), 0)
  ctx.time.advance(KEEPALIVE)
  assert.is(b.peer.frames.length, 1, 'only the join frame')
})

Hub.run()
