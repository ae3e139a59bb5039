/**
 * The presence hub in cluster mode (docs/cluster.md, "Presence"): two hubs stand for one
 * conversation on two nodes; what one shares (`takeShared`) goes through the wire codec and is
 * applied to the other (`applyRemote`), as `ClusterPresence` does through Redis. Stock
 * y-protocols clients on each side check what an unmodified y-websocket peer would see.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Role } from '../../../shared/schema.ts'
import { PresenceHub, type PresenceChange } from '../../../server/presence/presence-hub.ts'
import { decodeNodeShare, encodeNodeShare, parseRecord, recordFields } from '../../../server/presence/shared-codec.ts'
import { createFakeTime, StockClient, type FakeTime } from './helpers.ts'

const BATCH = 40

interface Ctx {
  time: FakeTime
  a: PresenceHub
  b: PresenceHub
  clients: StockClient[]
  nextClientId: number
  wall: number
  client: (hub: PresenceHub, userId: string, role: Role) => StockClient
}

const C = suite<Ctx>('PresenceHub across nodes')

C.before.each(ctx => {
  ctx.time = createFakeTime()
  ctx.wall = 1_000_000
  const hub = (id: number): PresenceHub => {
    const h = new PresenceHub({ serverClientId: id, batchMs: BATCH, timers: ctx.time.timers, now: ctx.time.now })
    h.startSharing(() => ctx.wall)
    return h
  }
  ctx.a = hub(900_001)
  ctx.b = hub(900_002)
  ctx.clients = []
  ctx.nextClientId = 100
  ctx.client = (hub, userId, role) => {
    const c = new StockClient(hub, userId, role, ctx.nextClientId++)
    ctx.clients.push(c)
    return c
  }
})
C.after.each(ctx => {
  ctx.a.destroy()
  ctx.b.destroy()
  for (const c of ctx.clients) c.destroy()
})

/** Sends what `from` changed to `to` through the bus codec (full: the whole record, as the board holds it). */
const ship = (from: PresenceHub, to: PresenceHub, node: string, full = false): PresenceChange | null => {
  const change = from.takeShared(full)
  if (change === null) return null
  const decoded = decodeNodeShare(encodeNodeShare({ node, version: 1, gone: false, convs: [{ conv: 'c', base: 0, withdrawn: false, change }] }))
  assert.ok(decoded !== null)
  to.applyRemote(node, decoded.convs[0].change)
  return change
}

/** Both ways, then the hubs' batches go out. */
const exchange = (ctx: Ctx): void => {
  ship(ctx.a, ctx.b, 'A')
  ship(ctx.b, ctx.a, 'B')
  ctx.time.advance(1000 + BATCH)
}

const nameOf = (state: unknown): unknown => (state as { user?: { name?: unknown } } | undefined)?.user?.name

