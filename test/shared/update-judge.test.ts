import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { UpdateJudge, type Verdict, type Writer } from '../../shared/update-judge.ts'
import type { ErrorCode } from '../../shared/errors.ts'
import { craft, type Ref } from '../helpers/crafted.ts'

// ---------------------------------------------------------------------------------------------
// Fixture: a server document as the server builds it, and honest clients synced from it.

const SERVER_CLIENT = 1
const ALICE: Writer = { userId: 'alice', role: 'participant', canWrite: true }
const BOB: Writer = { userId: 'bob', role: 'participant', canWrite: true }
const CAROL_READ_ONLY: Writer = { userId: 'carol', role: 'participant', canWrite: false }
const GUEST: Writer = { userId: 'gina', role: 'guest', canWrite: true }

interface Fixture {
  server: Y.Doc
  judge: UpdateJudge
  bindings: Map<number, string>
}

const makeFixture = (maxTextLength = 100): Fixture => {
  const server = new Y.Doc()
  server.clientID = SERVER_CLIENT
  server.transact(() => {
    const participants = server.getMap('participants')
    participants.set('alice', { access: 'ReadWrite', notify: true, joinedAt: 1 })
    participants.set('bob', { access: 'ReadWrite', notify: true, joinedAt: 1 })
    participants.set('carol', { access: 'Read', notify: true, joinedAt: 1 })
    const meta = server.getMap('meta')
    meta.set('createdAt', 1)
    meta.set('guestAccess', 'write')
    server.getArray('messages')
    server.getMap('reads')
    server.getMap('reactions')
  })
  const bindings = new Map<number, string>()
  const judge = new UpdateJudge(server, {
    maxTextLength,
    clientOwner: id => bindings.get(id),
    reservedClientIds: new Set([SERVER_CLIENT])
  })
  return { server, judge, bindings }
}

/** A client doc with all roots, synced from the server. */
const clientOf = (f: Fixture, clientID: number): Y.Doc => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  doc.getArray('messages')
  doc.getMap('participants')
  doc.getMap('meta')
  doc.getMap('reads')
  doc.getMap('reactions')
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(f.server))
  return doc
}

/** What `from` has that `to` lacks: a sync step 2 from `from` to `to`. */
const diff = (from: Y.Doc, to: Y.Doc): Uint8Array => Y.encodeStateAsUpdate(from, Y.encodeStateVector(to))

const msg = (id: string, senderId: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ id, senderId, text: `text of ${id}`, createdAt: 1000, type: 'UserMessage', ...extra })

const pushMessages = (doc: Y.Doc, ...messages: Array<Record<string, unknown>>): void => {
  doc.getArray('messages').push(messages)
}

const snapshot = (doc: Y.Doc): { bytes: Uint8Array, roots: string[] } =>
  ({ bytes: Y.encodeStateAsUpdate(doc), roots: [...doc.share.keys()].sort() })

/** Judges, and applies like the server does: only on ok && changes, then asserts nothing pending. */
const deliver = (f: Fixture, update: Uint8Array, writer: Writer): Verdict => {
  const v = f.judge.judge(update, writer)
  if (v.ok && v.changes) {
    Y.applyUpdate(f.server, update, 'peer')
    for (const id of v.newClientIds) f.bindings.set(id, writer.userId)
    assert.is(f.server.store.pendingStructs, null)
    assert.is(f.server.store.pendingDs, null)
  }
  return v
}

const accepts = (f: Fixture, update: Uint8Array, writer: Writer, changes = true): Verdict => {
  const v = deliver(f, update, writer)
  if (!v.ok) throw new Error(`refused with ${v.error.code}: ${v.error.message}`)
  assert.is(v.changes, changes, 'changes')
  return v
}

/** Asserts a refusal with `code`, and that judging left the server doc as it was. */
const refuses = (f: Fixture, update: Uint8Array, writer: Writer, code: ErrorCode): void => {
  const before = snapshot(f.server)
  let v: Verdict | undefined
  try {
    v = f.judge.judge(update, writer)
  } catch (e) {
    assert.unreachable(`judge threw ${String(e)}`)
  }
  if (v === undefined || v.ok) return assert.unreachable(`accepted, expected ${code}`)
  assert.is(v.error.code, code, v.error.message)
  const after = snapshot(f.server)
  assert.equal(after.roots, before.roots, 'no root appeared')
  assert.ok(Buffer.from(after.bytes).equals(Buffer.from(before.bytes)), 'server doc unchanged')
}

/** A copy of the server doc, to show what Yjs itself would do with an update. */
const cloneOf = (f: Fixture): Y.Doc => {
  const doc = new Y.Doc()
  doc.getArray('messages')
  doc.getMap('participants')
  doc.getMap('meta')
  doc.getMap('reads')
  doc.getMap('reactions')
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(f.server))
  return doc
}

