/**
 * Presence across the nodes of a cluster (contract §8 promise 3, docs/cluster.md "Presence"):
 * real `parley` processes on one PostgreSQL schema and the machine's Redis, stock y-websocket
 * providers. Stock clients drop a state they hear nothing of for 30 s by themselves, so every
 * removal here is awaited for less than that: it must come from the server.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connectPeer, connectRaw, waitFor, type Peer, type RawClient } from '../../helpers/clients.ts'
import { startCluster, type TestCluster } from '../../helpers/cluster.ts'
import type { RunningServer } from '../../helpers/process.ts'
import { REDIS_URL } from '../../helpers/redis.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'

const P = suite<{ cluster?: TestCluster }>('presence across nodes')
P.after.each(async ctx => {
  const cluster = ctx.cluster
  ctx.cluster = undefined
  await cluster?.stop()
})

interface SeenState { id?: string, name?: string, role?: string, typing?: boolean }

/** The other states a stock provider holds, as its app sees them. */
const seen = (peer: Peer): SeenState[] => {
  const out: SeenState[] = []
  for (const [clientId, s] of peer.provider.awareness.getStates()) {
    if (clientId === peer.doc.clientID || s.user === undefined) continue
    out.push({ id: s.user.id, name: s.user.name, role: s.user.role, typing: s.typing })
  }
  return out
}
const sees = (peer: Peer, userId: string): SeenState | undefined => seen(peer).find(s => s.id === userId)

/** The server's own awareness state as a provider holds it. */
const serverState = (peer: Peer): { guestCount: number, participantCount: number } | undefined => {
  for (const s of peer.provider.awareness.getStates().values()) if (s.parley !== undefined) return s.parley
  return undefined
}

interface Presence { participants: string[], guestCount: number, guests: string[] }
const presence = async (cluster: TestCluster, node: RunningServer, conv: string): Promise<Presence> => {
  const r = await cluster.api(node, 'GET', `/v1/conversations/${conv}/presence`)
  assert.is(r.status, 200, JSON.stringify(r.body))
  return { participants: [...r.body.participants].sort(), guestCount: r.body.guestCount, guests: [...r.body.guests].sort() }
}
/** Polls the presence endpoint of `node` until it answers `expected`. */
const presenceBecomes = async (cluster: TestCluster, node: RunningServer, conv: string, expected: Presence, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  let last: Presence | null = null
  while (Date.now() < deadline) {
    last = await presence(cluster, node, conv)
    if (JSON.stringify(last) === JSON.stringify(expected)) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  assert.equal(last, expected, `presence on ${node.url}`)
}

P('a stock provider on node A sees the names and typing of peers on node B, and their removal when they leave; a node loading the room later sees them at once', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/p1', { participants: ['alice', 'bob'], guestAccess: 'write' })).status, 201)
  const alice = connectPeer(a.wsUrl, 'p1', await cluster.token('alice'))
  const bob = connectPeer(b.wsUrl, 'p1', await cluster.token('bob'))
  const guest = connectPeer(b.wsUrl, 'p1', await cluster.token('visitor'), { guest: '1' })
  await Promise.all([alice.synced, bob.synced, guest.synced])
  alice.provider.awareness.setLocalState({ user: { name: 'Alice' } })
  bob.provider.awareness.setLocalState({ user: { name: 'Bob', id: 'alice', role: 'admin' }, typing: true })
  guest.provider.awareness.setLocalState({ user: { name: 'Vic' } })

  await waitFor(() => sees(alice, 'bob')?.typing === true && sees(alice, 'visitor') !== undefined, 10_000, 'alice on A sees bob and the guest of B')
  // As B checked it: user.id and role are the server's, whatever bob claimed.
  assert.equal(sees(alice, 'bob'), { id: 'bob', name: 'Bob', role: 'participant', typing: true })
  assert.equal(sees(alice, 'visitor'), { id: 'visitor', name: 'Vic', role: 'guest', typing: undefined })
  assert.is(seen(alice).filter(s => s.id === 'alice').length, 0, 'nobody forged alice')
  await waitFor(() => sees(bob, 'alice')?.name === 'Alice' && sees(guest, 'alice')?.name === 'Alice', 10_000, 'peers on B see alice of A')
  assert.is(sees(guest, 'bob')?.name, 'Bob', 'the guest sees the participant of its own node')
  await waitFor(() => serverState(alice)?.guestCount === 1 && serverState(alice)?.participantCount === 2, 10_000, 'A’s server state counts B’s peers')

  // bob stops typing, then leaves: both reach A well before a stock client's own 30 s timeout.
  bob.provider.awareness.setLocalStateField('typing', false)
  await waitFor(() => sees(alice, 'bob')?.typing === false, 10_000, 'typing false reaches A')

  // A third node loads the conversation now: its first peer sees everyone at once.
  const c = await cluster.spawn()
  const carol = connectPeer(c.wsUrl, 'p1', await cluster.token('alice'))
  await carol.synced
  await waitFor(() => sees(carol, 'bob') !== undefined && sees(carol, 'visitor') !== undefined && seen(carol).some(s => s.name === 'Alice'), 10_000, 'a peer on C sees the peers of A and B')

  bob.destroy()
  guest.destroy()
  await waitFor(() => sees(alice, 'bob') === undefined && sees(alice, 'visitor') === undefined, 10_000, 'the removals reach A')
  await waitFor(() => sees(carol, 'bob') === undefined && sees(carol, 'visitor') === undefined, 10_000, 'and C')
  await waitFor(() => serverState(alice)?.guestCount === 0, 10_000, 'A counts no guest')
  assert.equal(alice.closes, [])
  alice.destroy()
  carol.destroy()
})

