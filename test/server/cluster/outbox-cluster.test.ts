/**
 * Webhooks and notifications in cluster mode (contract §8, promise 5): real `parley` processes
 * sharing one PostgreSQL schema and Redis, a real webhook receiver on loopback. Each event is
 * delivered once by the cluster, under one id even when its node dies between attempts; each
 * notification batch fires once, whichever nodes its messages were committed on.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { connectPeer, sendMessage, waitFor, type Peer } from '../../helpers/clients.ts'
import { startCluster, type TestCluster } from '../../helpers/cluster.ts'
import { UNLIMITED_RATE } from '../../helpers/server.ts'
import type { RunningServer } from '../../helpers/process.ts'
import type { Message } from '../../../shared/schema.ts'
import { startReceiver, type Receiver } from '../webhooks/receiver.ts'

interface Ctx { cluster?: TestCluster, hook?: Receiver, peers: Peer[] }

const O = suite<Ctx>('cluster mode: webhooks and notifications', { peers: [] })
O.after.each(async ctx => {
  for (const p of ctx.peers.splice(0)) p.destroy()
  const cluster = ctx.cluster
  ctx.cluster = undefined
  // A node killed by the test is skipped by stop().
  await cluster?.stop()
  await ctx.hook?.close()
  ctx.hook = undefined
})

/** Whether `actual` has every field of `wanted` (recursively). */
const holds = (actual: unknown, wanted: unknown): boolean => {
  if (typeof wanted !== 'object' || wanted === null) return actual === wanted
  if (typeof actual !== 'object' || actual === null) return false
  return Object.entries(wanted).every(([k, v]) => holds((actual as Record<string, unknown>)[k], v))
}

