/**
 * Cluster mode (contract §8, docs/cluster.md): real `parley` processes sharing one PostgreSQL
 * schema and the machine's Redis. Stock providers on different nodes, REST on any node, and
 * conflicting writes on two nodes at once.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { connectPeer, connectRaw, sendMessage, texts, waitFor } from '../../helpers/clients.ts'
import { CLUSTER_SECRET, startCluster, startClusterWithCuttableRedis, type TestCluster } from '../../helpers/cluster.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'
import { REDIS_URL } from '../../helpers/redis.ts'
import { createTestSchema, PG_URL } from '../../helpers/postgres.ts'
import { runServer } from '../../helpers/process.ts'
import { assertNothingLost, killMidBurst } from '../../helpers/burst.ts'
import { messagesOf } from '../../../shared/doc.ts'
import { changesOf, connectRawPeer } from '../../helpers/crafted.ts'
import { UNLIMITED_RATE } from '../../helpers/server.ts'

const C = suite<{ cluster?: TestCluster }>('cluster mode')
C.after.each(async ctx => {
  // uvu shares one context across a suite's tests: each test's cluster is stopped once.
  const cluster = ctx.cluster
  ctx.cluster = undefined
  await cluster?.stop()
})

/** Every message's text as REST on `node` pages them, oldest first. */
const restTexts = async (cluster: TestCluster, node: number, conv: string): Promise<string[]> => {
  const out: string[] = []
  let before = ''
  for (let page = 0; page < 100; page++) {
    const r = await cluster.api(cluster.nodes[node], 'GET', `/v1/conversations/${conv}/messages?limit=100${before}`)
    assert.is(r.status, 200, JSON.stringify(r.body))
    out.unshift(...r.body.data.map((m: { text: string }) => m.text))
    if (r.body.hasMore !== true || r.body.data.length === 0) return out
    before = `&before=${encodeURIComponent(r.body.data[0].id)}`
  }
  throw new Error('too many pages')
}

C('stock providers on two nodes converge both ways; REST on a third node sees every acknowledged write', async ctx => {
  const cluster = ctx.cluster = await startCluster(3)
  const [a, b] = cluster.nodes
  assert.match(a.output(), /"redis":"redis:\/\/127\.0\.0\.1:6379"/)
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })).status, 201)
  const alice = connectPeer(a.wsUrl, 'c1', await cluster.token('alice'))
  const bob = connectPeer(b.wsUrl, 'c1', await cluster.token('bob'))
  await Promise.all([alice.synced, bob.synced])
  sendMessage(alice.doc, 'alice', 'from A')
  await waitFor(() => texts(bob.doc).includes('from A'), 5000, 'bob on B receives alice on A')
  sendMessage(bob.doc, 'bob', 'from B')
  await waitFor(() => texts(alice.doc).includes('from B'), 5000, 'alice on A receives bob on B')
  const posted = await cluster.api(cluster.nodes[2], 'POST', '/v1/conversations/c1/messages', [{ text: 'by REST on C', sender: 'alice', type: 'UserMessage' }])
  assert.is(posted.status, 201)
  await waitFor(() => texts(alice.doc).includes('by REST on C') && texts(bob.doc).includes('by REST on C'), 5000, 'a REST write on C reaches both')
  assert.equal(texts(alice.doc), texts(bob.doc))
  for (const node of [0, 1, 2]) assert.equal(await restTexts(cluster, node, 'c1'), texts(alice.doc), `REST on node ${node}`)
  assert.equal(alice.closes, [])
  assert.equal(bob.closes, [])
  alice.destroy()
  bob.destroy()
})