P('the presence endpoint on any node lists the participants and guests of every node', async ctx => {
  const cluster = ctx.cluster = await startCluster(3)
  const [a, b, c] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/p2', { participants: ['alice', 'bob', 'carol'], guestAccess: 'read' })).status, 201)
  const peers = [
    connectPeer(a.wsUrl, 'p2', await cluster.token('alice')),
    connectPeer(b.wsUrl, 'p2', await cluster.token('bob')),
    connectPeer(a.wsUrl, 'p2', await cluster.token('g1'), { guest: '1' }),
    connectPeer(b.wsUrl, 'p2', await cluster.token('g2'), { guest: '1' }),
    connectPeer(b.wsUrl, 'p2', await cluster.token('g1'), { guest: '1' }) // g1 again, on another node: one guest
  ]
  await Promise.all(peers.map(p => p.synced))
  const all = { participants: ['alice', 'bob'], guestCount: 2, guests: ['g1', 'g2'] }
  // C serves no peer of p2: it loads the room for the request and reads the others' presence.
  for (const node of [a, b, c]) await presenceBecomes(cluster, node, 'p2', all)
  peers[1].destroy()
  peers[3].destroy()
  for (const node of [a, b, c]) await presenceBecomes(cluster, node, 'p2', { participants: ['alice'], guestCount: 1, guests: ['g1'] })
  for (const p of peers) p.destroy()
})

P('maxGuests counts the cluster: of guests joining two nodes in the same instant, those past the limit are refused or closed with 4409', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/p3', { participants: ['alice'], guestAccess: 'read' })).status, 201)
  assert.is((await cluster.api(a, 'PATCH', '/v1/settings', { maxGuests: 2 })).status, 200)
  for (let i = 0; i < 100 && (await cluster.api(b, 'GET', '/v1/settings')).body.maxGuests !== 2; i++) await new Promise(resolve => setTimeout(resolve, 50))
  // A participant on each node keeps the room loaded between rounds.
  const keep = [connectPeer(a.wsUrl, 'p3', await cluster.token('alice')), connectPeer(b.wsUrl, 'p3', await cluster.token('alice'))]
  await Promise.all(keep.map(p => p.synced))
  for (let round = 0; round < 3; round++) {
    const names = [0, 1, 2, 3].map(i => `r${round}-g${i}`)
    const tokens = await Promise.all(names.map(async n => await cluster.token(n)))
    // Four guests at once, two on each node: at most two may stay.
    const guests: RawClient[] = names.map((_, i) => connectRaw(`${(i % 2 === 0 ? a : b).wsUrl}/p3?guest=1&token=${tokens[i]}`))
    const outcome = guests.map(() => ({ closed: null as null | { code: number, reason: string } }))
    guests.forEach((g, i) => { void g.closed.then(c => { outcome[i].closed = c }) })
    await waitFor(() => outcome.filter(o => o.closed !== null).length >= 2, 15_000, 'two guests refused or closed')
    const staying = names.filter((_, i) => outcome[i].closed === null)
    for (const o of outcome) if (o.closed !== null) assert.equal(o.closed, { code: 4409, reason: 'GUEST_LIMIT' })
    assert.is(staying.length, 2)
    for (const node of [a, b]) await presenceBecomes(cluster, node, 'p3', { participants: ['alice'], guestCount: 2, guests: staying.sort() })
    assert.is(outcome.filter(o => o.closed === null).length, 2, 'the two others stay')
    for (const g of guests) g.ws.close()
    for (const node of [a, b]) await presenceBecomes(cluster, node, 'p3', { participants: ['alice'], guestCount: 0, guests: [] })
  }
  for (const p of keep) p.destroy()
})

