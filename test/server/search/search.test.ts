import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer, type TestServer, UNLIMITED_RATE } from '../../helpers/server.ts'
import { connectPeer, sendMessage, waitFor } from '../../helpers/clients.ts'
import { messagesOf } from '../../../shared/doc.ts'
import { LevelStore } from '../../../server/storage/level-store.ts'
import { join } from 'node:path'

const Search = suite<{ s: TestServer }>('message search')
Search.before.each(async ctx => {
  ctx.s = await startServer({ config: { historyWindow: 10, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/c2', { participants: ['alice'] })
})
Search.after.each(async ctx => { await ctx.s.stop() })

/** Posts messages as admin, one request per message so each has its own createdAt order. */
const post = async (s: TestServer, conv: string, sender: string, ...texts: string[]): Promise<string[]> => {
  const ids: string[] = []
  for (const text of texts) {
    const r = await s.api('POST', `/v1/conversations/${conv}/messages`, [{ text, sender, type: 'UserMessage' }])
    assert.is(r.status, 201)
    ids.push(r.body[0].id)
  }
  return ids
}
const q = (s: TestServer, path: string, auth?: string): Promise<{ status: number, body: any }> => s.api('GET', path, undefined, auth)
const textsOf = (r: { body: any }): string[] => r.body.data.map((m: { text: string }) => m.text)

Search('every word of q must match, case- and accent-insensitively, newest first', async ({ s }) => {
  await post(s, 'c1', 'alice', 'Café au LAIT', 'un cafe noir', 'du lait', 'CAFÉ crème et lait chaud')
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=cafe%20lait')), ['CAFÉ crème et lait chaud', 'Café au LAIT'])
  assert.equal(textsOf(await q(s, `/v1/conversations/c1/messages?q=${encodeURIComponent('CAFÉ')}`)), ['CAFÉ crème et lait chaud', 'un cafe noir', 'Café au LAIT'])
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=creme')), ['CAFÉ crème et lait chaud'])
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=the')), [])
  assert.is((await q(s, '/v1/conversations/c1/messages?q=%20!')).body.error.code, 'INVALID_REQUEST')
})

Search('results are paged with limit and before', async ({ s }) => {
  await post(s, 'c1', 'alice', 'apple 1', 'apple 2', 'pear', 'apple 3', 'apple 4', 'apple 5')
  const first = await q(s, '/v1/conversations/c1/messages?q=apple&limit=2')
  assert.equal(textsOf(first), ['apple 5', 'apple 4'])
  assert.is(first.body.hasMore, true)
  const second = await q(s, `/v1/conversations/c1/messages?q=apple&limit=2&before=${first.body.data[1].id as string}`)
  assert.equal(textsOf(second), ['apple 3', 'apple 2'])
  const third = await q(s, `/v1/conversations/c1/messages?q=apple&limit=2&before=${second.body.data[1].id as string}`)
  assert.equal(textsOf(third), ['apple 1'])
  assert.is(third.body.hasMore, false)
})

Search('edits and deletes are reflected at once, over REST and over sync', async ({ s }) => {
  const [a, b] = await post(s, 'c1', 'alice', 'old banana', 'second banana')
  await s.api('PATCH', `/v1/conversations/c1/messages/${a}`, { text: 'fresh cherry' })
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=banana')), ['second banana'])
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=cherry')), ['fresh cherry'])
  await s.api('DELETE', `/v1/conversations/c1/messages/${b}`)
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=banana')), [])

  const peer = connectPeer(s.wsUrl, 'c1', await s.token('bob'))
  await peer.synced
  const m = sendMessage(peer.doc, 'bob', 'synced melon')
  const room = s.server.rooms.peek('c1')!
  await waitFor(() => messagesOf(room.doc).toArray().some(x => x.id === m.id))
  await room.whenDurable()
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=melon')), ['synced melon'])
  const arr = messagesOf(peer.doc)
  const i = arr.toArray().findIndex(x => x.id === m.id)
  peer.doc.transact(() => { arr.delete(i, 1); arr.insert(i, [{ ...m, text: 'synced lemon', editedAt: Date.now() }]) })
  await waitFor(() => messagesOf(room.doc).toArray().some(x => x.text === 'synced lemon'))
  await room.whenDurable()
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=melon')), [])
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=lemon')), ['synced lemon'])
  peer.destroy()
})

Search('archived messages are found, and edits of archived messages are reflected', async ({ s }) => {
  const ids = await post(s, 'c1', 'alice', 'ancient kiwi', ...Array.from({ length: 20 }, (_, i) => `filler ${i}`))
  assert.ok(s.server.rooms.peek('c1') === undefined || (await s.store.archivePosOf('c1', ids[0])) !== undefined, 'the first message is archived')
  assert.is((await s.store.archivePosOf('c1', ids[0])), 0)
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=kiwi')), ['ancient kiwi'])
  await s.api('PATCH', `/v1/conversations/c1/messages/${ids[0]}`, { text: 'ancient mango' })
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=kiwi')), [])
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=mango')), ['ancient mango'])
})

Search('a non-participant may not search a conversation it may not read; a user searches only as itself', async ({ s }) => {
  await post(s, 'c1', 'alice', 'secret plan')
  await s.api('PUT', '/v1/conversations/c1', { guestAccess: 'none' })
  const mallory = `Bearer ${await s.token('mallory')}`
  const r = await q(s, '/v1/conversations/c1/messages?q=secret', mallory)
  assert.is(r.status, 403)
  assert.is(r.body.error.code, 'NOT_PARTICIPANT')
  assert.is((await q(s, '/v1/users/alice/messages?q=secret', mallory)).status, 403)
  assert.is((await q(s, '/v1/users/mallory/messages?q=secret', mallory)).body.data.length, 0)
})

Search('the user route searches every conversation where the user is a participant, never one it visited as a guest', async ({ s }) => {
  await s.api('PUT', '/v1/conversations/open', { participants: ['bob'] })
  await post(s, 'c1', 'alice', 'shared topic one')
  await post(s, 'c2', 'alice', 'shared topic two')
  await post(s, 'open', 'bob', 'shared topic open')
  // alice reads `open` as a guest (it allows guests), but it is not hers to search.
  const guest = await q(s, '/v1/conversations/open/messages?q=topic', `Bearer ${await s.token('alice')}`)
  assert.equal(textsOf(guest), ['shared topic open'])
  const mine = await q(s, '/v1/users/alice/messages?q=shared%20topic', `Bearer ${await s.token('alice')}`)
  assert.equal(textsOf(mine), ['shared topic two', 'shared topic one'])
  assert.equal(mine.body.data.map((m: { conversationId: string }) => m.conversationId), ['c2', 'c1'])
  const paged = await q(s, `/v1/users/alice/messages?q=topic&limit=1&before=${mine.body.data[0].id as string}`)
  assert.equal(textsOf(paged), ['shared topic one'])
  await s.api('PATCH', '/v1/conversations/c1/participants/alice', { access: 'None' })
  assert.equal(textsOf(await q(s, '/v1/users/alice/messages?q=topic')), ['shared topic two'])
})

Search('a deleted conversation leaves nothing in the index: a new one of the same id finds only its own messages', async ({ s }) => {
  await post(s, 'c1', 'alice', 'gone papaya')
  await s.api('DELETE', '/v1/conversations/c1')
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await post(s, 'c1', 'alice', 'new papaya')
  assert.equal(textsOf(await q(s, '/v1/conversations/c1/messages?q=papaya')), ['new papaya'])
  await s.server.search.settled()
  const left: string[] = []
  for await (const [k] of s.store.section('search').entries({})) if (k.includes('gone')) left.push(k)
  assert.equal(left, [])
})

Search('a conversation written before the index existed is backfilled on its first query, archive included', async () => {
  const s = await startServer({ config: { historyWindow: 10, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await post(s, 'c1', 'alice', 'early grape', ...Array.from({ length: 20 }, (_, i) => `late grape ${i}`))
  await s.stop(true)
  // Drop the whole index, as if it had never existed.
  const store = await LevelStore.open(join(s.dir, 'db'))
  const section = store.section('search')
  const ops: Array<{ type: 'del', key: string }> = []
  for await (const [k] of section.entries({})) ops.push({ type: 'del', key: k })
  assert.ok(ops.length > 0)
  await section.batch(ops)
  await store.close()
  const again = await startServer({ dir: s.dir, config: { historyWindow: 10, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  try {
    const r = await q(again, '/v1/conversations/c1/messages?q=grape&limit=100')
    assert.is(r.body.data.length, 21)
    assert.is(r.body.data[20].text, 'early grape')
  } finally {
    await again.stop()
  }
})

Search('message changes are logged in the same batch as the change: a crash before the index expands them loses nothing', async () => {
  const s = await startServer({ config: { searchExpandDelayMs: 3600_000 } })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await post(s, 'c1', 'alice', 'logged quince')
  await s.stop(true)
  const store = await LevelStore.open(join(s.dir, 'db'))
  const logged: string[] = []
  for await (const [k] of store.section('search').entries({ gte: 'v1!w!', lt: 'v1!w!\xff' })) logged.push(k)
  await store.close()
  assert.ok(logged.length > 0, 'the change waits in the log')
  const again = await startServer({ dir: s.dir, config: { searchExpandDelayMs: 3600_000 } })
  try {
    await again.server.search.settled()
    assert.equal(textsOf(await q(again, '/v1/conversations/c1/messages?q=quince')), ['logged quince'])
  } finally {
    await again.stop()
  }
})

Search.run()