// ---------------------------------------------------------------------------------------------
// Hand-crafted V1 updates.

/** The id of the current value item of `participants[key]` on the server. */
const mapEntryId = (doc: Y.Doc, root: string, key: string): Ref => {
  const item = doc.getMap(root)._map.get(key)
  if (item === undefined) throw new Error(`no ${root}[${key}]`)
  return [item.id.client, item.id.clock]
}

// ---------------------------------------------------------------------------------------------

const basics = suite('UpdateJudge: honest updates')

basics('accepts a participant appending its own message and reports its new client id', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  const v = accepts(f, diff(alice, f.server), ALICE)
  assert.equal(v.ok && v.newClientIds, [100])
  assert.equal(f.server.getArray('messages').toJSON(), [msg('m1', 'alice')])
})

basics('accepts a guest with write access appending its own message', () => {
  const f = makeFixture()
  const gina = clientOf(f, 150)
  pushMessages(gina, msg('g1', 'gina'))
  accepts(f, diff(gina, f.server), GUEST)
})

basics('accepts updates captured from doc.on("update") one by one', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  const updates: Uint8Array[] = []
  alice.on('update', (u: Uint8Array) => { updates.push(u) })
  pushMessages(alice, msg('m1', 'alice'))
  pushMessages(alice, msg('m2', 'alice'))
  alice.getArray('messages').delete(0, 1)
  alice.getMap('reads').set('alice', 1000)
  for (const u of updates) accepts(f, u, ALICE)
  assert.equal(f.server.getArray('messages').toJSON(), [msg('m2', 'alice')])
  assert.equal(f.server.getMap('reads').toJSON(), { alice: 1000 })
})

basics('accepts an empty update as changing nothing', () => {
  const f = makeFixture()
  accepts(f, new Uint8Array([0, 0]), ALICE, false)
})

basics('accepts an edit: the old object deleted and one with the same id and editedAt inserted', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'), msg('m2', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const before = Y.encodeStateVector(alice)
  alice.transact(() => {
    const messages = alice.getArray('messages')
    messages.delete(0, 1)
    messages.insert(0, [msg('m1', 'alice', { text: 'edited', editedAt: 2000 })])
  })
  accepts(f, Y.encodeStateAsUpdate(alice, before), ALICE)
  assert.equal(f.server.getArray('messages').toJSON(), [msg('m1', 'alice', { text: 'edited', editedAt: 2000 }), msg('m2', 'alice')])
  // The index followed the edit: the id is live once, so a second copy is refused, a second edit is not.
  const bob = clientOf(f, 200)
  pushMessages(bob, msg('m1', 'bob'))
  refuses(f, diff(bob, f.server), BOB, 'DUPLICATE_MESSAGE_ID')
  const sv = Y.encodeStateVector(alice)
  alice.transact(() => {
    const messages = alice.getArray('messages')
    messages.delete(0, 1)
    messages.insert(0, [msg('m1', 'alice', { text: 'again', editedAt: 3000 })])
  })
  accepts(f, Y.encodeStateAsUpdate(alice, sv), ALICE)
})

basics('accepts an offline create-then-edit from a client without gc, where the update deletes its own first version', () => {
  const f = makeFixture()
  const alice = new Y.Doc({ gc: false })
  alice.clientID = 100
  Y.applyUpdate(alice, Y.encodeStateAsUpdate(f.server))
  const messages = alice.getArray('messages')
  messages.push([msg('m1', 'alice')])
  alice.transact(() => {
    messages.delete(0, 1)
    messages.insert(0, [msg('m1', 'alice', { text: 'edited', editedAt: 2 })])
  })
  accepts(f, diff(alice, f.server), ALICE)
  assert.equal(f.server.getArray('messages').toJSON(), [msg('m1', 'alice', { text: 'edited', editedAt: 2 })])
})

basics('accepts a participant writing its own read marker, overwriting the previous one', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  alice.getMap('reads').set('alice', 1000)
  accepts(f, diff(alice, f.server), ALICE)
  const sv = Y.encodeStateVector(alice)
  alice.getMap('reads').set('alice', 2000)
  accepts(f, Y.encodeStateAsUpdate(alice, sv), ALICE)
  assert.equal(f.server.getMap('reads').toJSON(), { alice: 2000 })
})

basics('accepts a participant deleting its own message', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'), msg('m2', 'alice'), msg('m3', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const sv = Y.encodeStateVector(alice)
  alice.getArray('messages').delete(1, 1)
  accepts(f, Y.encodeStateAsUpdate(alice, sv), ALICE)
  assert.equal(f.server.getArray('messages').length, 2)
})

