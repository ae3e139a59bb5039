import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { TEST_SECRET } from '../../helpers/server.ts'
import { startServerOn, type AnyTestServer, type StoreKind } from '../../helpers/store-kind.ts'
import { connectPeer, sendMessage, waitFor, type Peer } from '../../helpers/clients.ts'
import { findMessageIndex, messagesOf } from '../../../shared/doc.ts'
import { DEFAULT_DELIVERY_TUNING } from '../../../server/notify/services.ts'
import type { ServerConfig } from '../../../server/app.ts'
import type { OutboxTuning } from '../../../server/webhooks/outbox.ts'
import { verifyWebhook } from '../../../server/webhooks/sign.ts'
import { startReceiver, type Receiver } from './receiver.ts'

/**
 * Every case runs on LevelDB and on PostgreSQL (where the outbox claims each record before an
 * attempt, as every node of a cluster does).
 */
interface Ctx { kind: StoreKind, s: AnyTestServer, hook: Receiver, peers: Peer[] }

const tuned = (outbox: Partial<OutboxTuning>): Partial<ServerConfig> => ({
  delivery: { ...DEFAULT_DELIVERY_TUNING, outbox: { ...DEFAULT_DELIVERY_TUNING.outbox, retryBaseMs: 50, retryMaxMs: 400, ...outbox } }
})

const setup = async (ctx: Ctx, outbox: Partial<OutboxTuning> = {}): Promise<void> => {
  ctx.hook = await startReceiver()
  ctx.s = await startServerOn(ctx.kind, tuned(outbox))
  ctx.peers = []
  assert.is((await ctx.s.api('PATCH', '/v1/settings', { webhookUrl: ctx.hook.url, notificationDelay: 0 })).status, 200)
}