C('3 nodes with concurrent writers converge to the same messages in the same order on every node and in REST', async ctx => {
  const cluster = ctx.cluster = await startCluster(3)
  const users = ['u0', 'u1', 'u2']
  assert.is((await cluster.api(cluster.nodes[0], 'PUT', '/v1/conversations/busy', { participants: users })).status, 201)
  // Writers as fast as they go: the message rate limit (tested in abuse.test.ts) is lifted on every node.
  assert.is((await cluster.api(cluster.nodes[0], 'PATCH', '/v1/settings', UNLIMITED_RATE)).status, 200)
  for (const node of cluster.nodes) {
    const deadline = Date.now() + 5000
    while ((await cluster.api(node, 'GET', '/v1/settings')).body.messageRate.burst !== UNLIMITED_RATE.messageRate.burst) {
      assert.ok(Date.now() < deadline, 'settings reached every node')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  const peers = await Promise.all(users.map(async (u, i) => connectPeer(cluster.nodes[i].wsUrl, 'busy', await cluster.token(u))))
  await Promise.all(peers.map(p => p.synced))
  const PER = 60
  for (let k = 0; k < PER; k++) {
    for (const [i, p] of peers.entries()) sendMessage(p.doc, users[i], `${users[i]}-${k}`)
    if (k % 5 === 4) await new Promise(resolve => setTimeout(resolve, 5))
  }
  await waitFor(() => peers.every(p => texts(p.doc).length === PER * 3), 20_000, 'every peer has every message')
  const order = texts(peers[0].doc)
  for (const p of peers) assert.equal(texts(p.doc), order, 'the same order everywhere')
  for (const node of [0, 1, 2]) assert.equal(await restTexts(cluster, node, 'busy'), order, `REST on node ${node}`)
  for (const p of peers) assert.equal(p.closes, [])
  for (const p of peers) p.destroy()
})

C('the same message id written on two nodes at once: exactly one is accepted, the other writer is refused', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/dup', { participants: ['alice', 'bob'] })).status, 201)
  for (let round = 0; round < 5; round++) {
    const alice = connectPeer(a.wsUrl, 'dup', await cluster.token('alice'))
    const bob = connectPeer(b.wsUrl, 'dup', await cluster.token('bob'))
    await Promise.all([alice.synced, bob.synced])
    const id = `same-${round}`
    sendMessage(alice.doc, 'alice', `alice ${round}`, id)
    sendMessage(bob.doc, 'bob', `bob ${round}`, id)
    await waitFor(() => alice.closes.length + bob.closes.length > 0, 10_000, 'one writer is refused')
    const refused = [...alice.closes, ...bob.closes]
    assert.is(refused.length, 1, JSON.stringify(refused))
    assert.equal(refused[0], { code: 4403, reason: 'DUPLICATE_MESSAGE_ID' })
    const stored = (await cluster.api(b, 'GET', '/v1/conversations/dup/messages?limit=100')).body.data.filter((m: { id: string }) => m.id === id)
    assert.is(stored.length, 1, 'one message with that id is stored')
    const winner = alice.closes.length === 0 ? 'alice' : 'bob'
    assert.is(stored[0].senderId, winner)
    alice.destroy()
    bob.destroy()
  }
})

C('a Yjs client id used on node A by alice is refused for bob on node B, however fresh B’s copy', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/ids', { participants: ['alice', 'bob'] })).status, 201)
  // B loads the conversation first, so its copy exists before alice writes on A.
  const watcher = connectPeer(b.wsUrl, 'ids', await cluster.token('bob'))
  await watcher.synced
  const aliceDoc = new Y.Doc()
  aliceDoc.clientID = 424242
  const alice = connectPeer(a.wsUrl, 'ids', await cluster.token('alice'), {}, aliceDoc)
  await alice.synced
  sendMessage(alice.doc, 'alice', 'mine')
  await waitFor(() => texts(watcher.doc).includes('mine'), 5000, 'B has alice’s message')
  // bob's copy holds alice's message (so bob writes past her clock), but B never bound her id:
  // only the owners read inside the locked flush know it.
  const thief = await connectRawPeer(`${b.wsUrl}/ids?token=${await cluster.token('bob')}`, 424242)
  assert.ok(texts(thief.doc).includes('mine'))
  thief.sendUpdate(changesOf(thief.doc, d => { messagesOf(d).push([{ id: 'stolen', senderId: 'bob', text: 'stolen id', createdAt: Date.now(), type: 'UserMessage' }]) }))
  assert.equal(await thief.closed, { code: 4403, reason: 'CLIENT_ID_TAKEN' })
  const all = await restTexts(cluster, 0, 'ids')
  assert.ok(all.includes('mine'))
  assert.not.ok(all.includes('stolen id'))
  alice.destroy()
  watcher.destroy()
})

