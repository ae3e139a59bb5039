import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { waitFor } from '../helpers/clients.ts'
import { convId, sessionFor } from './helpers.ts'

test('messages the server moves to its archive stay on screen and are not reported as deleted', async () => {
  const s = await startServer({ config: { historyWindow: 10, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  const id = convId('h')
  await s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const alice = await sessionFor(s, 'alice')
  const bob = await sessionFor(s, 'bob')
  const a = alice.open(id)
  const b = bob.open(id, { pageSize: 100 })
  await Promise.all([a.whenSynced(), b.whenSynced()])
  const deleted: string[] = []
  b.on('deleted', m => deleted.push(m.text))
  for (let i = 0; i < 40; i++) await a.whenSent(a.send(`m${i}`).id)
  await waitFor(() => b.messages.length === 40, 5000, 'bob sees every message')
  const room = s.server.rooms.peek(id)!
  assert.ok(room.archivedCount > 0, 'the server archived part of the history')
  assert.equal(deleted, [])
  assert.equal(b.messages.map(m => m.text), Array.from({ length: 40 }, (_, i) => `m${i}`))
  await alice.close()
  await bob.close()
  await s.stop()
})

test.run()
