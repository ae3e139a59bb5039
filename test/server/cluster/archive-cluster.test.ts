/**
 * Cluster mode: updates that name archived messages are judged against the archive in
 * PostgreSQL, whichever node archived them. A cluster flush reads the archive once for every id
 * its waiting updates mention; these tests hold that batch read to the rules of one node: an
 * archived message's id cannot be taken again, and replies and reactions to archived messages are
 * accepted, also several in one flush.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type * as Y from 'yjs'
import { connectPeer, sendMessage, waitFor } from '../../helpers/clients.ts'
import { startCluster, type TestCluster } from '../../helpers/cluster.ts'
import { UNLIMITED_RATE } from '../../helpers/server.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'

const A = suite<{ cluster?: TestCluster }>('cluster mode: the archive')
A.after.each(async ctx => {
  const cluster = ctx.cluster
  ctx.cluster = undefined
  await cluster?.stop()
})

A('on node B: an archived id is refused; replies and reactions to archived messages are taken, several in one flush', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/arch', { participants: ['alice', 'bob', 'carol'] })).status, 201)
  assert.is((await cluster.api(a, 'PATCH', '/v1/settings', UNLIMITED_RATE)).status, 200)
  const bob = connectPeer(b.wsUrl, 'arch', await cluster.token('bob'))
  await bob.synced
  const idOf = new Map<string, string>()
  messagesOf(bob.doc).observe((event: Y.YArrayEvent<Message>) => {
    for (const item of event.changes.added) for (const m of item.content.getContent() as Message[]) idOf.set(m.text, m.id)
  })
  // Node A archives: more than the live window (1,000 + 500 before the oldest move).
  const N = 1700
  for (let i = 0; i < N; i += 10) {
    const batch = Array.from({ length: 10 }, (_, j) => ({ text: `old-${i + j}`, sender: 'alice', type: 'UserMessage' }))
    const posted = await cluster.api(a, 'POST', '/v1/conversations/arch/messages', batch)
    assert.is(posted.status, 201, JSON.stringify(posted.body))
  }
  await waitFor(() => idOf.size === N && !messagesOf(bob.doc).toArray().some(m => m.text === 'old-0'), 20_000, 'the oldest messages archived on bob’s copy')
  const [old0, old1, old2] = ['old-0', 'old-1', 'old-2'].map(t => idOf.get(t) as string)

  // One burst on B: a reply to an archived message, a reaction to another, a plain message.
  const reply: Message = { id: 'reply-1', senderId: 'bob', text: 'a reply', createdAt: Date.now(), type: 'UserMessage', referencedMessageId: old0 }
  messagesOf(bob.doc).push([reply])
  bob.doc.getMap('reactions').set(`${old1}/bob`, ['👍'])
  sendMessage(bob.doc, 'bob', 'after the reply', 'plain-1')
  for (let tries = 0; (await cluster.api(a, 'GET', '/v1/conversations/arch/messages/plain-1')).status !== 200; tries++) {
    assert.ok(tries < 500, 'the burst stored')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const stored = await cluster.api(a, 'GET', '/v1/conversations/arch/messages/reply-1')
  assert.is(stored.status, 200)
  assert.is(stored.body.referencedMessageId, old0)
  const reacted = await cluster.api(a, 'GET', `/v1/conversations/arch/messages/${old1}`)
  assert.is(reacted.status, 200)
  assert.equal(reacted.body.reactions, { '👍': ['bob'] })
  assert.equal(bob.closes, [])

  // The id of an archived message, taken again on B (by a peer whose copy never held it): refused.
  const carol = connectPeer(b.wsUrl, 'arch', await cluster.token('carol'))
  await carol.synced
  sendMessage(carol.doc, 'carol', 'fine', 'carol-1')
  sendMessage(carol.doc, 'carol', 'stolen id', old2)
  await waitFor(() => carol.closes.length > 0, 10_000, 'carol refused')
  assert.equal(carol.closes[0], { code: 4403, reason: 'DUPLICATE_MESSAGE_ID' })
  const original = await cluster.api(a, 'GET', `/v1/conversations/arch/messages/${old2}`)
  assert.is(original.body.text, 'old-2', 'the archived message is unchanged')
  assert.is((await cluster.api(b, 'GET', '/v1/conversations/arch/messages/carol-1')).status, 200, 'what came before the refusal is kept')
  carol.destroy()
  bob.destroy()
})

A.run()
