import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelStore } from '../../../server/storage/level-store.ts'

const Store = suite<{ dir: string, store: LevelStore }>('LevelStore')
Store.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'parley-store-'))
  ctx.store = await LevelStore.open(join(ctx.dir, 'db'))
})
Store.after.each(async ctx => {
  await ctx.store.close()
  await rm(ctx.dir, { recursive: true, force: true })
})

const b = (...n: number[]): Uint8Array => new Uint8Array(n)

Store('an unknown conversation loads as empty', async ({ store }) => {
  assert.equal(await store.loadDoc('x'), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 0 })
})

Store('appended updates load back in order, past a prefix-sharing id', async ({ store }) => {
  await store.appendUpdates('a', 1, [b(1), b(2)])
  await store.appendUpdates('a', 3, [b(3)])
  await store.appendUpdates('ab', 1, [b(9)])
  for (let i = 4; i <= 20; i++) await store.appendUpdates('a', i, [b(i)])
  const doc = await store.loadDoc('a')
  assert.equal(doc.updates.map(u => u[0]), Array.from({ length: 20 }, (_, i) => i + 1))
  assert.is(doc.lastSeq, 20)
  assert.is((await store.loadDoc('ab')).updates.length, 1)
})

Store('compaction replaces the covered log with a snapshot', async ({ store }) => {
  await store.appendUpdates('a', 1, [b(1), b(2), b(3)])
  await store.compact('a', 2, b(42))
  await store.appendUpdates('a', 4, [b(4)])
  let doc = await store.loadDoc('a')
  assert.equal(Array.from(doc.snapshot ?? []), [42])
  assert.is(doc.snapshotSeq, 2)
  assert.equal(doc.updates.map(u => u[0]), [3, 4])
  assert.is(doc.lastSeq, 4)
  await store.compact('a', 4, b(43))
  doc = await store.loadDoc('a')
  assert.equal(Array.from(doc.snapshot ?? []), [43])
  assert.equal(doc.updates, [])
  assert.is(doc.lastSeq, 4)
})

Store('an append carries its client-id bindings, archived messages and section puts in the same write', async ({ store }) => {
  const message = { id: 'old', senderId: 'u', text: 'x', createdAt: 1, type: 'UserMessage' as const }
  await store.appendUpdates('a', 1, [b(1)], {
    bindings: [{ userId: 'u', clientIds: [11, 12] }],
    archive: [{ pos: 0, message }],
    sections: [{ section: 'outbox', key: 'k', value: { v: 1 } }]
  })
  assert.equal(await store.loadClientOwners('a'), new Map([[11, 'u'], [12, 'u']]))
  assert.is(await store.archivePosOf('a', 'old'), 0)
  assert.equal(await store.section('outbox').get('k'), { v: 1 })
  assert.is((await store.loadDoc('a')).lastSeq, 1)
})

Store('deleting a conversation removes its document, bindings and members', async ({ store }) => {
  await store.createConversation('a', 1)
  await store.appendUpdates('a', 1, [b(1)])
  await store.bindClients('a', 'u', [7, 8])
  await store.setMember('u', 'a', 5)
  await store.setMember('u', 'keep', 6)
  assert.equal(await store.loadClientOwners('a'), new Map([[7, 'u'], [8, 'u']]))
  await store.deleteConversation('a', ['u'])
  assert.is(await store.conversationExists('a'), false)
  assert.equal((await store.loadDoc('a')).updates, [])
  assert.equal(await store.loadClientOwners('a'), new Map())
  assert.equal(await store.listMemberships('u'), [{ conv: 'keep', joinedAt: 6 }])
})

Store('users and settings round-trip', async ({ store }) => {
  assert.is(await store.getUser('u'), undefined)
  await store.putUser({ id: 'u', name: 'U', createdAt: 1 })
  assert.equal(await store.getUser('u'), { id: 'u', name: 'U', createdAt: 1 })
  await store.putSettings({ maxGuests: 3 })
  assert.equal(await store.getSettings(), { maxGuests: 3 })
})

Store('sections keep their own keys apart from the store and from each other', async ({ store }) => {
  const a = store.section('outbox')
  const b = store.section('inbox')
  await a.put('k1', { n: 1 })
  await a.batch([{ type: 'put', key: 'k2', value: 2 }, { type: 'put', key: 'k3', value: 3 }, { type: 'del', key: 'k1' }])
  await b.put('k2', 'other')
  const seen: Array<[string, unknown]> = []
  for await (const e of a.entries({ gte: 'k', lt: 'l' })) seen.push(e)
  assert.equal(seen, [['k2', 2], ['k3', 3]])
  assert.is(await b.get('k2'), 'other')
  assert.is(await a.get('k1'), undefined)
  assert.is(await store.getSettings(), undefined)
  assert.throws(() => store.section('json'))
})

Store.run()