/** Changes the settings on one node and waits until every live node applies them. */
const setEverywhere = async (cluster: TestCluster, patch: Record<string, unknown>): Promise<void> => {
  assert.is((await cluster.api(cluster.nodes[0], 'PATCH', '/v1/settings', patch)).status, 200)
  for (const node of cluster.nodes) {
    const deadline = Date.now() + 10_000
    for (;;) {
      const s = (await cluster.api(node, 'GET', '/v1/settings')).body as Record<string, unknown>
      if (holds(s, patch)) break
      assert.ok(Date.now() < deadline, 'the settings reached every node')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
}

/** Rows left in the shared store's section (`prefix`: outbox records `v1!o!`, pending batches `v1!p!`). */
const rowsLeft = async (cluster: TestCluster, section: string, prefix: string): Promise<number> => {
  const q = cluster.schema.admin
  const [{ n }] = await q`SELECT count(*)::int AS n FROM ${q(cluster.schema.schema)}.sections WHERE section = ${section} AND starts_with(key, ${prefix})`
  return n as number
}

const waitUntil = async (check: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const alive = (n: RunningServer): boolean => n.child.exitCode === null && n.child.signalCode === null

/** The event ids the receiver saw for each message (by message id), over every attempt. */
const idsByMessage = (hook: Receiver, type: string): Map<string, Set<string>> => {
  const out = new Map<string, Set<string>>()
  for (const r of hook.received) {
    if (r.body.type !== type) continue
    const m = (r.body.data as { message?: Message }).message
    if (m === undefined) continue
    const ids = out.get(m.id) ?? new Set<string>()
    ids.add(r.body.id)
    out.set(m.id, ids)
  }
  return out
}

O('3 nodes, writers on every node, a 4th node starting while events wait for a retry: each event is delivered once', async ctx => {
  const hook = ctx.hook = await startReceiver()
  hook.status = 503 // every first attempt fails: the events wait in the outbox for their retry
  const cluster = ctx.cluster = await startCluster(3)
  const users = ['u0', 'u1', 'u2']
  await setEverywhere(cluster, { ...UNLIMITED_RATE, webhookUrl: hook.url })
  assert.is((await cluster.api(cluster.nodes[0], 'PUT', '/v1/conversations/w', { participants: users })).status, 201)
  const peers = await Promise.all(users.map(async (u, i) => connectPeer(cluster.nodes[i].wsUrl, 'w', await cluster.token(u))))
  ctx.peers.push(...peers)
  await Promise.all(peers.map(p => p.synced))
  const PER = 25
  const sent: string[] = []
  for (let k = 0; k < PER; k++) {
    for (const [i, p] of peers.entries()) sent.push(sendMessage(p.doc, users[i], `${users[i]}-${k}`).id)
    if (k % 5 === 4) await new Promise(resolve => setTimeout(resolve, 5))
  }
  // A REST write on each node raises events too (queued, not staged with a document change).
  for (const [i, node] of cluster.nodes.entries()) {
    assert.is((await cluster.api(node, 'PUT', `/v1/users/rest-${i}`, { name: `Rest ${i}` })).status, 201)
  }
  await waitFor(() => idsByMessage(hook, 'message.sent').size === sent.length, 30_000, 'an attempt of every message.sent webhook')
  await waitFor(() => hook.received.filter(r => r.body.type === 'user.updated').length >= 3, 10_000, 'an attempt of the user.updated webhooks')
  // A node that starts now finds every waiting event in the store: it may deliver any of them, but not one already claimed.
  await cluster.spawn()
  hook.status = 200
  await waitFor(() => sent.every(m => hook.ok('message.sent').some(r => (r.body.data as { message: Message }).message.id === m)), 60_000, 'every message.sent delivered')
  await waitFor(() => hook.ok('user.updated').length >= 3, 30_000, 'the user.updated webhooks delivered')
  // Once the shared outbox is empty nothing can be delivered again: every record was claimed by
  // one node at a time and deleted after its delivery.
  await waitUntil(async () => await rowsLeft(cluster, 'outbox', 'v1!o!') === 0, 30_000, 'the outbox to empty')
  const byMessage = idsByMessage(hook, 'message.sent')
  assert.equal([...byMessage.keys()].sort(), [...sent].sort())
  for (const [m, ids] of byMessage) assert.is(ids.size, 1, `one event id for message ${m}`)
  const counts = new Map<string, number>()
  for (const r of hook.ok()) counts.set(r.body.id, (counts.get(r.body.id) ?? 0) + 1)
  const twice = [...counts].filter(([, n]) => n !== 1)
  assert.equal(twice, [], 'every event id was delivered (answered 2xx) exactly once')
  assert.equal(new Set(hook.received.map(r => r.body.id)), new Set(counts.keys()), 'every event that was attempted was delivered')
  assert.is(hook.ok('user.updated').length, 3)
})

O('a node killed with -9 while its receiver fails: the other nodes deliver its events, each once, under the ids it gave them', async ctx => {
  const hook = ctx.hook = await startReceiver()
  hook.status = 500
  hook.delayMs = 200 // slow and failing: the killed node is likely mid-attempt, holding claims
  const cluster = ctx.cluster = await startCluster(3)
  const [a] = cluster.nodes
  await setEverywhere(cluster, { ...UNLIMITED_RATE, webhookUrl: hook.url })
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/k', { participants: ['alice', 'bob'] })).status, 201)
  const alice = connectPeer(a.wsUrl, 'k', await cluster.token('alice'))
  ctx.peers.push(alice)
  await alice.synced
  const sent = Array.from({ length: 8 }, (_, i) => sendMessage(alice.doc, 'alice', `doomed ${i}`).id)
  await waitFor(() => idsByMessage(hook, 'message.sent').size === sent.length, 20_000, 'a failed attempt of every event')
  const firstIds = idsByMessage(hook, 'message.sent')
  a.child.kill('SIGKILL')
  await a.exited
  hook.status = 200
  // Records the dead node held are due again when its claims' lease ends (30 s); the others now.
  await waitFor(() => sent.every(m => hook.ok('message.sent').some(r => (r.body.data as { message: Message }).message.id === m)), 90_000, 'every event delivered by a survivor')
  await waitUntil(async () => await rowsLeft(cluster, 'outbox', 'v1!o!') === 0, 30_000, 'the outbox to empty')
  assert.ok(cluster.nodes.slice(1).every(alive))
  for (const m of sent) {
    const ok = hook.ok('message.sent').filter(r => (r.body.data as { message: Message }).message.id === m)
    assert.is(ok.length, 1, `message ${m} delivered once`)
    assert.ok(firstIds.get(m)?.has(ok[0].body.id), 'under the id of its first attempt')
    assert.is(idsByMessage(hook, 'message.sent').get(m)?.size, 1, 'every attempt had the same id')
  }
})

interface NotificationData { conversationId: string, recipient: { id: string }, messages: Message[] }
const notifications = (hook: Receiver, userId: string): NotificationData[] =>
  hook.ok('notification.triggered').map(r => r.body.data as unknown as NotificationData).filter(n => n.recipient.id === userId)

/** A conversation where bob and carol write (without notifications) and alice and dave, connected nowhere, are notified. */
const notifyConversation = async (cluster: TestCluster, conv: string): Promise<void> => {
  assert.is((await cluster.api(cluster.nodes[0], 'PUT', `/v1/conversations/${conv}`, { participants: ['alice', 'bob', 'carol', 'dave'] })).status, 201)
  for (const u of ['bob', 'carol']) {
    assert.is((await cluster.api(cluster.nodes[0], 'PATCH', `/v1/conversations/${conv}/participants/${u}`, { notify: false })).status, 200)
  }
}

O('messages of one conversation committed on two nodes: each recipient gets one notification holding all of them', async ctx => {
  const hook = ctx.hook = await startReceiver()
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  await setEverywhere(cluster, { ...UNLIMITED_RATE, webhookUrl: hook.url, notificationDelay: 2 })
  await notifyConversation(cluster, 'n')
  const bob = connectPeer(a.wsUrl, 'n', await cluster.token('bob'))
  const carol = connectPeer(b.wsUrl, 'n', await cluster.token('carol'))
  ctx.peers.push(bob, carol)
  await Promise.all([bob.synced, carol.synced])
  const sent: string[] = []
  for (let i = 0; i < 3; i++) {
    sent.push(sendMessage(bob.doc, 'bob', `bob on A ${i}`).id)
    sent.push(sendMessage(carol.doc, 'carol', `carol on B ${i}`).id)
  }
  await waitFor(() => notifications(hook, 'alice').length > 0 && notifications(hook, 'dave').length > 0, 20_000, 'alice and dave notified')
  // Nothing is left to fire or to deliver: no second batch can come.
  await waitUntil(async () => await rowsLeft(cluster, 'notify', 'v1!p!') === 0 && await rowsLeft(cluster, 'outbox', 'v1!o!') === 0, 20_000, 'no batch pending, nothing to deliver')
  for (const user of ['alice', 'dave']) {
    const got = notifications(hook, user)
    assert.is(got.length, 1, `${user}: one notification, not one per node`)
    assert.equal(got[0].messages.map(m => m.id).sort(), [...sent].sort(), `${user}: it holds the messages of both nodes`)
  }
  assert.equal(notifications(hook, 'bob'), [])
  assert.equal(notifications(hook, 'carol'), [])
})

O('a batch pending on a node killed with -9 fires once, from a surviving node', async ctx => {
  const hook = ctx.hook = await startReceiver()
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  await setEverywhere(cluster, { ...UNLIMITED_RATE, webhookUrl: hook.url, notificationDelay: 5 })
  await notifyConversation(cluster, 'd')
  const bob = connectPeer(a.wsUrl, 'd', await cluster.token('bob'))
  ctx.peers.push(bob)
  await bob.synced
  const sent = [sendMessage(bob.doc, 'bob', 'before the crash 1').id, sendMessage(bob.doc, 'bob', 'before the crash 2').id]
  await waitUntil(async () => await rowsLeft(cluster, 'notify', 'v1!p!') === 1, 10_000, 'the batch to be stored')
  // The messages' own webhooks delivered first (a record the dead node held would wait out its lease).
  await waitUntil(async () => await rowsLeft(cluster, 'outbox', 'v1!o!') === 0, 10_000, 'the message webhooks delivered')
  assert.equal(notifications(hook, 'alice'), [], 'not fired yet')
  a.child.kill('SIGKILL')
  await a.exited
  bob.destroy()
  await waitFor(() => notifications(hook, 'alice').length > 0, 30_000, 'alice notified by the surviving node')
  await waitUntil(async () => await rowsLeft(cluster, 'notify', 'v1!p!') === 0 && await rowsLeft(cluster, 'outbox', 'v1!o!') === 0, 20_000, 'nothing left')
  assert.ok(alive(b))
  const got = notifications(hook, 'alice')
  assert.is(got.length, 1)
  assert.equal(got[0].messages.map(m => m.id).sort(), [...sent].sort())
})

O.run()