P('a node killed with -9: its peers’ states and guests vanish on the other nodes once its presence expires', async ctx => {
  const cluster = ctx.cluster = await startCluster(2, { env: { PARLEY_PRESENCE_TTL_MS: '2000' } })
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/p4', { participants: ['alice', 'bob'], guestAccess: 'read' })).status, 201)
  const alice = connectPeer(a.wsUrl, 'p4', await cluster.token('alice'))
  const bob = connectPeer(b.wsUrl, 'p4', await cluster.token('bob'))
  const guest = connectPeer(b.wsUrl, 'p4', await cluster.token('visitor'), { guest: '1' })
  await Promise.all([alice.synced, bob.synced, guest.synced])
  bob.provider.awareness.setLocalState({ user: { name: 'Bob' }, typing: true })
  await waitFor(() => sees(alice, 'bob')?.typing === true && sees(alice, 'visitor') !== undefined, 10_000, 'alice sees B’s peers')
  await presenceBecomes(cluster, a, 'p4', { participants: ['alice', 'bob'], guestCount: 1, guests: ['visitor'] })

  b.child.kill('SIGKILL')
  await b.exited
  // 2 s of TTL, then a tick: far below the 30 s after which alice's provider would drop them itself.
  await waitFor(() => sees(alice, 'bob') === undefined && sees(alice, 'visitor') === undefined, 15_000, 'B’s peers vanish on A')
  await presenceBecomes(cluster, a, 'p4', { participants: ['alice'], guestCount: 0, guests: [] }, 5000)
  assert.is(serverState(alice)?.guestCount, 0)
  for (const p of [alice, bob, guest]) p.destroy()
})

P('Redis unreachable from node B for a while: each side forgets or freezes the other, and once it is back both see each other’s latest states', async ctx => {
  const cluster = ctx.cluster = await startCluster(1, { env: { PARLEY_PRESENCE_TTL_MS: '2000' } })
  const proxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname)
  try {
    const a = cluster.nodes[0]
    const b = await cluster.spawn({ redis: `redis://127.0.0.1:${proxy.port}` })
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/p5', { participants: ['alice', 'bob'] })).status, 201)
    const alice = connectPeer(a.wsUrl, 'p5', await cluster.token('alice'))
    const bob = connectPeer(b.wsUrl, 'p5', await cluster.token('bob'))
    await Promise.all([alice.synced, bob.synced])
    alice.provider.awareness.setLocalState({ user: { name: 'Alice' } })
    bob.provider.awareness.setLocalState({ user: { name: 'Bob' } })
    await waitFor(() => sees(alice, 'bob')?.name === 'Bob' && sees(bob, 'alice')?.name === 'Alice', 10_000, 'both see each other')

    await proxy.stop()
    bob.provider.awareness.setLocalState({ user: { name: 'Bob, cut off' } })
    alice.provider.awareness.setLocalState({ user: { name: 'Alice' }, typing: true })
    // B renews nothing any more: A forgets bob once B's liveness key expires (2 s here).
    await waitFor(() => sees(alice, 'bob') === undefined, 15_000, 'A forgets the peers of a node it cannot hear')
    assert.is(sees(bob, 'alice')?.typing, undefined, 'B cannot hear alice type')

    await proxy.start()
    await waitFor(() => sees(alice, 'bob')?.name === 'Bob, cut off', 15_000, 'A sees bob’s latest state once B is back')
    await waitFor(() => sees(bob, 'alice')?.typing === true, 15_000, 'and B alice’s')
    await presenceBecomes(cluster, a, 'p5', { participants: ['alice', 'bob'], guestCount: 0, guests: [] })
    await presenceBecomes(cluster, b, 'p5', { participants: ['alice', 'bob'], guestCount: 0, guests: [] })
    alice.destroy()
    bob.destroy()
  } finally {
    await proxy.start()
    ctx.cluster = undefined
    await cluster.stop()
    await proxy.stop()
  }
})

P.run()