basics('indexes messages the server writes itself, so a peer cannot reuse their ids', () => {
  const f = makeFixture()
  f.server.getArray('messages').push([msg('srv1', 'alice')])
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('srv1', 'alice'))
  refuses(f, diff(alice, f.server), ALICE, 'DUPLICATE_MESSAGE_ID')
})

basics('indexes messages already in the document when the judge is created', () => {
  const f = makeFixture()
  f.server.getArray('messages').push([msg('old', 'alice')])
  const judge = new UpdateJudge(f.server, { maxTextLength: 100, clientOwner: () => undefined, reservedClientIds: new Set() })
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('old', 'alice'))
  const v = judge.judge(diff(alice, f.server), ALICE)
  assert.is(v.ok ? 'ok' : v.error.code, 'DUPLICATE_MESSAGE_ID')
  judge.destroy()
})

const rules = suite('UpdateJudge: rules of the document')

rules('refuses a message written under another sender id', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'bob'))
  refuses(f, diff(alice, f.server), ALICE, 'SENDER_MISMATCH')
})

rules('refuses a SystemMessage from a peer', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, { id: 's1', senderId: null, text: 'x', createdAt: 1, type: 'SystemMessage' })
  refuses(f, diff(alice, f.server), ALICE, 'WRITE_FORBIDDEN')
})

rules('refuses a text over maxTextLength with TEXT_TOO_LONG', () => {
  const f = makeFixture(10)
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice', { text: 'x'.repeat(11) }))
  refuses(f, diff(alice, f.server), ALICE, 'TEXT_TOO_LONG')
})

rules('refuses a message with an unknown key, a bad custom map or a missing field', () => {
  const f = makeFixture()
  for (const bad of [msg('m1', 'alice', { extra: 1 }), msg('m1', 'alice', { custom: { a: 1 } }), { id: 'm1', senderId: 'alice', type: 'UserMessage', text: 'x' }, 'just a string', [msg('m1', 'alice')]]) {
    const alice = clientOf(f, 100)
    alice.getArray('messages').push([bad])
    refuses(f, diff(alice, f.server), ALICE, 'INVALID_MESSAGE')
  }
})

rules('refuses a message id that is already live, unless it is an edit', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const sv = Y.encodeStateVector(alice)
  pushMessages(alice, msg('m1', 'alice', { editedAt: 5 }))
  refuses(f, Y.encodeStateAsUpdate(alice, sv), ALICE, 'DUPLICATE_MESSAGE_ID')
})

rules('refuses two messages with one id in the same update', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'), msg('m1', 'alice'))
  refuses(f, diff(alice, f.server), ALICE, 'DUPLICATE_MESSAGE_ID')
})

rules('refuses an edit without editedAt', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const sv = Y.encodeStateVector(alice)
  alice.transact(() => {
    alice.getArray('messages').delete(0, 1)
    alice.getArray('messages').insert(0, [msg('m1', 'alice', { text: 'edited' })])
  })
  refuses(f, Y.encodeStateAsUpdate(alice, sv), ALICE, 'DUPLICATE_MESSAGE_ID')
})

rules('refuses deleting or editing a message of another user', () => {
  const f = makeFixture()
  const bob = clientOf(f, 200)
  pushMessages(bob, msg('b1', 'bob'))
  accepts(f, diff(bob, f.server), BOB)
  const alice = clientOf(f, 100)
  const sv = Y.encodeStateVector(alice)
  alice.getArray('messages').delete(0, 1)
  refuses(f, Y.encodeStateAsUpdate(alice, sv), ALICE, 'SENDER_MISMATCH')
  const alice2 = clientOf(f, 101)
  alice2.transact(() => {
    alice2.getArray('messages').delete(0, 1)
    alice2.getArray('messages').insert(0, [msg('b1', 'alice', { editedAt: 2 })])
  })
  refuses(f, diff(alice2, f.server), ALICE, 'SENDER_MISMATCH')
})

rules('a moderator deletes another user\'s message, but never edits it (same id in the same update)', () => {
  const MOD: Writer = { ...ALICE, moderator: true }
  const f = makeFixture()
  const bob = clientOf(f, 200)
  pushMessages(bob, msg('b1', 'bob'), msg('b2', 'bob'))
  accepts(f, diff(bob, f.server), BOB)
  const edit = clientOf(f, 101)
  edit.transact(() => {
    edit.getArray('messages').delete(0, 1)
    edit.getArray('messages').insert(0, [msg('b1', 'alice', { editedAt: 2 })])
  })
  refuses(f, diff(edit, f.server), MOD, 'SENDER_MISMATCH')
  const alice = clientOf(f, 100)
  const sv = Y.encodeStateVector(alice)
  alice.getArray('messages').delete(0, 1)
  accepts(f, Y.encodeStateAsUpdate(alice, sv), MOD)
  assert.equal(f.server.getArray('messages').toJSON().map(m => (m as { id: string }).id), ['b2'])
})

