/**
 * The conformance suite of the storage port (server/storage/port.ts): every promise a DocStore
 * makes, as behaviour sentences, run against each store (LevelDB in level-conformance.test.ts,
 * PostgreSQL in pg-conformance.test.ts). A new store passes this before the server may use it.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { isChatError } from '../../../shared/errors.ts'
import type { Message } from '../../../shared/schema.ts'
import { isSeqConflict, type DocStore, type StoredDoc } from '../../../server/storage/port.ts'

export interface OpenedStore {
  store: DocStore
  /** Closes the store and removes what it stored. */
  cleanup: () => Promise<void>
}

/** A real cause of write failures that a test can switch on and off (a full disk, a lost server). */
export interface Fault {
  /** From now on, the store's writes fail for real. */
  start: () => Promise<void>
  /** The cause is gone (the store itself still refuses until reopened). */
  end: () => Promise<void>
}

const b = (...n: number[]): number[] => n
const nums = (updates: Uint8Array[]): number[] => updates.map(u => u[0])
/** A stored document with its bytes as plain arrays (a store may hand out Buffers). */
const plain = (doc: StoredDoc): { snapshot: number[] | null, snapshotSeq: number, updates: number[][], lastSeq: number } =>
  ({ ...doc, snapshot: doc.snapshot === null ? null : Array.from(doc.snapshot), updates: doc.updates.map(u => Array.from(u)) })
/** Bytes to write. */
const u8 = (...n: number[]): Uint8Array => new Uint8Array(n)
const msg = (id: string, text = `text of ${id}`): Message => ({ id, senderId: 'u', text, createdAt: 1, type: 'UserMessage' })