C('rights, settings, bans and deletion made on node A close the affected connections on node B', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/r1', { participants: ['alice', 'bob', 'carol'], guestAccess: 'write' })).status, 201)
  const bob = connectPeer(b.wsUrl, 'r1', await cluster.token('bob'))
  const carol = connectPeer(b.wsUrl, 'r1', await cluster.token('carol'))
  const guest = connectPeer(b.wsUrl, 'r1', await cluster.token('visitor'), { guest: '1' })
  await Promise.all([bob.synced, carol.synced, guest.synced])

  // A participant removed on A (a document change) is closed on B.
  assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/r1/participants/bob')).status < 300, true)
  await waitFor(() => bob.closes.length > 0, 5000, 'bob closed on B')
  assert.equal(bob.closes[0], { code: 4403, reason: 'PARTICIPANT_REMOVED' })

  // A settings change on A applies on B: guests closed, and B's REST reads the new value.
  assert.is((await cluster.api(a, 'PATCH', '/v1/settings', { browserSync: false })).status, 200)
  await waitFor(() => guest.closes.length > 0, 5000, 'the guest closed on B')
  assert.equal(guest.closes[0], { code: 4403, reason: 'GUEST_ACCESS_OFF' })
  assert.is((await cluster.api(b, 'GET', '/v1/settings')).body.browserSync, false)
  assert.is((await cluster.api(a, 'PATCH', '/v1/settings', { browserSync: true })).status, 200)
  await waitFor(() => carol.closes.length === 0, 10, 'carol stays')

  // A ban on A closes carol on B, and B refuses her afterwards (it forgot what it knew of the bans).
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/r1/bans/carol', { reason: 'spam' })).status, 200)
  await waitFor(() => carol.closes.length > 0, 5000, 'carol closed on B')
  assert.equal(carol.closes[0], { code: 4403, reason: 'BANNED' })
  carol.destroy()
  const again = connectRaw(`${b.wsUrl}/r1?token=${await cluster.token('carol')}`)
  assert.equal(await again.closed, { code: 4403, reason: 'BANNED' })

  // Deleted on A: B closes its peers with 4404 and serves the conversation no more.
  const dave = connectPeer(b.wsUrl, 'r1', await cluster.token('alice'))
  await dave.synced
  assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/r1')).status, 204)
  await waitFor(() => dave.closes.length > 0, 5000, 'closed on B')
  assert.equal(dave.closes[0], { code: 4404, reason: 'CONVERSATION_DELETED' })
  assert.is((await cluster.api(b, 'GET', '/v1/conversations/r1')).status, 404)
  for (const p of [bob, guest, dave]) p.destroy()
})