rules('refuses writing to participants or meta, by map key or by deletion', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  alice.getMap('participants').set('alice', { access: 'ReadWrite', notify: false, joinedAt: 1 })
  refuses(f, diff(alice, f.server), ALICE, 'WRITE_FORBIDDEN')
  const alice2 = clientOf(f, 101)
  alice2.getMap('meta').set('guestAccess', 'none')
  refuses(f, diff(alice2, f.server), ALICE, 'WRITE_FORBIDDEN')
  const alice3 = clientOf(f, 102)
  const sv = Y.encodeStateVector(alice3)
  alice3.getMap('participants').delete('bob')
  refuses(f, Y.encodeStateAsUpdate(alice3, sv), ALICE, 'WRITE_FORBIDDEN')
})

rules('refuses a read marker under another key, of another type, or from a guest', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  alice.getMap('reads').set('bob', 1)
  refuses(f, diff(alice, f.server), ALICE, 'WRITE_FORBIDDEN')
  const alice2 = clientOf(f, 101)
  alice2.getMap('reads').set('alice', 'yesterday')
  refuses(f, diff(alice2, f.server), ALICE, 'WRITE_FORBIDDEN')
  refuses(f, craft([{ client: 103, clock: 0, structs: [{ parent: 'reads', parentSub: 'alice', content: { any: [Infinity] } }] }]), ALICE, 'WRITE_FORBIDDEN')
  const gina = clientOf(f, 150)
  gina.getMap('reads').set('gina', 1)
  refuses(f, diff(gina, f.server), GUEST, 'WRITE_FORBIDDEN')
})

rules('refuses deleting the read marker of another participant', () => {
  const f = makeFixture()
  const bob = clientOf(f, 200)
  bob.getMap('reads').set('bob', 1)
  accepts(f, diff(bob, f.server), BOB)
  const [client, clock] = mapEntryId(f.server, 'reads', 'bob')
  refuses(f, craft([], [[client, clock, 1]]), ALICE, 'WRITE_FORBIDDEN')
})

rules('refuses other content kinds in messages (a Y.Text string, a nested type)', () => {
  const f = makeFixture()
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { string: 'hello' } }] }]), ALICE, 'INVALID_MESSAGE')
  const alice = clientOf(f, 101)
  alice.getArray('messages').push([new Y.Map()])
  refuses(f, diff(alice, f.server), ALICE, 'INVALID_MESSAGE')
})

rules('refuses anything that changes the doc from a read-only connection, and accepts its no-op sync step 2', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const carol = clientOf(f, 300)
  accepts(f, diff(carol, f.server), CAROL_READ_ONLY, false)
  accepts(f, Y.encodeStateAsUpdate(carol), CAROL_READ_ONLY, false)
  const carol2 = clientOf(f, 301)
  pushMessages(carol2, msg('c1', 'carol'))
  refuses(f, diff(carol2, f.server), CAROL_READ_ONLY, 'READ_ONLY')
  const carol3 = clientOf(f, 302)
  const sv = Y.encodeStateVector(carol3)
  carol3.getArray('messages').delete(0, 1)
  refuses(f, Y.encodeStateAsUpdate(carol3, sv), CAROL_READ_ONLY, 'READ_ONLY')
})

rules('a read-only participant moves its own read marker, and nothing else (v1.1 §3)', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const carol = clientOf(f, 310)
  carol.getMap('reads').set('carol', 1000)
  accepts(f, diff(carol, f.server), CAROL_READ_ONLY)
  carol.getMap('reads').set('carol', 2000)
  accepts(f, diff(carol, f.server), CAROL_READ_ONLY)
  assert.is(f.server.getMap('reads').get('carol'), 2000)
  const offline = clientOf(f, 315)
  offline.getMap('reads').set('carol', 2500)
  offline.getMap('reads').set('carol', 2600)
  accepts(f, diff(offline, f.server), CAROL_READ_ONLY, true)
  assert.is(f.server.getMap('reads').get('carol'), 2600, 'two moves made offline arrive as one update')
  const other = clientOf(f, 311)
  other.getMap('reads').set('alice', 1)
  refuses(f, diff(other, f.server), CAROL_READ_ONLY, 'WRITE_FORBIDDEN')
  const mixed = clientOf(f, 312)
  mixed.getMap('reads').set('carol', 3000)
  pushMessages(mixed, msg('c2', 'carol'))
  refuses(f, diff(mixed, f.server), CAROL_READ_ONLY, 'READ_ONLY')
  const deleter = clientOf(f, 313)
  deleter.getMap('reads').set('carol', 4000)
  deleter.getArray('messages').delete(0, 1)
  refuses(f, diff(deleter, f.server), CAROL_READ_ONLY, 'READ_ONLY')
  const guest = clientOf(f, 314)
  guest.getMap('reads').set('gina', 1)
  refuses(f, diff(guest, f.server), { ...GUEST, canWrite: false }, 'WRITE_FORBIDDEN')
})