const collect = async <T>(it: AsyncIterable<T>): Promise<T[]> => {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

const rejectsWith = async (p: Promise<unknown>, type: new (...args: any[]) => Error): Promise<void> => {
  try {
    await p
  } catch (e) {
    assert.instance(e, type)
    return
  }
  assert.unreachable('accepted')
}

const refusedAsUnavailable = async (p: Promise<unknown>): Promise<void> => {
  try {
    await p
  } catch (e) {
    assert.ok(isChatError(e) && e.code === 'STORAGE_UNAVAILABLE', `refused with STORAGE_UNAVAILABLE, got ${String(e)}`)
    return
  }
  assert.unreachable('the write was accepted')
}

/**
 * Registers and runs the suite. `open` gives a fresh, empty store; `openFaulty` one whose
 * writes can be made to fail for real (see Fault).
 */
export const runStoreConformance = (name: string, open: () => Promise<OpenedStore>, openFaulty: () => Promise<OpenedStore & { fault: Fault }>): void => {
  const S = suite<{ opened: OpenedStore, store: DocStore }>(`store conformance: ${name}`)
  S.before.each(async ctx => {
    ctx.opened = await open()
    ctx.store = ctx.opened.store
  })
  S.after.each(async ctx => { await ctx.opened.cleanup() })

  S('an unknown conversation loads as an empty document', async ({ store }) => {
    assert.equal(plain(await store.loadDoc('x')), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 0 })
  })

  S('appended updates load back in order, byte for byte, apart from a prefix-sharing id', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1), u8(2)])
    await store.appendUpdates('a', 3, [u8(3)])
    await store.appendUpdates('ab', 1, [u8(9, 0, 255)])
    for (let i = 4; i <= 20; i++) await store.appendUpdates('a', i, [u8(i)])
    const doc = await store.loadDoc('a')
    assert.equal(nums(doc.updates), Array.from({ length: 20 }, (_, i) => i + 1))
    assert.is(doc.lastSeq, 20)
    assert.equal(plain(await store.loadDoc('ab')), { snapshot: null, snapshotSeq: 0, updates: [b(9, 0, 255)], lastSeq: 1 })
  })

  S('compaction replaces the covered log with a snapshot; later entries stay after it', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1), u8(2), u8(3)])
    await store.compact('a', 2, u8(42))
    await store.appendUpdates('a', 4, [u8(4)])
    let doc = plain(await store.loadDoc('a'))
    assert.equal(doc.snapshot, b(42))
    assert.is(doc.snapshotSeq, 2)
    assert.equal(doc.updates, [[3], [4]])
    assert.is(doc.lastSeq, 4)
    await store.compact('a', 4, u8(43))
    doc = plain(await store.loadDoc('a'))
    assert.equal(doc, { snapshot: b(43), snapshotSeq: 4, updates: [], lastSeq: 4 })
    await store.appendUpdates('a', 5, [u8(5)])
    assert.equal(plain(await store.loadDoc('a')), { snapshot: b(43), snapshotSeq: 4, updates: [b(5)], lastSeq: 5 })
  })

  S('a node catching up reads what is stored after its copy: the newer entries, or the snapshot that covers them', async ({ store }) => {
    assert.equal(plain(await store.loadDocAfter('a', 0)), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 0 })
    await store.appendUpdates('a', 1, [u8(1), u8(2), u8(3)])
    assert.equal(plain(await store.loadDocAfter('a', 1)), { snapshot: null, snapshotSeq: 0, updates: [[2], [3]], lastSeq: 3 })
    assert.equal(plain(await store.loadDocAfter('a', 3)), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 3 })
    await store.compact('a', 2, u8(42))
    assert.equal(plain(await store.loadDocAfter('a', 1)), { snapshot: [42], snapshotSeq: 2, updates: [[3]], lastSeq: 3 }, 'entry 2 was compacted away: the snapshot stands for it')
    assert.equal(plain(await store.loadDocAfter('a', 2)), { snapshot: null, snapshotSeq: 0, updates: [[3]], lastSeq: 3 }, 'a copy the snapshot covers gets no snapshot')
    await store.compact('a', 3, u8(43))
    assert.equal(plain(await store.loadDocAfter('a', 3)), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 3 })
    assert.equal(plain(await store.loadDocAfter('b', 5)), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 5 }, 'an unknown conversation has nothing newer')
  })

  S('an append is conditional: an entry already stored, or covered by a snapshot, is refused with a seq conflict', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1), u8(2)])
    for (const [seq, bytes] of [[1, [7]], [2, [7]], [2, [2, 7]]] as const) {
      try {
        await store.appendUpdates('a', seq, [u8(...bytes)])
        assert.unreachable(`appending entry ${seq} again was accepted`)
      } catch (e) {
        assert.ok(isSeqConflict(e), String(e))
        assert.is(e.conversation, 'a')
        assert.is(e.firstSeq, seq)
        assert.is(e.storedSeq, 2)
      }
    }
    await store.compact('a', 2, u8(40))
    await store.appendUpdates('a', 3, [u8(3)])
    await store.compact('a', 3, u8(41))
    try {
      await store.appendUpdates('a', 3, [u8(8)])
      assert.unreachable('an entry covered by the snapshot was appended again')
    } catch (e) {
      assert.ok(isSeqConflict(e), String(e))
    }
    assert.equal(plain(await store.loadDoc('a')), { snapshot: b(41), snapshotSeq: 3, updates: [], lastSeq: 3 })
    // Refusals stop nothing.
    assert.is(store.writeFailure, null)
    await store.appendUpdates('a', 4, [u8(4)])
  })

  S('a retried append whose entries are stored byte for byte resolves and writes nothing more', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)])
    await store.appendUpdates('a', 2, [u8(2), u8(3)], { archive: [{ pos: 0, message: msg('m0') }] })
    await store.appendUpdates('a', 2, [u8(2), u8(3)], { archive: [{ pos: 0, message: msg('m0') }] })
    assert.equal(nums((await store.loadDoc('a')).updates), [1, 2, 3])
  })

  S('two appends of the same entry at once: one is stored, the other is refused', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)])
    const results = await Promise.allSettled([store.appendUpdates('a', 2, [u8(20)]), store.appendUpdates('a', 2, [u8(21)])])
    assert.equal(results.map(r => r.status).sort(), ['fulfilled', 'rejected'])
    const refused = results.find(r => r.status === 'rejected') as PromiseRejectedResult
    assert.ok(isSeqConflict(refused.reason), String(refused.reason))
    const doc = await store.loadDoc('a')
    assert.is(doc.updates.length, 2)
    assert.ok(doc.updates[1][0] === 20 || doc.updates[1][0] === 21)
  })

  S('an entry past a gap is accepted (gaps are not checked)', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)])
    await store.appendUpdates('a', 5, [u8(5)])
    assert.equal(plain(await store.loadDoc('a')), { snapshot: null, snapshotSeq: 0, updates: [b(1), b(5)], lastSeq: 5 })
  })

  S('an append carries its client-id bindings, archived messages and section puts in the same write', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)], {
      bindings: [{ userId: 'u', clientIds: [11, 0xffffffff] }, { userId: '#server', clientIds: [3] }],
      archive: [{ pos: 0, message: msg('old') }, { pos: 1, message: msg('older') }],
      sections: [{ section: 'outbox', key: 'k', value: { v: 1 } }, { section: 'notify', key: 'k', value: [1, 'x'] }]
    })
    assert.equal(await store.loadClientOwners('a'), new Map([[11, 'u'], [0xffffffff, 'u'], [3, '#server']]))
    assert.is(await store.archivePosOf('a', 'older'), 1)
    assert.equal(await store.section('outbox').get('k'), { v: 1 })
    assert.equal(await store.section('notify').get('k'), [1, 'x'])
    assert.is((await store.loadDoc('a')).lastSeq, 1)
  })

  S('an append carries the conversation record and membership changes in the same write, also with no update', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)], { conversation: { createdAt: 42 }, members: [{ userId: 'u', joinedAt: 42 }, { userId: 'v', joinedAt: 43 }] })
    assert.ok(await store.conversationExists('a'))
    assert.equal(await store.listMemberships('u'), [{ conv: 'a', joinedAt: 42 }])
    assert.equal(await store.listMemberships('v'), [{ conv: 'a', joinedAt: 43 }])
    await store.appendUpdates('a', 2, [], { members: [{ userId: 'v', joinedAt: null }] })
    assert.equal(await store.listMemberships('v'), [])
    assert.is((await store.loadDoc('a')).lastSeq, 1, 'a records-only write adds no log entry')
  })

  S('an edit or delete of an archived message carries its section puts; nothing for a position not archived', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)], { archive: [{ pos: 0, message: msg('m0') }] })
    await store.updateArchived('a', 0, { ...msg('m0', 'edited'), editedAt: 2 }, [{ section: 'outbox', key: 'e', value: 'edited' }])
    assert.is(await store.section('outbox').get('e'), 'edited')
    await store.updateArchived('a', 0, null, [{ section: 'outbox', key: 'd', value: 'deleted' }])
    assert.is(await store.section('outbox').get('d'), 'deleted')
    await store.updateArchived('a', 9, null, [{ section: 'outbox', key: 'x', value: 'none' }])
    assert.is(await store.section('outbox').get('x'), undefined)
  })

  S('an append deletes archived messages (record and id) in the same write', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)], { archive: [{ pos: 0, message: msg('m0') }, { pos: 1, message: msg('m1') }] })
    await store.appendUpdates('a', 2, [u8(2)], { archiveDeletes: [{ pos: 0, message: msg('m0') }], sections: [{ section: 'outbox', key: 'del', value: 'm0' }] })
    assert.is(await store.archivePosOf('a', 'm0'), undefined)
    assert.is(await store.archivePosOf('a', 'm1'), 1)
    assert.equal((await store.readArchive('a', null, 10)).messages.map(m => m.pos), [1])
    assert.is(await store.section('outbox').get('del'), 'm0')
  })

  S('section writes carried by an append may delete keys; the last write of a key wins', async ({ store }) => {
    await store.section('files').put('f1', { size: 1 })
    await store.section('files').put('f2', { size: 2 })
    await store.appendUpdates('a', 1, [u8(1)], { sections: [{ section: 'files', key: 'f1', value: null, del: true }, { section: 'files', key: 'f3', value: 3 }, { section: 'files', key: 'f3', value: null, del: true }, { section: 'files', key: 'f2', value: null, del: true }, { section: 'files', key: 'f2', value: 22 }] })
    assert.is(await store.section('files').get('f1'), undefined)
    assert.is(await store.section('files').get('f3'), undefined)
    assert.is(await store.section('files').get('f2'), 22)
  })

  S('a section batch carries puts into other sections in the same write', async ({ store }) => {
    await store.section('bans').batch([{ type: 'put', key: 'c/u', value: { until: null } }], [{ section: 'outbox', key: 'w', value: 'banned' }])
    assert.equal(await store.section('bans').get('c/u'), { until: null })
    assert.is(await store.section('outbox').get('w'), 'banned')
  })

  S('a refused append writes nothing of what it carries (atomic)', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)])
    try {
      await store.appendUpdates('a', 1, [u8(2)], {
        bindings: [{ userId: 'u', clientIds: [11] }],
        archive: [{ pos: 0, message: msg('old') }],
        sections: [{ section: 'outbox', key: 'k', value: 1 }]
      })
      assert.unreachable('accepted')
    } catch (e) {
      assert.ok(isSeqConflict(e), String(e))
    }
    assert.equal(await store.loadClientOwners('a'), new Map())
    assert.is(await store.archivePosOf('a', 'old'), undefined)
    assert.equal(await store.readArchive('a', null, 10), { messages: [], hasMore: false })
    assert.is(await store.section('outbox').get('k'), undefined)
    assert.equal(plain(await store.loadDoc('a')), { snapshot: null, snapshotSeq: 0, updates: [b(1)], lastSeq: 1 })
  })

  S('the archive pages backwards from a position, oldest first, and says whether more is older', async ({ store }) => {
    const archive = Array.from({ length: 25 }, (_, i) => ({ pos: i, message: msg(`m${i}`) }))
    await store.appendUpdates('a', 1, [u8(1)], { archive: archive.slice(0, 10) })
    await store.appendUpdates('a', 2, [u8(2)], { archive: archive.slice(10) })
    await store.appendUpdates('ab', 1, [u8(1)], { archive: [{ pos: 0, message: msg('other') }] })
    let page = await store.readArchive('a', null, 10)
    assert.equal(page.messages.map(m => m.pos), Array.from({ length: 10 }, (_, i) => 15 + i))
    assert.is(page.hasMore, true)
    assert.equal(page.messages[0].message, msg('m15'))
    page = await store.readArchive('a', 15, 10)
    assert.equal(page.messages.map(m => m.message.id), Array.from({ length: 10 }, (_, i) => `m${5 + i}`))
    page = await store.readArchive('a', 5, 10)
    assert.equal(page.messages.map(m => m.pos), [0, 1, 2, 3, 4])
    assert.is(page.hasMore, false)
    assert.equal(await store.readArchive('a', 0, 10), { messages: [], hasMore: false })
    assert.equal(await store.readArchive('none', null, 10), { messages: [], hasMore: false })
  })

  S('an archived message is found by id, edited in place, and deleted with its id', async ({ store }) => {
    await store.appendUpdates('a', 1, [u8(1)], { archive: [{ pos: 0, message: msg('m0') }, { pos: 1, message: msg('m1') }] })
    assert.is(await store.archivePosOf('a', 'm1'), 1)
    assert.is(await store.archivePosOf('a', 'nope'), undefined)
    assert.is(await store.archivePosOf('b', 'm1'), undefined)
    await store.updateArchived('a', 1, { ...msg('m1', 'edited'), editedAt: 5 })
    assert.equal((await store.readArchive('a', null, 10)).messages[1], { pos: 1, message: { ...msg('m1', 'edited'), editedAt: 5 } })
    await store.updateArchived('a', 0, null)
    assert.is(await store.archivePosOf('a', 'm0'), undefined)
    assert.equal((await store.readArchive('a', null, 10)).messages.map(m => m.pos), [1])
    await store.updateArchived('a', 7, msg('ghost'))
    assert.is(await store.archivePosOf('a', 'ghost'), undefined, 'editing a position that holds nothing creates nothing')
  })

  S('message text of any characters round-trips (NUL, quotes, backslashes, emoji, lone surrogates)', async ({ store }) => {
    const text = 'a\u0000b "q" \\ \n é 漢 😀 \ud800 end'
    await store.appendUpdates('a', 1, [u8(1)], { archive: [{ pos: 0, message: msg('m0', text) }], sections: [{ section: 'outbox', key: 'k', value: { text } }] })
    assert.is((await store.readArchive('a', null, 1)).messages[0].message.text, text)
    assert.equal(await store.section('outbox').get('k'), { text })
    await store.putUser({ id: 'u', name: text, createdAt: 1 })
    assert.is((await store.getUser('u'))?.name, text)
  })

  S('client ids are bound to users, outside appends too, and a later binding wins', async ({ store }) => {
    assert.equal(await store.loadClientOwners('a'), new Map())
    await store.bindClients('a', 'u', [7, 8])
    await store.bindClients('a', 'v', [8])
    await store.bindClients('ab', 'w', [7])
    await store.bindClients('a', 'x', [])
    assert.equal(await store.loadClientOwners('a'), new Map([[7, 'u'], [8, 'v']]))
    assert.equal(await store.loadClientOwners('ab'), new Map([[7, 'w']]))
  })

  S('conversations are created, exist, and are deleted with their document, bindings, archive and the given members’ entries', async ({ store }) => {
    assert.is(await store.conversationExists('a'), false)
    await store.createConversation('a', 1)
    await store.createConversation('ab', 2)
    assert.is(await store.conversationExists('a'), true)
    await store.appendUpdates('a', 1, [u8(1), u8(2)], { archive: [{ pos: 0, message: msg('m0') }] })
    await store.compact('a', 1, u8(40))
    await store.bindClients('a', 'u', [7, 8])
    await store.setMember('u', 'a', 5)
    await store.setMember('u', 'keep', 6)
    await store.setMember('v', 'a', 7)
    await store.appendUpdates('ab', 1, [u8(1)])
    await store.deleteConversation('a', ['u'], [{ section: 'outbox', key: 'deleted', value: 'a' }])
    assert.is(await store.conversationExists('a'), false)
    assert.equal(plain(await store.loadDoc('a')), { snapshot: null, snapshotSeq: 0, updates: [], lastSeq: 0 })
    assert.equal(await store.loadClientOwners('a'), new Map())
    assert.equal(await store.readArchive('a', null, 10), { messages: [], hasMore: false })
    assert.is(await store.archivePosOf('a', 'm0'), undefined)
    assert.equal(await store.listMemberships('u'), [{ conv: 'keep', joinedAt: 6 }])
    assert.equal(await store.listMemberships('v'), [{ conv: 'a', joinedAt: 7 }], 'members not named keep their entry')
    assert.is(await store.section('outbox').get('deleted'), 'a')
    assert.is(await store.conversationExists('ab'), true)
    assert.is((await store.loadDoc('ab')).lastSeq, 1)
    // The id can be used again, from the first entry on.
    await store.createConversation('a', 9)
    await store.appendUpdates('a', 1, [u8(9)])
    assert.equal(nums((await store.loadDoc('a')).updates), [9])
  })

  S('users round-trip with every field, and a put carries its section puts', async ({ store }) => {
    assert.is(await store.getUser('u'), undefined)
    const full = { id: 'u', name: 'U', email: ['u@x.test'], phone: ['+1'], photoUrl: null, custom: { k: 'v' }, createdAt: 1 }
    await store.putUser(full, [{ section: 'outbox', key: 'user.u', value: { type: 'user.created' } }])
    assert.equal(await store.getUser('u'), full)
    assert.equal(await store.section('outbox').get('user.u'), { type: 'user.created' })
    await store.putUser({ id: 'u', name: 'Renamed', createdAt: 1 })
    assert.equal(await store.getUser('u'), { id: 'u', name: 'Renamed', createdAt: 1 })
  })

  S('memberships are listed per user in conversation order, updated and removed', async ({ store }) => {
    assert.equal(await store.listMemberships('u'), [])
    await store.setMember('u', 'c2', 2)
    await store.setMember('u', 'c1', 1)
    await store.setMember('u', 'c10', 10)
    await store.setMember('uv', 'c1', 3)
    await store.setMember('u', 'c2', 20)
    assert.equal(await store.listMemberships('u'), [{ conv: 'c1', joinedAt: 1 }, { conv: 'c10', joinedAt: 10 }, { conv: 'c2', joinedAt: 20 }])
    await store.setMember('u', 'c1', null)
    await store.setMember('u', 'never', null)
    assert.equal((await store.listMemberships('u')).map(m => m.conv), ['c10', 'c2'])
    assert.equal(await store.listMemberships('uv'), [{ conv: 'c1', joinedAt: 3 }])
  })

  S('settings are absent until put, then read back as put', async ({ store }) => {
    assert.is(await store.getSettings(), undefined)
    await store.putSettings({ maxGuests: 3, browserSync: true, nested: { a: [1, null] } })
    assert.equal(await store.getSettings(), { maxGuests: 3, browserSync: true, nested: { a: [1, null] } })
    await store.putSettings({ maxGuests: 4 })
    assert.equal(await store.getSettings(), { maxGuests: 4 })
  })

  S('a section gets, puts, deletes and batches JSON values of every kind, apart from other sections', async ({ store }) => {
    const a = store.section('outbox')
    const other = store.section('inbox')
    assert.is(await a.get('k'), undefined)
    for (const value of [true, false, 0, -1.5, 'text', [1, 'two', null], { deep: { er: [{}] } }]) {
      await a.put('k', value)
      assert.equal(await a.get('k'), value, JSON.stringify(value))
    }
    // null is no value: refused before writing, as the caller's mistake, stopping nothing.
    await rejectsWith(a.put('n', null), TypeError)
    await rejectsWith(a.batch([{ type: 'put', key: 'n', value: undefined }]), TypeError)
    assert.is(store.writeFailure, null)
    await a.del('k')
    assert.is(await a.get('k'), undefined)
    await a.del('never')
    await a.put('k1', 1)
    await a.batch([{ type: 'put', key: 'k2', value: 2 }, { type: 'put', key: 'k3', value: 3 }, { type: 'del', key: 'k1' }, { type: 'put', key: 'k4', value: 4 }, { type: 'del', key: 'k4' }, { type: 'put', key: 'k2', value: 22 }])
    await a.batch([])
    await other.put('k2', 'other')
    assert.equal(await collect(a.entries({})), [['k2', 22], ['k3', 3]])
    assert.is(await other.get('k2'), 'other')
    assert.is(await store.getSettings(), undefined)
    assert.throws(() => store.section('Bad Name'))
  })

  S('section entries come in byte order of their keys, within gt/gte/lt/lte, reversed and limited', async ({ store }) => {
    const s = store.section('inbox')
    const keys = ['a', 'k', 'k!', 'k!a', 'k!b', 'k~', 'kA', 'ka', 'kä', 'k漢', 'k\xff', 'l']
    await s.batch([...keys].reverse().map(key => ({ type: 'put' as const, key, value: key })))
    const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    const keysOf = async (range: Parameters<typeof s.entries>[0]): Promise<string[]> => (await collect(s.entries(range))).map(([k]) => k)
    assert.equal(await keysOf({}), sorted)
    assert.equal(await keysOf({ gte: 'k!', lt: 'k!\xff' }), ['k!', 'k!a', 'k!b'])
    assert.equal(await keysOf({ gt: 'k!', lt: 'k!\xff' }), ['k!a', 'k!b'])
    assert.equal(await keysOf({ gt: 'k', lte: 'kA' }), ['k!', 'k!a', 'k!b', 'kA'])
    assert.equal(await keysOf({ gte: 'k', lt: 'l', reverse: true, limit: 3 }), sorted.filter(k => k >= 'k' && k < 'l').reverse().slice(0, 3))
    assert.equal(await keysOf({ lt: 'k!a', reverse: true }), ['k!', 'k', 'a'])
    assert.equal(await keysOf({ gte: 'k', limit: 2 }), ['k', 'k!'])
    assert.equal(await keysOf({ gte: 'm' }), [])
  })

  S('section entries span many pages, and a loop may stop early', async ({ store }) => {
    const s = store.section('notify')
    const keys = Array.from({ length: 1234 }, (_, i) => `p!${String(i).padStart(5, '0')}`)
    await s.batch(keys.map((key, i) => ({ type: 'put' as const, key, value: i })))
    assert.equal((await collect(s.entries({ gte: 'p!', lt: 'p!\xff' }))).map(([k]) => k), keys)
    assert.equal((await collect(s.entries({ gte: 'p!', lt: 'p!\xff', reverse: true, limit: 700 }))).map(([k]) => k), [...keys].reverse().slice(0, 700))
    let n = 0
    for await (const entry of s.entries({ gte: 'p!' })) {
      if (++n === 3) { assert.equal(entry, [keys[2], 2]); break }
    }
    assert.is(n, 3)
  })

  S('a store tells where it keeps its data, without secrets', async ({ store }) => {
    assert.type(store.location, 'string')
    assert.ok(store.location.length > 0)
    assert.not.match(store.location, /:[^/@:]*@/, 'no password in the location')
  })

  const F = suite<{ opened: OpenedStore & { fault: Fault } }>(`store conformance: ${name}: fail-stop`)
  F.before.each(async ctx => { ctx.opened = await openFaulty() })
  F.after.each(async ctx => { await ctx.opened.cleanup() })

  F('after a failed write every write is refused, even once the cause is gone, until reopened and resumed; nothing written before is lost', async ({ opened }) => {
    const { store, fault } = opened
    await store.createConversation('a', 1)
    await store.appendUpdates('a', 1, [u8(1)], { archive: [{ pos: 0, message: msg('m0') }] })
    await store.putSettings({ v: 1 })
    assert.is(store.writeFailure, null)
    const failures: string[] = []
    store.onWriteFailure(f => failures.push(f.reason))

    await fault.start()
    // Writes until one fails (a store may hold a little in buffers), bounded.
    let refused = false
    for (let i = 2; i < 2000 && !refused; i++) {
      try {
        await store.appendUpdates('a', i, [new Uint8Array(4096).fill(i % 256)])
      } catch (e) {
        assert.ok(isChatError(e) && e.code === 'STORAGE_UNAVAILABLE', `the failing write is refused with STORAGE_UNAVAILABLE, got ${String(e)}`)
        refused = true
      }
    }
    assert.ok(refused, 'a write failed')
    assert.ok(store.writeFailure !== null)
    assert.is(failures.length, 1, 'told once')
    assert.is(failures[0], store.writeFailure.reason)
    await refusedAsUnavailable(store.putSettings({ v: 2 }))
    await refusedAsUnavailable(store.section('outbox').put('k', 1))
    assert.is(failures.length, 1, 'still told once')

    await fault.end()
    await refusedAsUnavailable(store.createConversation('b', 2))
    await refusedAsUnavailable(store.appendUpdates('b', 1, [u8(1)]))
    assert.ok(store.writeFailure !== null, 'fail-stop: no write is accepted before reopen')
    // Reads work once the cause is gone.
    assert.equal(await store.getSettings(), { v: 1 })

    await store.reopen()
    assert.ok(store.writeFailure !== null, 'reopening alone accepts no write')
    store.resumeWrites()
    assert.is(store.writeFailure, null)
    const stored = await store.loadDoc('a')
    assert.equal(Array.from(stored.updates[0]), b(1))
    await store.appendUpdates('a', stored.lastSeq + 1, [u8(99)])
    await store.putSettings({ v: 3 })
    await store.createConversation('b', 2)
    assert.equal(await store.getSettings(), { v: 3 })
    assert.is(await store.archivePosOf('a', 'm0'), 0)
    assert.is(await store.conversationExists('b'), true)
    assert.equal(plain(await store.loadDoc('a')).updates.at(-1), b(99))
  })

  S.run()
  F.run()
}