const runWebhookSuite = (kind: StoreKind): void => {
  const Hooks = suite<Ctx>(`webhooks (${kind})`, { kind } as Ctx)
  Hooks.after.each(async ctx => {
    for (const p of ctx.peers) p.destroy()
    await ctx.s.stop()
    await ctx.hook.close()
  })

  const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

  Hooks('every event type is posted as signed JSON with a unique, stable id', async ctx => {
    await setup(ctx)
    await ctx.s.api('PUT', '/v1/users/alice', { name: 'Alice' })
    await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
    const a = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token('alice'))
    ctx.peers.push(a)
    await a.synced
    const m = sendMessage(a.doc, 'alice', 'hello')
    await waitFor(() => ctx.hook.ok('notification.triggered').length === 1, 5000, 'notification for bob')
    a.doc.transact(() => {
      const i = findMessageIndex(a.doc, m.id)
      messagesOf(a.doc).delete(i, 1)
      messagesOf(a.doc).insert(i, [{ ...m, text: 'hello!', editedAt: Date.now() }])
    })
    await waitFor(() => ctx.hook.ok('message.updated').length === 1, 5000, 'message.updated')
    a.doc.transact(() => { messagesOf(a.doc).delete(findMessageIndex(a.doc, m.id), 1) })
    await waitFor(() => ctx.hook.ok('message.deleted').length === 1, 5000, 'message.deleted')
    await ctx.s.api('DELETE', '/v1/conversations/c1/participants/bob')
    await ctx.s.api('DELETE', '/v1/conversations/c1')
    await waitFor(() => ctx.hook.ok('conversation.deleted').length === 1, 5000, 'conversation.deleted')

    const types = new Set(ctx.hook.ok().map(r => r.body.type))
    assert.equal([...types].sort(), [
      'conversation.deleted', 'message.deleted', 'message.sent', 'message.updated', 'notification.triggered',
      'participant.added', 'participant.removed', 'user.updated'
    ])
    const ids = ctx.hook.ok().map(r => r.body.id)
    assert.is(new Set(ids).size, ids.length, 'ids are unique')
    const sent = ctx.hook.ok('message.sent')[0]
    assert.equal(sent.body.data, { conversationId: 'c1', message: m })
    assert.equal(ctx.hook.ok('message.deleted')[0].body.data.deletedBy, 'alice', 'a deletion names who deleted')
    assert.is(sent.headers['x-parley-event-id'], sent.body.id)
    assert.is(sent.headers['x-parley-event'], 'message.sent')

    for (const r of ctx.hook.received) {
      const ts = String(r.headers['x-parley-timestamp'])
      const sig = String(r.headers['x-parley-signature'])
      // The recipe of docs/webhooks.md, with nothing but node:crypto.
      const expected = createHmac('sha256', TEST_SECRET).update(`${ts}.${r.raw}`).digest()
      assert.ok(timingSafeEqual(expected, Buffer.from(sig, 'hex')), 'signature verifies')
      assert.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 60, 'timestamp is fresh')
      assert.ok(verifyWebhook(TEST_SECRET, ts, r.raw, sig, Date.now()))
      assert.not.ok(verifyWebhook(TEST_SECRET, ts, r.raw.replace('"', ' "'), sig, Date.now()), 'a changed body fails')
      assert.not.ok(verifyWebhook('another-secret-0123456789', ts, r.raw, sig, Date.now()), 'another secret fails')
      assert.not.ok(verifyWebhook(TEST_SECRET, ts, r.raw, sig, Date.now() + 10 * 60_000), 'a stale timestamp fails')
    }
  })

  Hooks('a failing receiver gets the same event again with growing delays until it answers 2xx', async ctx => {
    await setup(ctx)
    ctx.hook.status = 500
    await ctx.s.api('PUT', '/v1/users/alice', { name: 'Alice' })
    await waitFor(() => ctx.hook.received.length >= 4, 5000, 'four attempts')
    ctx.hook.status = 200
    await waitFor(() => ctx.hook.ok().length === 1, 5000, 'delivered')
    const attempts = ctx.hook.received
    assert.is(new Set(attempts.map(r => r.body.id)).size, 1, 'one stable id')
    const gaps = attempts.slice(1, 4).map((r, i) => r.arrivedAt - attempts[i].arrivedAt)
    assert.ok(gaps[0] >= 40 && gaps[1] >= 90 && gaps[2] >= 180, `backoff gaps ${gaps.join(', ')} ms`)
    await sleep(300)
    assert.is(ctx.hook.ok().length, 1, 'no delivery after success')
    assert.is(ctx.s.server.eventServices.outbox.pending, 0)
  })

  Hooks('a record that keeps failing moves to the dead letters after maxAttempts', async ctx => {
    await setup(ctx, { maxAttempts: 3, retryBaseMs: 20 })
    ctx.hook.status = 503
    await ctx.s.api('PUT', '/v1/users/alice', { name: 'Alice' })
    await waitFor(() => ctx.s.server.eventServices.outbox.pending === 0, 5000, 'given up')
    assert.is(ctx.hook.received.length, 3)
    // The dead letter is written once the record left the queue: look until it is there.
    const deadLetters = async (): Promise<number> => {
      let n = 0
      for await (const _ of ctx.s.store.section('outbox').entries({ gte: 'v1!dead!', lt: 'v1!dead!\xff' })) n++
      return n
    }
    for (let i = 0; i < 100 && await deadLetters() === 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
    assert.is(await deadLetters(), 1)
  })

  Hooks('a slow receiver never slows message delivery between peers', async ctx => {
    await setup(ctx, { concurrency: 2, attemptTimeoutMs: 20_000 })
    // Each webhook post hangs far longer than a message may take to be delivered (2 s below).
    ctx.hook.delayMs = 10_000
    await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
    const a = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token('alice'))
    const b = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token('bob'))
    ctx.peers.push(a, b)
    await Promise.all([a.synced, b.synced])
    for (let i = 0; i < 20; i++) {
      sendMessage(a.doc, 'alice', `msg ${i}`)
      await waitFor(() => messagesOf(b.doc).length === i + 1, 2000, `message ${i}`)
    }
    assert.ok(ctx.s.server.eventServices.outbox.pending >= 18, 'the webhooks are still queued')
    ctx.hook.delayMs = 0
  })

  Hooks('a restart in the middle of the outbox loses no event: every id arrives at least once', async ctx => {
    await setup(ctx)
    ctx.hook.status = 503
    const N = 15
    for (let i = 0; i < N; i++) await ctx.s.api('PUT', `/v1/users/u${i}`, { name: `User ${i}` })
    await waitFor(() => ctx.hook.received.length >= N, 5000, 'every event attempted once')
    // Some attempts are in flight when the server stops: they are aborted, not lost.
    ctx.hook.status = 200
    ctx.hook.delayMs = 2000
    await sleep(150)
    const seenBefore = new Set(ctx.hook.received.map(r => r.body.id))
    assert.is(ctx.s.server.eventServices.outbox.pending, N)
    await ctx.s.stop(true)
    const restartedAt = Date.now()
    ctx.hook.delayMs = 0
    ctx.s = await startServerOn(ctx.kind, tuned({}), ctx.s.kept)
    const delivered = (): Map<string, string> => new Map(ctx.hook.ok('user.updated')
      .filter(r => r.arrivedAt >= restartedAt)
      .map(r => [r.body.id, String(r.body.data.userId)]))
    await waitFor(() => delivered().size === N, 8000, 'every event delivered after the restart')
    assert.equal([...delivered().values()].sort(), Array.from({ length: N }, (_, i) => `u${i}`).sort())
    for (const id of seenBefore) assert.ok(delivered().has(id), `id ${id} kept across the restart`)
    await waitFor(() => ctx.s.server.eventServices.outbox.pending === 0, 2000, 'outbox empty')
  })

  Hooks('moderation is audited: bans, lifts, kicks and deletions name who did them', async ctx => {
    await setup(ctx)
    await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['mod', 'bob'] })
    await ctx.s.api('PATCH', '/v1/conversations/c1/participants/mod', { role: 'moderator' })
    const asMod = `Bearer ${await ctx.s.token('mod')}`
    const bob = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token('bob'))
    const guest = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token('visitor'), { guest: '1' })
    ctx.peers.push(bob, guest)
    await Promise.all([bob.synced, guest.synced])
    const m = sendMessage(bob.doc, 'bob', 'spam')
    await waitFor(() => ctx.hook.ok('message.sent').length === 1, 5000, 'message.sent')
    assert.is((await ctx.s.api('DELETE', `/v1/conversations/c1/messages/${m.id}`, undefined, asMod)).status, 204)
    assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/guests/visitor', undefined, asMod)).status, 200)
    const until = Date.now() + 3_600_000
    assert.is((await ctx.s.api('PUT', '/v1/conversations/c1/bans/bob', { reason: 'spam', until }, asMod)).status, 200)
    assert.is((await ctx.s.api('DELETE', '/v1/conversations/c1/bans/bob')).status, 204)
    await waitFor(() => ctx.hook.ok('conversation.user_unbanned').length === 1, 5000, 'user_unbanned')
    assert.equal(ctx.hook.ok('message.deleted')[0].body.data, { conversationId: 'c1', message: m, deletedBy: 'mod' })
    assert.equal(ctx.hook.ok('conversation.guest_kicked')[0].body.data, { conversationId: 'c1', userId: 'visitor', connections: 1, by: 'mod' })
    assert.equal(ctx.hook.ok('conversation.user_banned')[0].body.data, { conversationId: 'c1', userId: 'bob', reason: 'spam', until, by: 'mod' })
    await waitFor(() => ctx.hook.ok('participant.removed').length === 1, 5000, 'participant.removed')
    assert.equal(ctx.hook.ok('participant.removed')[0].body.data, { conversationId: 'c1', userId: 'bob', by: 'mod' })
    assert.equal(ctx.hook.ok('conversation.user_unbanned')[0].body.data, { conversationId: 'c1', userId: 'bob', by: null })
  })

  Hooks.run()
}

runWebhookSuite('LevelDB')
runWebhookSuite('PostgreSQL')
