/**
 * Cluster mode: a reader on one node sees every message arrive live, even when the entries it
 * catches up on at once hold a message and, in a later entry, its move to the archive (more
 * messages than the live window arrived between two catch-ups). Applied or forwarded as one
 * merged update, such a message would reach the reader as deleted content only.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type * as Y from 'yjs'
import { connectPeer, waitFor } from '../../helpers/clients.ts'
import { startClusterWithCuttableRedis } from '../../helpers/cluster.ts'
import { UNLIMITED_RATE } from '../../helpers/server.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'

const L = suite('cluster mode: live readers')

L('a reader on node B catching up from the store sees every message arrive, also those archived in the same catch-up', async () => {
  // B hears of A's commits only through the proxy: once it is cut, B reads them from the store, many at a time.
  const { cluster, a, b, proxy, stop } = await startClusterWithCuttableRedis()
  try {
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/live', { participants: ['alice', 'bob'] })).status, 201)
    assert.is((await cluster.api(a, 'PATCH', '/v1/settings', UNLIMITED_RATE)).status, 200)
    const bob = connectPeer(b.wsUrl, 'live', await cluster.token('bob'))
    await bob.synced
    const seen = new Set<string>()
    messagesOf(bob.doc).observe((event: Y.YArrayEvent<Message>) => {
      for (const item of event.changes.added) for (const m of item.content.getContent() as Message[]) seen.add(m.text)
    })
    await proxy.stop()
    // B is paused while A takes the messages: when it goes on, its catch-up reads them all at once.
    b.child.kill('SIGSTOP')
    // More than the live window (1,000 messages + 500 before the oldest move): the archive moves
    // land in entries B reads together with the messages they move.
    const N = 1800
    for (let i = 0; i < N; i += 10) {
      const batch = Array.from({ length: 10 }, (_, j) => ({ text: `live-${i + j}`, sender: 'alice', type: 'UserMessage' }))
      const posted = await cluster.api(a, 'POST', '/v1/conversations/live/messages', batch)
      assert.is(posted.status, 201, JSON.stringify(posted.body))
    }
    b.child.kill('SIGCONT')
    await waitFor(() => seen.size === N, 20_000, `bob saw ${seen.size} of ${N} arrive`)
    for (let i = 0; i < N; i++) assert.ok(seen.has(`live-${i}`), `live-${i} arrived`)
    // The window moved on B too: the oldest are in the archive, not in bob's copy.
    await waitFor(() => !messagesOf(bob.doc).toArray().some(m => m.text === 'live-0'), 10_000, 'the oldest archived on bob’s copy')
    assert.equal(bob.closes, [])
    bob.destroy()
  } finally {
    b.child.kill('SIGCONT')
    await stop()
  }
})

L.run()
