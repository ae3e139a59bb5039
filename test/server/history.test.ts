import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { startServer, UNLIMITED_RATE, type TestServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, texts, waitFor } from '../helpers/clients.ts'
import { messagesOf } from '../../shared/doc.ts'

const History = suite<{ s: TestServer }>('history beyond the live window')
const WINDOW = 20
const CHUNK = 10
History.before.each(async ctx => {
  ctx.s = await startServer({ config: { historyWindow: WINDOW, archiveChunk: CHUNK }, settings: UNLIMITED_RATE })
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
})
History.after.each(async ctx => { await ctx.s.stop() })

const writeMany = async (s: TestServer, n: number, from = 0): Promise<void> => {
  const a = connectPeer(s.wsUrl, 'c1', await s.token('alice'))
  await a.synced
  for (let i = from; i < from + n; i++) {
    sendMessage(a.doc, 'alice', `m${i}`, `id${i}`)
    if (i % 7 === 6) await new Promise(resolve => setTimeout(resolve, 1))
  }
  const room = s.server.rooms.peek('c1')!
  await waitFor(() => room.archivedCount + messagesOf(room.doc).length === from + n, 10000, 'all written')
  await room.whenDurable()
  a.destroy()
}

const allOverRest = async (s: TestServer): Promise<string[]> => {
  const out: string[] = []
  let before: string | undefined
  for (let guard = 0; guard < 100; guard++) {
    const r = await s.api('GET', `/v1/conversations/c1/messages?limit=7${before === undefined ? '' : `&before=${before}`}`)
    assert.is(r.status, 200)
    out.unshift(...r.body.data.map((m: { text: string }) => m.text))
    if (!r.body.hasMore) return out
    before = r.body.data[0].id
  }
  throw new Error('paging did not end')
}

History('the live document keeps a recent window and older messages move to the archive', async ({ s }) => {
  await writeMany(s, 100)
  const room = s.server.rooms.peek('c1')!
  const live = messagesOf(room.doc).length
  assert.ok(live >= WINDOW && live <= WINDOW + CHUNK, `live ${live}`)
  assert.is(room.archivedCount + live, 100)
  const meta = room.doc.getMap('meta').get('archived') as { count: number, lastId: string }
  assert.is(meta.count, room.archivedCount)
  assert.is(meta.lastId, `id${meta.count - 1}`)
})

History('a joining peer receives only the window, and REST pages through everything in order', async ({ s }) => {
  await writeMany(s, 100)
  const b = connectPeer(s.wsUrl, 'c1', await s.token('bob'))
  await b.synced
  await waitFor(() => texts(b.doc).length > 0)
  const got = texts(b.doc)
  assert.ok(got.length <= WINDOW + CHUNK, `joined with ${got.length}`)
  assert.equal(got, Array.from({ length: got.length }, (_, i) => `m${100 - got.length + i}`))
  b.destroy()
  assert.equal(await allOverRest(s), Array.from({ length: 100 }, (_, i) => `m${i}`))
})

History('archived messages survive a restart, and can be edited and deleted over REST', async ({ s }) => {
  await writeMany(s, 60)
  await s.stop(true)
  const s2 = await startServer({ dir: s.dir, config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  assert.equal(await allOverRest(s2), Array.from({ length: 60 }, (_, i) => `m${i}`))
  let r = await s2.api('PATCH', '/v1/conversations/c1/messages/id3', { text: 'edited old' })
  assert.is(r.status, 200)
  assert.type(r.body.editedAt, 'number')
  r = await s2.api('DELETE', '/v1/conversations/c1/messages/id4')
  assert.is(r.status, 204)
  r = await s2.api('DELETE', '/v1/conversations/c1/messages/id4')
  assert.is(r.status, 404)
  const all = await allOverRest(s2)
  assert.is(all.length, 59)
  assert.is(all[3], 'edited old')
  assert.not.ok(all.includes('m4'))
  r = await s2.api('GET', '/v1/conversations/c1/messages?before=id10&limit=3')
  assert.equal(r.body.data.map((m: { text: string }) => m.text), ['m7', 'm8', 'm9'])
  assert.is(r.body.hasMore, true)
  await s2.stop()
  s.stop = async () => {}
})

History('a join costs the window, not the history: state bytes stay flat as history grows', async ({ s }) => {
  await writeMany(s, 60)
  const small = Y.encodeStateAsUpdate(s.server.rooms.peek('c1')!.doc).byteLength
  await writeMany(s, 240, 60)
  const big = Y.encodeStateAsUpdate(s.server.rooms.peek('c1')!.doc).byteLength
  assert.ok(big < small * 2, `join bytes ${small} -> ${big}`)
})

History('deleting the conversation removes its archive too', async ({ s }) => {
  await writeMany(s, 60)
  await s.api('DELETE', '/v1/conversations/c1')
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const r = await s.api('GET', '/v1/conversations/c1/messages?limit=100')
  assert.equal(r.body, { data: [], hasMore: false })
  assert.is(await s.store.archivePosOf('c1', 'id1'), undefined)
})

/** A stock peer of bob sends a message with `id`; resolves with its close code (0 if it stays open). */
const reuse = async (s: TestServer, id: string): Promise<number> => {
  const b = connectPeer(s.wsUrl, 'c1', await s.token('bob'))
  await b.synced
  sendMessage(b.doc, 'bob', 'reused', id)
  const room = s.server.rooms.peek('c1')!
  await waitFor(() => b.closes.length > 0 || messagesOf(room.doc).toArray().some(m => m.id === id), 5000, 'a verdict')
  const code = b.closes[0]?.code ?? 0
  b.destroy()
  return code
}

History('an archived message\'s id cannot be reused by a peer, before and after a restart', async ({ s }) => {
  await writeMany(s, 60)
  assert.ok((await s.store.archivePosOf('c1', 'id1')) !== undefined, 'id1 is archived')
  assert.is(await reuse(s, 'id1'), 4403, 'refused while the room that archived it is loaded')
  await s.stop(true)
  const s2 = await startServer({ dir: s.dir, config: { historyWindow: WINDOW, archiveChunk: CHUNK } })
  s.stop = async () => { await s2.stop() }
  assert.is(await reuse(s2, 'id2'), 4403, 'refused after a reload (the store is asked)')
  const room = s2.server.rooms.peek('c1')!
  await room.whenDurable()
  assert.not.ok(messagesOf(room.doc).toArray().some(m => m.senderId === 'bob'), 'nothing of it is live')
  assert.equal((await allOverRest(s2)).filter(t => t === 'reused'), [])
  assert.is(await reuse(s2, 'fresh-id'), 0, 'a new id is taken')
})

History.run()