C('a write on node B to a conversation node A deleted, before B heard of it, closes with 4404, not an internal error', async () => {
  // B hears A only through the proxy: cut, B learns of the deletion only when it writes (or from
  // its periodic check, seconds later).
  const { cluster, a, b, proxy, stop } = await startClusterWithCuttableRedis()
  try {
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/gone-b', { participants: ['alice', 'bob'] })).status, 201)
    const bob = connectPeer(b.wsUrl, 'gone-b', await cluster.token('bob'))
    await bob.synced
    sendMessage(bob.doc, 'bob', 'before')
    await waitFor(() => bob.provider.synced && texts(bob.doc).includes('before'), 5000, 'written')
    for (let tries = 0; (await cluster.api(a, 'GET', '/v1/conversations/gone-b/messages')).body.data?.length !== 1; tries++) {
      assert.ok(tries < 250, 'stored')
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await proxy.stop()
    assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/gone-b')).status, 204)
    sendMessage(bob.doc, 'bob', 'after the deletion')
    await waitFor(() => bob.closes.length > 0, 5000, 'bob closed on B')
    assert.equal(bob.closes[0], { code: 4404, reason: 'CONVERSATION_DELETED' })
    assert.is((await cluster.api(a, 'GET', '/v1/conversations/gone-b')).status, 404, 'not brought back')
    bob.destroy()
  } finally {
    await stop()
  }
})

C('Redis unreachable from node B for a while: B still converges (it reads the store every second), and after Redis is back too', async () => {
  const { cluster, a, b, proxy, stop } = await startClusterWithCuttableRedis()
  try {
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/cut', { participants: ['alice', 'bob'] })).status, 201)
    const alice = connectPeer(a.wsUrl, 'cut', await cluster.token('alice'))
    const bob = connectPeer(b.wsUrl, 'cut', await cluster.token('bob'))
    await Promise.all([alice.synced, bob.synced])
    sendMessage(alice.doc, 'alice', 'before')
    await waitFor(() => texts(bob.doc).includes('before'), 5000, 'before the cut')
    await proxy.stop()
    for (let i = 0; i < 5; i++) sendMessage(alice.doc, 'alice', `during ${i}`)
    sendMessage(bob.doc, 'bob', 'bob during')
    await waitFor(() => texts(bob.doc).includes('during 4') && texts(alice.doc).includes('bob during'), 10_000, 'both ways without Redis on B')
    // A connection joining B while B does not hear the bus reads the store first: its first
    // sync holds what A acknowledged a moment before (B's periodic read may be up to 1 s away).
    const late = await cluster.api(a, 'POST', '/v1/conversations/cut/messages', [{ text: 'acknowledged on A', sender: 'alice', type: 'UserMessage' }])
    assert.is(late.status, 201)
    const joiner = connectPeer(b.wsUrl, 'cut', await cluster.token('bob'))
    await joiner.synced
    assert.ok(texts(joiner.doc).includes('acknowledged on A'), 'in the first sync')
    joiner.destroy()
    await proxy.start()
    for (let i = 0; i < 5; i++) sendMessage(alice.doc, 'alice', `after ${i}`)
    await waitFor(() => texts(bob.doc).includes('after 4'), 10_000, 'after Redis is back')
    assert.equal(texts(bob.doc), texts(alice.doc))
    assert.equal(await restTexts(cluster, 1, 'cut'), texts(alice.doc))
    assert.equal([...alice.closes, ...bob.closes], [])
    alice.destroy()
    bob.destroy()
  } finally {
    await stop()
  }
})

C('PostgreSQL unreachable from node B: B refuses writes (1013, 503) while A goes on; once it is back B resumes by itself and converges', async ctx => {
  const cluster = ctx.cluster = await startCluster(1)
  const proxy = await startTcpProxy(Number(new URL(PG_URL).port || 5432), new URL(PG_URL).hostname)
  try {
    const a = cluster.nodes[0]
    const b = await cluster.spawn({ postgres: cluster.schema.urlVia(proxy.port) })
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/pg', { participants: ['alice', 'bob'] })).status, 201)
    const alice = connectPeer(a.wsUrl, 'pg', await cluster.token('alice'))
    const bob = connectPeer(b.wsUrl, 'pg', await cluster.token('bob'))
    await Promise.all([alice.synced, bob.synced])
    await proxy.stop()
    const during = sendMessage(bob.doc, 'bob', 'bob while B cannot reach PostgreSQL')
    await waitFor(() => bob.closes.some(c => c.code === 1013), 10_000, 'bob asked to retry later')
    assert.is((await cluster.api(b, 'GET', '/healthz')).status, 503)
    assert.is((await cluster.api(b, 'POST', '/v1/conversations/pg/messages', [{ text: 'refused', sender: 'bob', type: 'UserMessage' }])).status, 503)
    sendMessage(alice.doc, 'alice', 'alice on A meanwhile')
    assert.is((await cluster.api(a, 'POST', '/v1/conversations/pg/messages', [{ text: 'REST on A meanwhile', sender: 'alice', type: 'UserMessage' }])).status, 201)
    await proxy.start()
    for (let i = 0; i < 100 && (await cluster.api(b, 'GET', '/healthz')).status !== 200; i++) await new Promise(resolve => setTimeout(resolve, 100))
    assert.is((await cluster.api(b, 'GET', '/healthz')).status, 200, 'B resumed by itself')
    await waitFor(() => texts(bob.doc).includes('alice on A meanwhile') && texts(bob.doc).includes('REST on A meanwhile'), 10_000, 'B catches up')
    await waitFor(() => messagesOf(alice.doc).toArray().some(m => m.id === during.id), 15_000, 'bob’s refused write arrives once B is back')
    await waitFor(() => texts(bob.doc).length === texts(alice.doc).length, 5000, 'the same length')
    assert.equal(texts(bob.doc), texts(alice.doc))
    assert.not.ok(texts(alice.doc).includes('refused'))
    alice.destroy()
    bob.destroy()
  } finally {
    await proxy.start()
    ctx.cluster = undefined
    await cluster.stop()
    await proxy.stop()
  }
})

C('kill -9 of a node mid-burst loses nothing a reader saw; a reader on another node had it all, and a writer moves there', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  // A reader on B during the burst on A: what it saw came through the cluster.
  assert.is((await cluster.api(b, 'PUT', '/v1/conversations/burst', { participants: ['w', 'r'] })).status, 201)
  const far = connectPeer(b.wsUrl, 'burst', await cluster.token('r'))
  await far.synced
  const received = await killMidBurst(a, CLUSTER_SECRET)
  // B goes on serving what A committed, whether it heard of it before A died or reads it now.
  await waitFor(() => messagesOf(far.doc).length >= received.length, 5000, 'the reader on B has at least what the reader on A had')
  const farSeen = messagesOf(far.doc).toArray().map(m => m.id)
  await assertNothingLost(b, CLUSTER_SECRET, [...new Set([...received, ...farSeen])])
  // The writer comes back on B with what it holds; everything it wrote on A that was stored stays once.
  const writer = connectPeer(b.wsUrl, 'burst', await cluster.token('w'))
  await writer.synced
  sendMessage(writer.doc, 'w', 'after the crash')
  await waitFor(() => texts(far.doc).includes('after the crash'), 5000, 'a writer that moved to B is served')
  const ids = messagesOf(far.doc).toArray().map(m => m.id)
  assert.is(new Set(ids).size, ids.length, 'no message twice')
  writer.destroy()
  far.destroy()
})