C('a stock peer on B sees a participant and a guest of A with their names and typing, and their removal when they leave', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  const visitor = ctx.client(ctx.a, 'visitor', 'guest').join()
  const bob = ctx.client(ctx.b, 'bob', 'participant').join()
  const guestOnB = ctx.client(ctx.b, 'g-b', 'guest').join()
  alice.set({ user: { name: 'Alice' }, typing: true })
  visitor.set({ user: { name: 'Vic' } })
  exchange(ctx)
  assert.is(nameOf(bob.seen().get(alice.clientId)), 'Alice')
  assert.is((bob.seen().get(alice.clientId) as { typing?: boolean }).typing, true)
  assert.equal((bob.seen().get(alice.clientId) as { user: { id: string, role: string } }).user.id, 'alice')
  assert.is(nameOf(bob.seen().get(visitor.clientId)), 'Vic', 'participants on B see guests of A')
  assert.is(guestOnB.seen().has(visitor.clientId), false, 'guests never see guests')
  assert.is(nameOf(guestOnB.seen().get(alice.clientId)), 'Alice', 'guests see participants of A')
  assert.equal([...ctx.b.typingUsers()], ['alice'])
  assert.equal(ctx.b.summary(), { participants: ['bob', 'alice'], guestCount: 2, guests: ['g-b', 'visitor'] })
  assert.equal(ctx.a.summary(), { participants: ['alice', 'bob'], guestCount: 2, guests: ['visitor', 'g-b'] })
  assert.equal(ctx.b.participantViewing(), new Map([['bob', true], ['alice', true]]))
  assert.ok(ctx.b.hasGuest('visitor'))

  let typingChanges = 0
  ctx.b.onTypingChange(() => { typingChanges++ })
  alice.set({ user: { name: 'Alice' }, typing: false, viewing: false })
  exchange(ctx)
  assert.is(typingChanges, 1)
  assert.equal([...ctx.b.typingUsers()], [])
  assert.equal(ctx.b.participantViewing(), new Map([['bob', true], ['alice', false]]))

  ctx.a.leave(alice.peer)
  ctx.a.leave(visitor.peer)
  exchange(ctx)
  assert.is(bob.seen().has(alice.clientId), false)
  assert.is(bob.seen().has(visitor.clientId), false)
  assert.is(guestOnB.seen().has(alice.clientId), false)
  assert.equal(ctx.b.summary(), { participants: ['bob'], guestCount: 1, guests: ['g-b'] })
  assert.equal(ctx.b.participantViewing(), new Map([['bob', true]]))
})

C('renewals travel too, so stock peers on the other node never time the state out', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  const bob = ctx.client(ctx.b, 'bob', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  exchange(ctx)
  const before = bob.awareness.meta.get(alice.clientId)?.clock ?? 0
  alice.renew()
  ship(ctx.a, ctx.b, 'A')
  ctx.time.advance(6000)
  assert.ok((bob.awareness.meta.get(alice.clientId)?.clock ?? 0) > before)
})

C('a connection to B cannot set or remove a client id a peer on A holds; the same user reconnecting to B takes it over, and A’s state returns when it goes', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  const bob = ctx.client(ctx.b, 'bob', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  exchange(ctx)
  // mallory on B claims alice's client id: dropped.
  const mallory = new StockClient(ctx.b, 'mallory', 'participant', alice.clientId)
  ctx.clients.push(mallory)
  mallory.join()
  mallory.set({ user: { name: 'Alice' } })
  mallory.set(null)
  ctx.time.advance(BATCH)
  assert.is((bob.seen().get(alice.clientId) as { user: { id: string } }).user.id, 'alice')
  assert.is(ctx.b.takeShared(false)?.states.length ?? 0, 0, 'B shares nothing of it')
  // alice reconnects to B with the same client id while A still has her.
  const again = new StockClient(ctx.b, 'alice', 'participant', alice.clientId)
  ctx.clients.push(again)
  again.join()
  again.set({ user: { name: 'Alice on B' } })
  ctx.time.advance(BATCH)
  assert.is(nameOf(bob.seen().get(alice.clientId)), 'Alice on B')
  // Her connection to B goes: what A shares of her is shown again, not a removal.
  ctx.b.leave(again.peer)
  ctx.time.advance(BATCH)
  assert.is(nameOf(bob.seen().get(alice.clientId)), 'Alice')
})

C('a client reconnecting from node A to node B stays visible on both, whichever socket closes first', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  const carol = ctx.client(ctx.a, 'carol', 'participant').join()
  const bob = ctx.client(ctx.b, 'bob', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  exchange(ctx)
  // Her new socket on B sends the same state at the same clock (the stock provider's resend on open).
  const again = new StockClient(ctx.b, 'alice', 'participant', alice.clientId)
  ctx.clients.push(again)
  again.awareness.setLocalState({ user: { name: 'Alice' } })
  again.join()
  again.sendOwn()
  exchange(ctx)
  // The old socket on A closes after: A shows what B shares of her instead of a removal, and B keeps her.
  ctx.a.leave(alice.peer)
  exchange(ctx)
  exchange(ctx)
  assert.is(nameOf(carol.seen().get(alice.clientId)), 'Alice')
  assert.is(nameOf(bob.seen().get(alice.clientId)), 'Alice')
  assert.equal(ctx.a.summary().participants.sort(), ['alice', 'bob', 'carol'])
  // Then she leaves B too: gone everywhere.
  ctx.b.leave(again.peer)
  exchange(ctx)
  assert.is(carol.seen().has(alice.clientId), false)
  assert.is(bob.seen().has(alice.clientId), false)
  assert.equal(ctx.a.summary().participants.sort(), ['bob', 'carol'])
})