rules('refuses structs under a client id bound to another user, or the server\'s own id', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  assert.is(f.bindings.get(100), 'alice')
  // bob writes under alice's client id (a Y.Doc would pick a new id itself, so craft it).
  refuses(f, craft([{ client: 100, clock: 1, structs: [{ parent: 'messages', content: { any: [msg('b1', 'bob')] } }] }]), BOB, 'CLIENT_ID_TAKEN')
  const serverState = Y.getState(f.server.store, SERVER_CLIENT)
  refuses(f, craft([{ client: SERVER_CLIENT, clock: serverState, structs: [{ parent: 'messages', content: { any: [msg('m9', 'alice')] } }] }]), ALICE, 'CLIENT_ID_TAKEN')
  // bob may write under a fresh id, which he then owns.
  const v = accepts(f, craft([{ client: 200, clock: 0, structs: [{ parent: 'messages', content: { any: [msg('b1', 'bob')] } }] }]), BOB)
  assert.equal(v.ok && v.newClientIds, [200])
})

const facts = suite('UpdateJudge: facts about Yjs')

facts('fact 1: judges an item by the parent of its origin: ContentDeleted after participants.bob is refused, not taken for a message', () => {
  const f = makeFixture()
  const bobEntry = mapEntryId(f.server, 'participants', 'bob')
  const update = craft([{ client: 100, clock: 0, structs: [{ origin: bobEntry, content: { deleted: 1 } }] }])
  const clone = cloneOf(f)
  Y.applyUpdate(clone, update)
  assert.not.ok(clone.getMap('participants').has('bob'), 'Yjs silently removes bob')
  refuses(f, update, ALICE, 'WRITE_FORBIDDEN')
  const overwrite = craft([{ client: 100, clock: 0, structs: [{ origin: bobEntry, content: { any: [{ access: 'None', notify: false, joinedAt: 1 }] } }] }])
  refuses(f, overwrite, ALICE, 'WRITE_FORBIDDEN')
  // The same through a right origin, and through an origin that is earlier in the same update.
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ rightOrigin: bobEntry, content: { deleted: 1 } }] }]), ALICE, 'WRITE_FORBIDDEN')
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ origin: bobEntry, content: { deleted: 1 } }, { origin: [100, 0], content: { deleted: 1 } }] }]), ALICE, 'WRITE_FORBIDDEN')
})

facts('fact 1: accepts a message whose parent comes from an origin in messages, in the doc or earlier in the update', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const first = f.server.getArray('messages')._start
  if (first === null) throw new Error('no message')
  accepts(f, craft([{
    client: 101,
    clock: 0,
    structs: [{ origin: [first.id.client, first.id.clock], content: { any: [msg('m2', 'alice')] } }, { origin: [101, 0], content: { any: [msg('m3', 'alice')] } }]
  }]), ALICE)
  assert.equal(f.server.getArray('messages').toJSON().map(m => (m as { id: string }).id), ['m1', 'm2', 'm3'])
})

facts('fact 2: refuses an unknown root name even in a struct Yjs would skip, and never creates a root itself', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const knownStruct = craft([{ client: 100, clock: 0, structs: [{ parent: 'evil', content: { any: [1] } }] }])
  const clone = cloneOf(f)
  Y.applyUpdate(clone, knownStruct)
  assert.ok(clone.share.has('evil'), 'applyUpdate creates the root although it skips the struct')
  refuses(f, knownStruct, ALICE, 'WRITE_FORBIDDEN')
  refuses(f, craft([{ client: 101, clock: 0, structs: [{ parent: 'evil', content: { any: [1] } }] }]), ALICE, 'WRITE_FORBIDDEN')
  // A doc without the reads root yet: judging an update that writes it does not create it.
  const bare = new Y.Doc()
  bare.getArray('messages')
  const judge = new UpdateJudge(bare, { maxTextLength: 100, clientOwner: () => undefined, reservedClientIds: new Set() })
  const v = judge.judge(craft([{ client: 7, clock: 0, structs: [{ parent: 'reads', parentSub: 'alice', content: { any: [5] } }] }]), ALICE)
  assert.ok(v.ok)
  assert.equal([...bare.share.keys()], ['messages'])
  judge.destroy()
})