C('guests are counted cluster-wide: presence endpoint, maxGuests, a guest that leaves, and the guests of a node killed with -9', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/g', { participants: ['alice'], guestAccess: 'write' })).status, 201)
  const presence = async (node: typeof a): Promise<{ guestCount: number, guests: string[] }> => (await cluster.api(node, 'GET', '/v1/conversations/g/presence')).body
  const g1 = connectPeer(b.wsUrl, 'g', await cluster.token('g1'), { guest: '1' })
  const g2 = connectPeer(a.wsUrl, 'g', await cluster.token('g2'), { guest: '1' })
  await Promise.all([g1.synced, g2.synced])
  for (let i = 0; i < 100 && (await presence(a)).guestCount !== 2; i++) await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal((await presence(a)).guests.sort(), ['g1', 'g2'], 'A lists the guest of B')
  for (let i = 0; i < 100 && (await presence(b)).guestCount !== 2; i++) await new Promise(resolve => setTimeout(resolve, 100))
  assert.is((await presence(b)).guestCount, 2, 'and B the guest of A')

  // maxGuests counts the cluster: a third guest is refused on either node; a new tab of g1 on A is not.
  assert.is((await cluster.api(a, 'PATCH', '/v1/settings', { maxGuests: 2 })).status, 200)
  for (let i = 0; i < 100 && (await cluster.api(b, 'GET', '/v1/settings')).body.maxGuests !== 2; i++) await new Promise(resolve => setTimeout(resolve, 50))
  for (const node of [a, b]) {
    const g3 = connectRaw(`${node.wsUrl}/g?guest=1&token=${await cluster.token('g3')}`)
    assert.equal(await g3.closed, { code: 4409, reason: 'GUEST_LIMIT' })
  }
  const tab = connectPeer(a.wsUrl, 'g', await cluster.token('g1'), { guest: '1' })
  await tab.synced
  assert.equal(tab.closes, [])
  tab.destroy()

  // A guest that leaves vanishes on the other node.
  g2.destroy()
  for (let i = 0; i < 100 && (await presence(b)).guestCount !== 1; i++) await new Promise(resolve => setTimeout(resolve, 100))
  assert.equal((await presence(b)).guests, ['g1'])

  // B dies: its guest vanishes on A within 30 s (its entry expires after 10 s).
  b.child.kill('SIGKILL')
  await b.exited
  for (let i = 0; i < 300 && (await presence(a)).guestCount !== 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
  assert.is((await presence(a)).guestCount, 0)
  g1.destroy()
})

C('--redis without --postgres, and an unreachable Redis at start, are one line and exit 1', async () => {
  let r = await runServer(['--port', '0', '--redis', REDIS_URL])
  assert.is(r.code, 1)
  assert.match(r.stderr, /--redis needs --postgres/)
  const schema = await createTestSchema()
  try {
    r = await runServer(['--port', '0', '--postgres', schema.url, '--redis', 'redis://:hunter2-secret@127.0.0.1:1', '--secret', CLUSTER_SECRET])
    assert.is(r.code, 1)
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /cannot use Redis at redis:\/\/127\.0\.0\.1:1/)
    assert.not.match(r.stderr, /hunter2/)
  } finally {
    await schema.drop()
  }
})

C.run()
