import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, waitFor } from '../helpers/clients.ts'
import { findMessageIndex, messagesOf } from '../../shared/doc.ts'
import type { ServerEvent } from '../../server/events.ts'

test('durable events describe messages, edits, deletes, participants, users and deletions', async () => {
  const s = await startServer()
  const seen: ServerEvent[] = []
  s.server.events.subscribe(e => seen.push(e))
  await s.api('PUT', '/v1/users/alice', { name: 'Alice' })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  const m = sendMessage(a.doc, 'alice', 'first')
  await waitFor(() => seen.some(e => e.type === 'message.sent'))
  a.doc.transact(() => {
    const arr = messagesOf(a.doc)
    const i = findMessageIndex(a.doc, m.id)
    arr.delete(i, 1)
    arr.insert(i, [{ ...m, text: 'edited', editedAt: Date.now() }])
  })
  await waitFor(() => seen.some(e => e.type === 'message.updated'))
  a.doc.transact(() => { messagesOf(a.doc).delete(0, 1) })
  await waitFor(() => seen.some(e => e.type === 'message.deleted'))
  a.doc.getMap('reads').set('alice', 12345)
  await waitFor(() => seen.some(e => e.type === 'reads.updated'))
  await s.api('DELETE', '/v1/conversations/c1/participants/alice')
  await s.api('DELETE', '/v1/conversations/c1')
  const types = seen.map(e => e.type)
  assert.equal(types, ['user.updated', 'participant.added', 'message.sent', 'message.updated', 'message.deleted', 'reads.updated', 'participant.removed', 'conversation.deleted'])
  const upd = seen.find(e => e.type === 'message.updated')
  assert.ok(upd !== undefined && upd.type === 'message.updated' && upd.message.text === 'edited' && upd.previous?.text === 'first')
  const reads = seen.find(e => e.type === 'reads.updated')
  assert.equal(reads, { type: 'reads.updated', conversationId: 'c1', userId: 'alice', readUpTo: 12345 })
  a.destroy()
  await s.stop()
})

test.run()