facts('fact 3: accepts a reconnecting sync step 2 that repeats deletions the server already has', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'), msg('m2', 'alice'))
  accepts(f, diff(alice, f.server), ALICE)
  const bob = clientOf(f, 200) // bob saw alice's messages
  const sv = Y.encodeStateVector(alice)
  alice.getArray('messages').delete(0, 2)
  accepts(f, Y.encodeStateAsUpdate(alice, sv), ALICE)
  Y.applyUpdate(bob, diff(f.server, bob))
  // bob reconnects: his sync step 2 carries every deletion he knows, all by alice.
  accepts(f, diff(bob, f.server), BOB, false)
  pushMessages(bob, msg('b1', 'bob'))
  accepts(f, diff(bob, f.server), BOB, true)
})

facts('fact 4: accepts a replay of a client\'s whole local store, from any writer, as no change', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  alice.getMap('reads').set('alice', 3)
  accepts(f, diff(alice, f.server), ALICE)
  accepts(f, Y.encodeStateAsUpdate(alice), ALICE, false)
  accepts(f, Y.encodeStateAsUpdate(alice), BOB, false)
  accepts(f, Y.encodeStateAsUpdate(f.server), CAROL_READ_ONLY, false)
})

facts('fact 4: judges only the new part of a partly known struct', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  const updates: Uint8Array[] = []
  alice.on('update', (u: Uint8Array) => { updates.push(u) })
  for (let i = 0; i < 5; i++) pushMessages(alice, msg(`m${i}`, 'alice'))
  const whole = Y.encodeStateAsUpdate(alice)
  assert.is(Y.decodeUpdate(whole).structs.filter(s => s.id.client === 100).length, 1, 'the five appends merged into one item')
  accepts(f, updates[0], ALICE)
  accepts(f, updates[1], ALICE)
  accepts(f, whole, ALICE) // overlap: clocks 0-1 known, 2-4 new
  assert.is(f.server.getArray('messages').length, 5)
  // Known part not judged: a replay whose known elements are foreign passes; a bad new part does not.
  const known = f.server.getArray('messages').toJSON()
  accepts(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [...known.map(() => 'junk')] } }] }]), ALICE, false)
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [...known, msg('m5', 'bob')] } }] }]), ALICE, 'SENDER_MISMATCH')
  accepts(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [...known.map(() => 'junk'), msg('m5', 'alice')] } }] }]), ALICE, true)
})

facts('fact 5: refuses an item whose origin is itself or a later clock of its own client', () => {
  const f = makeFixture()
  const self = craft([{ client: 100, clock: 0, structs: [{ origin: [100, 0], content: { any: [msg('m1', 'alice')] } }] }])
  assert.throws(() => Y.applyUpdate(cloneOf(f), self), undefined, 'Yjs throws mid-transaction')
  refuses(f, self, ALICE, 'MALFORMED_MESSAGE')
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ rightOrigin: [100, 5], content: { deleted: 1 } }] }]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: [100, 3], content: { deleted: 1 } }] }]), ALICE, 'MALFORMED_MESSAGE')
})

facts('fact 6: refuses a message holding a __proto__ key, which lib0 would turn into a forged prototype', () => {
  const f = makeFixture()
  const forged = JSON.parse('{"id":"m1","text":"x","createdAt":1,"type":"UserMessage","__proto__":{"senderId":"alice"}}') as Record<string, unknown>
  const update = craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [forged] } }] }])
  const decoded = Y.decodeUpdate(update).structs[0]
  assert.is(((decoded as Y.Item).content as Y.ContentAny).arr[0].senderId, 'alice', 'a naive check sees senderId alice')
  refuses(f, update, ALICE, 'INVALID_MESSAGE')
  const nested = JSON.parse('{"id":"m1","senderId":"alice","text":"x","createdAt":1,"type":"UserMessage","custom":{"__proto__":"x"}}') as Record<string, unknown>
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [nested] } }] }]), ALICE, 'INVALID_MESSAGE')
})

facts('fact 7: checks every element of an item that merged many offline appends', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  pushMessages(alice, msg('m2', 'bob'))
  pushMessages(alice, msg('m3', 'alice'))
  const update = diff(alice, f.server)
  assert.is(Y.decodeUpdate(update).structs.length, 1)
  refuses(f, update, ALICE, 'SENDER_MISMATCH')
})

facts('fact 8: refuses an array item that carries a map key', () => {
  const f = makeFixture()
  const update = craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', parentSub: 'hidden', content: { any: [msg('m1', 'alice')] } }] }])
  const clone = cloneOf(f)
  Y.applyUpdate(clone, update)
  assert.ok(clone.getArray('messages')._map.has('hidden'), 'Yjs puts it in a hidden map')
  refuses(f, update, ALICE, 'WRITE_FORBIDDEN')
})