C('a full change replaces what was held of a node, and dropRemote forgets it', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  const visitor = ctx.client(ctx.a, 'visitor', 'guest').join()
  const bob = ctx.client(ctx.b, 'bob', 'participant').join()
  alice.set({ user: { name: 'Alice' } })
  visitor.set({ user: { name: 'Vic' } })
  exchange(ctx)
  assert.is(bob.seen().size, 3, 'alice, visitor and B’s own server state')
  // B missed A's next change (visitor left); a full record puts it right.
  ctx.a.leave(visitor.peer)
  ctx.a.takeShared(false)
  ship(ctx.a, ctx.b, 'A', true)
  ctx.time.advance(1000 + BATCH)
  assert.is(bob.seen().has(visitor.clientId), false)
  assert.equal(ctx.b.summary().guestCount, 0)
  assert.ok(bob.seen().has(alice.clientId))
  ctx.b.dropRemote('A')
  ctx.time.advance(1000 + BATCH)
  assert.is(bob.seen().has(alice.clientId), false)
  assert.equal(ctx.b.summary(), { participants: ['bob'], guestCount: 0, guests: [] })
})

C('the board record of a node reads back as the full change it wrote', ctx => {
  const alice = ctx.client(ctx.a, 'alice', 'participant').join()
  ctx.client(ctx.a, 'visitor', 'guest').join()
  alice.set({ user: { name: 'Alice' }, typing: true })
  const change = ctx.a.takeShared(true)
  assert.ok(change !== null)
  const { set } = recordFields(7, change)
  const hash: Record<string, string> = {}
  for (let i = 0; i < set.length; i += 2) hash[set[i]] = set[i + 1]
  const record = parseRecord(hash)
  assert.ok(record !== null)
  assert.is(record.version, 7)
  assert.equal(record.change.states, change.states)
  assert.equal([...record.change.users].sort((x, y) => x.userId < y.userId ? -1 : 1), [...change.users].sort((x, y) => x.userId < y.userId ? -1 : 1))
  assert.is(parseRecord({}), null)
  assert.is(decodeNodeShare('not json'), null)
})

C('maxGuests: guests admitted on two nodes in the same instant are ranked the same on both; only the later, recent ones are over', ctx => {
  ctx.wall = 1000
  ctx.client(ctx.a, 'g1', 'guest').join()
  ctx.wall = 2000
  ctx.client(ctx.b, 'g2', 'guest').join()
  ctx.wall = 3000
  ctx.client(ctx.a, 'g3', 'guest').join()
  ctx.client(ctx.b, 'g0', 'guest').join() // same instant as g3: ties go by user id
  exchange(ctx)
  assert.is(ctx.a.summary().guestCount, 4)
  assert.is(ctx.b.summary().guestCount, 4)
  assert.equal(ctx.a.guestsOverLimit(2, 0), ['g3'])
  assert.equal(ctx.b.guestsOverLimit(2, 0), ['g0'])
  assert.equal(ctx.a.guestsOverLimit(3, 0), ['g3'])
  assert.equal(ctx.b.guestsOverLimit(3, 0), [])
  assert.equal(ctx.a.guestsOverLimit(4, 0), [])
  assert.equal(ctx.a.guestsOverLimit(2, 3500), [], 'guests connected for longer stay')
})

C.run()