facts('fact 9: refuses what Yjs would keep pending: clock gaps, unknown origins, Skip before structs, deletions beyond the state', () => {
  const f = makeFixture()
  const cases: Array<[string, Uint8Array]> = [
    ['clock gap', craft([{ client: 100, clock: 3, structs: [{ parent: 'messages', content: { any: [msg('m1', 'alice')] } }] }])],
    ['unknown origin', craft([{ client: 100, clock: 0, structs: [{ origin: [555, 0], content: { any: [msg('m1', 'alice')] } }] }])],
    ['origin beyond the server state', craft([{ client: 100, clock: 0, structs: [{ origin: [SERVER_CLIENT, 999], content: { any: [msg('m1', 'alice')] } }] }])],
    ['Skip then a struct', craft([{ client: 100, clock: 0, structs: [{ content: { skip: 2 } }, { parent: 'messages', content: { any: [msg('m1', 'alice')] } }] }])],
    ['deletion of an unknown struct', craft([], [[555, 0, 1]])],
    ['deletion past the state', craft([], [[SERVER_CLIENT, 0, 999]])],
    ['empty deletion at the state', craft([], [[SERVER_CLIENT, 999, 0]])],
    ['origins in a cycle', craft([
      { client: 100, clock: 0, structs: [{ origin: [101, 0], content: { any: [msg('m1', 'alice')] } }] },
      { client: 101, clock: 0, structs: [{ origin: [100, 0], content: { any: [msg('m2', 'alice')] } }] }
    ])]
  ]
  for (const [what, update] of cases) {
    const clone = cloneOf(f)
    let threw = false
    try {
      Y.applyUpdate(clone, update)
    } catch {
      threw = true // an empty deletion at the state makes Yjs throw while it encodes the pending deletion
    }
    assert.ok(threw || clone.store.pendingStructs !== null || clone.store.pendingDs !== null, `Yjs keeps ${what} pending`)
    refuses(f, update, ALICE, 'MISSING_DEPENDENCIES')
  }
})

facts('fact 9: accepts what Yjs ignores without pending: a trailing Skip, dependencies met later in the same update', () => {
  const f = makeFixture()
  accepts(f, craft([{ client: 100, clock: 0, structs: [{ content: { skip: 2 } }] }]), ALICE, false)
  accepts(f, craft([
    { client: 100, clock: 0, structs: [{ origin: [101, 0], content: { any: [msg('m2', 'alice')] } }] },
    { client: 101, clock: 0, structs: [{ parent: 'messages', content: { any: [msg('m1', 'alice')] } }] }
  ], [[101, 0, 1]]), ALICE)
  assert.equal(f.server.getArray('messages').toJSON(), [msg('m2', 'alice')])
})

const malformed = suite('UpdateJudge: malformed input')

malformed('refuses every truncation of a valid update with MALFORMED_MESSAGE, without throwing', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice', { custom: { k: 'v' } }))
  alice.getMap('reads').set('alice', 1.5)
  const update = diff(alice, f.server)
  for (let n = 0; n < update.length; n++) refuses(f, update.subarray(0, n), ALICE, 'MALFORMED_MESSAGE')
  accepts(f, update, ALICE)
})

malformed('refuses trailing bytes, a V2 update, huge varints and absurd counts', () => {
  const f = makeFixture()
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'))
  const update = diff(alice, f.server)
  refuses(f, new Uint8Array([...update, 0]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, Y.encodeStateAsUpdateV2(alice, Y.encodeStateVector(f.server)), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, new Uint8Array(20).fill(0xff), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, new Uint8Array([1, 0xff, 0xff, 0xff, 0xff, 0x0f, 100, 0]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, new Uint8Array([]), ALICE, 'MALFORMED_MESSAGE')
})

malformed('refuses JSON values nested too deeply instead of overflowing the stack', () => {
  const f = makeFixture()
  const depth = 200_000
  const update = craft([{
    client: 100,
    clock: 0,
    structs: [{
      parent: 'messages',
      content: {
        length: 1,
        anyRaw: e => {
          for (let i = 0; i < depth; i++) { encoding.writeUint8(e, 117); encoding.writeVarUint(e, 1) }
          encoding.writeUint8(e, 126)
        }
      }
    }]
  }])
  refuses(f, update, ALICE, 'MALFORMED_MESSAGE')
})

malformed('refuses zero-length structs and unknown content or value tags', () => {
  const f = makeFixture()
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { any: [] } }] }]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ content: { gc: 0 } }] }]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, new Uint8Array([1, 1, 100, 0, 11, 1, 8, 'm'.charCodeAt(0), 0]), ALICE, 'MALFORMED_MESSAGE')
  refuses(f, craft([{ client: 100, clock: 0, structs: [{ parent: 'messages', content: { length: 1, anyRaw: e => { encoding.writeUint8(e, 100) } } }] }]), ALICE, 'MALFORMED_MESSAGE')
})

malformed('never throws on random bytes', () => {
  const f = makeFixture()
  let seed = 12345
  const rand = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 }
  for (let i = 0; i < 2000; i++) {
    const bytes = new Uint8Array(Math.floor(rand() * 40))
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256)
    const v = f.judge.judge(bytes, ALICE)
    if (v.ok && v.changes) {
      const clone = cloneOf(f)
      Y.applyUpdate(clone, bytes)
      assert.is(clone.store.pendingStructs, null)
    }
  }
})

const reactions = suite('UpdateJudge: reactions and replies')

/** The server holds m1 by alice and m2 by bob; returns alice's synced client. */
const withTwoMessages = (f: Fixture): Y.Doc => {
  const alice = clientOf(f, 100)
  pushMessages(alice, msg('m1', 'alice'), msg('m2', 'bob'))
  Y.applyUpdate(f.server, Y.encodeStateAsUpdate(alice), 'seed')
  return alice
}

reactions('a reaction under the own key to a live message passes with nothing to look up', () => {
  const f = makeFixture()
  const alice = withTwoMessages(f)
  alice.getMap('reactions').set('m2/alice', ['👍'])
  const v = accepts(f, diff(alice, f.server), ALICE)
  assert.equal(v.ok && v.archiveChecks, { reactionTargets: [], references: [] })
  alice.getMap('reactions').delete('m2/alice')
  accepts(f, diff(alice, f.server), ALICE)
  assert.is(f.server.getMap('reactions').size, 0)
})

reactions("another user's key, a read-only writer, and a bad value are refused", () => {
  const f = makeFixture()
  const alice = withTwoMessages(f)
  alice.getMap('reactions').set('m2/bob', ['👍'])
  refuses(f, diff(alice, f.server), ALICE, 'WRITE_FORBIDDEN')
  const carol = clientOf(f, 101)
  carol.getMap('reactions').set('m2/carol', ['👍'])
  refuses(f, diff(carol, f.server), CAROL_READ_ONLY, 'READ_ONLY')
  refuses(f, craft([{ client: 102, clock: 0, structs: [{ parent: 'reactions', parentSub: 'm1/alice', content: { any: [['👍'], ['🎉']] } }] }]), ALICE, 'INVALID_REACTION')
  refuses(f, craft([{ client: 102, clock: 0, structs: [{ parent: 'reactions', content: { any: [['👍']] } }] }]), ALICE, 'WRITE_FORBIDDEN')
})

reactions("deleting another user's reaction is refused", () => {
  const f = makeFixture()
  withTwoMessages(f)
  const bob = clientOf(f, 103)
  bob.getMap('reactions').set('m1/bob', ['👍'])
  accepts(f, diff(bob, f.server), BOB)
  f.bindings.set(103, 'bob')
  refuses(f, craft([], [[...mapEntryId(f.server, 'reactions', 'm1/bob'), 1]]), ALICE, 'WRITE_FORBIDDEN')
})

reactions('targets and references not live are reported for the archive; those the update deletes are refused', () => {
  const f = makeFixture()
  const alice = withTwoMessages(f)
  alice.getMap('reactions').set('old/alice', ['👍'])
  pushMessages(alice, msg('m3', 'alice', { referencedMessageId: 'older' }), msg('m4', 'alice', { referencedMessageId: 'm3' }))
  const v = accepts(f, diff(alice, f.server), ALICE)
  assert.equal(v.ok && v.archiveChecks, { reactionTargets: ['old'], references: ['older'] })

  const gone = clientOf(f, 104)
  gone.transact(() => {
    gone.getArray('messages').delete(0, 1) // m1, alice's own
    gone.getMap('reactions').set('m1/alice', ['👍'])
  })
  refuses(f, diff(gone, f.server), ALICE, 'REACTION_TARGET_NOT_FOUND')
  const reply = clientOf(f, 105)
  reply.transact(() => {
    reply.getArray('messages').delete(0, 1)
    pushMessages(reply, msg('m5', 'alice', { referencedMessageId: 'm1' }))
  })
  refuses(f, diff(reply, f.server), ALICE, 'REFERENCED_MESSAGE_NOT_FOUND')
  const self = clientOf(f, 106)
  pushMessages(self, msg('m6', 'alice', { referencedMessageId: 'm6' }))
  refuses(f, diff(self, f.server), ALICE, 'REFERENCED_MESSAGE_NOT_FOUND')
})

basics.run()
rules.run()
facts.run()
malformed.run()
reactions.run()
