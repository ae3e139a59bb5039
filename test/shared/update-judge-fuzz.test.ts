/**
 * Seeded differential fuzz of UpdateJudge against Yjs itself. Replay a failure with
 * `FUZZ_SEED=<seed> node --import tsx node_modules/uvu/bin.js test/shared update-judge-fuzz`.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { UpdateJudge, type Writer } from '../../shared/update-judge.ts'
import { messageShapeProblem } from '../../shared/schema.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 20250601)
const HONEST_STEPS = 800
const RANDOM_UPDATES = 4000
const SERVER_CLIENT = 1

/** mulberry32: small, seedable, good enough for test inputs. */
const makeRandom = (seed: number): { next: () => number, int: (n: number) => number, pick: <T>(xs: readonly T[]) => T } => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  return { next, int, pick: xs => xs[int(xs.length)] }
}

interface Replica {
  name: string
  writer: Writer
  doc: Y.Doc
  queue: Uint8Array[]
  created: string[]
}

const withRoots = (doc: Y.Doc): Y.Doc => {
  doc.getArray('messages')
  doc.getMap('participants')
  doc.getMap('meta')
  doc.getMap('reads')
  return doc
}

const makeServer = (): Y.Doc => {
  const server = withRoots(new Y.Doc())
  server.clientID = SERVER_CLIENT
  server.transact(() => {
    const p = server.getMap('participants')
    for (const u of ['alice', 'bob', 'carol']) p.set(u, { access: u === 'carol' ? 'Read' : 'ReadWrite', notify: true, joinedAt: 1 })
    server.getMap('meta').set('guestAccess', 'write')
    server.getMap('meta').set('createdAt', 1)
  })
  return server
}

const cloneOf = (doc: Y.Doc): Y.Doc => {
  const c = withRoots(new Y.Doc())
  Y.applyUpdate(c, Y.encodeStateAsUpdate(doc))
  return c
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))

const message = (id: string, senderId: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ id, senderId, text: `t ${id}`, createdAt: 5, type: 'UserMessage', ...extra })

const liveIds = (doc: Y.Doc): string[] => doc.getArray('messages').toArray().map(m => (m as { id: string }).id)

const fuzz = suite('UpdateJudge fuzz')

fuzz(`accepts honest updates from lagging replicas, with changes exactly when applying changes the doc (seed ${SEED})`, () => {
  const rnd = makeRandom(SEED)
  const server = makeServer()
  const bindings = new Map<number, string>()
  const judge = new UpdateJudge(server, { maxTextLength: 200, clientOwner: id => bindings.get(id), reservedClientIds: new Set([SERVER_CLIENT]) })
  const writers: Array<[string, Writer, number]> = [
    ['alice1', { userId: 'alice', role: 'participant', canWrite: true }, 100],
    ['alice2', { userId: 'alice', role: 'participant', canWrite: true }, 101],
    ['bob', { userId: 'bob', role: 'participant', canWrite: true }, 200],
    ['gina', { userId: 'gina', role: 'guest', canWrite: true }, 300],
    ['carol', { userId: 'carol', role: 'participant', canWrite: false }, 400]
  ]
  const replicas: Replica[] = writers.map(([name, writer, clientID]) => {
    const doc = withRoots(new Y.Doc())
    doc.clientID = clientID
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(server), 'pull')
    const r: Replica = { name, writer, doc, queue: [], created: [] }
    doc.on('update', (u: Uint8Array, origin: unknown) => { if (origin !== 'pull') r.queue.push(u) })
    return r
  })
  let counter = 0
  const deliver = (r: Replica, u: Uint8Array, what: string): void => {
    const v = judge.judge(u, r.writer)
    if (!v.ok) assert.unreachable(`${r.name} ${what} refused: ${v.error.code} ${v.error.message}`)
    if (!v.ok) return
    const before = Y.encodeStateAsUpdate(server)
    Y.applyUpdate(server, u, 'peer')
    assert.is(server.store.pendingStructs, null)
    assert.is(server.store.pendingDs, null)
    assert.is(v.changes, !same(before, Y.encodeStateAsUpdate(server)), `${r.name} ${what}: changes`)
    for (const id of v.newClientIds) bindings.set(id, r.writer.userId)
  }
  for (let step = 0; step < HONEST_STEPS; step++) {
    const r = rnd.pick(replicas)
    const action = rnd.int(10)
    const messages = r.doc.getArray<Record<string, unknown>>('messages')
    if (action <= 1 && r.writer.canWrite) {
      const n = 1 + rnd.int(3)
      for (let i = 0; i < n; i++) {
        const id = `${r.name}-${counter++}`
        r.created.push(id)
        messages.push([message(id, r.writer.userId)])
      }
    } else if (action === 2 && r.writer.canWrite && r.created.length > 0) {
      const id = rnd.pick(r.created)
      const i = liveIds(r.doc).indexOf(id)
      if (i >= 0) {
        r.doc.transact(() => {
          messages.delete(i, 1)
          if (rnd.next() < 0.6) messages.insert(i, [message(id, r.writer.userId, { text: `edit ${step}`, editedAt: step })])
        })
      }
    } else if (action === 3 && r.writer.canWrite && r.writer.role === 'participant') {
      r.doc.getMap('reads').set(r.writer.userId, step)
    } else if (action === 4) {
      Y.applyUpdate(r.doc, Y.encodeStateAsUpdate(server, Y.encodeStateVector(r.doc)), 'pull')
    } else if (action <= 6) {
      deliver(r, Y.encodeStateAsUpdate(r.doc, Y.encodeStateVector(server)), 'sync step 2')
    } else if (action === 7) {
      const n = rnd.int(r.queue.length + 1)
      for (const u of r.queue.splice(0, n)) deliver(r, u, 'update')
    } else if (action === 8) {
      deliver(r, Y.encodeStateAsUpdate(r.doc), 'full replay')
    } else if (rnd.next() < 0.3) {
      server.getArray('messages').push([rnd.next() < 0.5
        ? message(`srv-${counter++}`, 'alice')
        : { id: `sys-${counter++}`, senderId: null, text: 'joined', createdAt: 5, type: 'SystemMessage' }])
    }
    const ids = liveIds(server)
    assert.is(new Set(ids).size, ids.length, 'live message ids stay unique')
  }
  judge.destroy()
})

// -----------------------------------------------------------------------------------------------

type Ref = [number, number]

const writeStruct = (e: encoding.Encoder, rnd: ReturnType<typeof makeRandom>, refs: Ref[], writer: Writer): number => {
  const kind = rnd.int(10)
  if (kind === 0) { encoding.writeUint8(e, rnd.next() < 0.5 ? 0 : 10); const len = 1 + rnd.int(2); encoding.writeVarUint(e, len); return len }
  const ref = kind <= 6 ? 8 : kind <= 8 ? 1 : 4
  const origin = rnd.next() < 0.5 ? rnd.pick(refs) : undefined
  const rightOrigin = rnd.next() < 0.2 ? rnd.pick(refs) : undefined
  const parentSub = rnd.next() < 0.3 ? rnd.pick(['alice', 'bob', 'x']) : undefined
  encoding.writeUint8(e, ref | (origin !== undefined ? 128 : 0) | (rightOrigin !== undefined ? 64 : 0) | (parentSub !== undefined ? 32 : 0))
  if (origin !== undefined) { encoding.writeVarUint(e, origin[0]); encoding.writeVarUint(e, origin[1]) }
  if (rightOrigin !== undefined) { encoding.writeVarUint(e, rightOrigin[0]); encoding.writeVarUint(e, rightOrigin[1]) }
  if (origin === undefined && rightOrigin === undefined) {
    if (rnd.next() < 0.9) {
      encoding.writeVarUint(e, 1)
      encoding.writeVarString(e, rnd.pick(['messages', 'messages', 'reads', 'participants', 'meta', 'evil']))
    } else {
      encoding.writeVarUint(e, 0)
      const p = rnd.pick(refs)
      encoding.writeVarUint(e, p[0])
      encoding.writeVarUint(e, p[1])
    }
    if (parentSub !== undefined) encoding.writeVarString(e, parentSub)
  }
  if (ref === 1) { const len = 1 + rnd.int(3); encoding.writeVarUint(e, len); return len }
  if (ref === 4) { encoding.writeVarString(e, 'ab'); return 2 }
  const n = 1 + rnd.int(3)
  encoding.writeVarUint(e, n)
  for (let i = 0; i < n; i++) {
    const choice = rnd.int(6)
    const value = (choice <= 2
      ? message(`r${rnd.int(400)}`, rnd.next() < 0.7 ? writer.userId : rnd.pick(['alice', 'bob', 'gina']), rnd.next() < 0.3 ? { editedAt: 9 } : {})
      : choice === 3 ? rnd.int(100) : choice === 4 ? { access: 'ReadWrite', notify: true, joinedAt: 1 } : 'junk') as encoding.AnyEncodable
    encoding.writeAny(e, value)
  }
  return n
}

/** A random update built from the grammar, with clocks and references near what the doc has. */
const randomUpdate = (rnd: ReturnType<typeof makeRandom>, doc: Y.Doc, writer: Writer): Uint8Array => {
  const refs: Ref[] = [[555, 0]]
  for (const [client, structs] of doc.store.clients) {
    for (const s of structs) refs.push([client, s.id.clock + rnd.int(s.length)])
  }
  const clients = writer.userId === 'alice' ? [100, 101, 100, 101, 200, SERVER_CLIENT, 555] : [100, 200, 300, 300, 301, SERVER_CLIENT, 555]
  const e = encoding.createEncoder()
  const blocks = rnd.int(3)
  const own = writer.userId === 'alice' ? 100 : writer.userId === 'bob' ? 200 : 300
  const chosen = rnd.next() < 0.4 ? [own] : [...new Set(clients)].filter(() => rnd.next() < blocks / 4)
  encoding.writeVarUint(e, chosen.length)
  for (const client of chosen) {
    const n = rnd.next() < 0.5 ? 1 : 1 + rnd.int(3)
    const state = Y.getState(doc.store, client)
    const clock = rnd.next() < 0.7 ? state : Math.max(0, state + rnd.int(3) - 1)
    encoding.writeVarUint(e, n)
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, clock)
    let c = clock
    for (let i = 0; i < n; i++) {
      refs.push([client, c])
      c += writeStruct(e, rnd, refs, writer)
    }
  }
  const dsClients = rnd.next() < 0.5 ? [] : [rnd.pick([...doc.store.clients.keys(), 100, 555])]
  encoding.writeVarUint(e, dsClients.length)
  for (const client of dsClients) {
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, 1)
    const state = Y.getState(doc.store, client)
    encoding.writeVarUint(e, rnd.int(state + 2))
    encoding.writeVarUint(e, rnd.int(4))
  }
  return encoding.toUint8Array(e)
}

const mutate = (rnd: ReturnType<typeof makeRandom>, u: Uint8Array): Uint8Array => {
  const bytes = [...u]
  const n = 1 + rnd.int(3)
  for (let i = 0; i < n && bytes.length > 0; i++) {
    const at = rnd.int(bytes.length)
    const op = rnd.int(4)
    if (op === 0) bytes[at] = rnd.int(256)
    else if (op === 1) bytes.splice(at, 1)
    else if (op === 2) bytes.splice(at, 0, rnd.int(256))
    else bytes.length = at
  }
  return new Uint8Array(bytes)
}

interface View { participants: unknown, meta: unknown, reads: Record<string, unknown>, messages: Array<Record<string, unknown>> }
const viewOf = (doc: Y.Doc): View => ({
  participants: doc.getMap('participants').toJSON(),
  meta: doc.getMap('meta').toJSON(),
  reads: doc.getMap('reads').toJSON(),
  messages: doc.getArray<Record<string, unknown>>('messages').toArray()
})

fuzz(`never throws on random and mutated updates, and what it accepts keeps the rules (seed ${SEED})`, () => {
  const rnd = makeRandom(SEED + 1)
  const server = makeServer()
  const bindings = new Map<number, string>([[100, 'alice'], [101, 'alice'], [200, 'bob']])
  const judge = new UpdateJudge(server, { maxTextLength: 200, clientOwner: id => bindings.get(id), reservedClientIds: new Set([SERVER_CLIENT]) })
  const writers: Writer[] = [
    { userId: 'alice', role: 'participant', canWrite: true },
    { userId: 'bob', role: 'participant', canWrite: true },
    { userId: 'gina', role: 'guest', canWrite: true },
    { userId: 'carol', role: 'participant', canWrite: false }
  ]
  // Seed the doc with honest content to mutate and refer to.
  const seedDoc = withRoots(new Y.Doc())
  seedDoc.clientID = 100
  Y.applyUpdate(seedDoc, Y.encodeStateAsUpdate(server))
  const honest: Uint8Array[] = []
  seedDoc.on('update', (u: Uint8Array) => { honest.push(u) })
  for (let i = 0; i < 6; i++) seedDoc.getArray('messages').push([message(`a${i}`, 'alice')])
  seedDoc.getMap('reads').set('alice', 3)
  seedDoc.getArray('messages').delete(1, 2)
  for (const u of honest) Y.applyUpdate(server, u)
  honest.push(Y.encodeStateAsUpdate(seedDoc))
  let accepted = 0
  for (let i = 0; i < RANDOM_UPDATES; i++) {
    const writer = rnd.pick(writers)
    const u = rnd.next() < 0.5 ? randomUpdate(rnd, server, writer) : mutate(rnd, rnd.pick(honest))
    const v = judge.judge(u, writer)
    if (!v.ok) continue
    accepted++
    const clone = cloneOf(server)
    const before = viewOf(clone)
    const bytesBefore = Y.encodeStateAsUpdate(clone)
    const roots = [...clone.share.keys()].sort()
    try {
      Y.applyUpdate(clone, u)
    } catch (e) {
      assert.unreachable(`accepted update #${i} makes applyUpdate throw: ${String(e)}`)
    }
    assert.is(clone.store.pendingStructs, null, `#${i} leaves structs pending`)
    assert.is(clone.store.pendingDs, null, `#${i} leaves deletes pending`)
    assert.equal([...clone.share.keys()].sort(), roots, `#${i} creates no root`)
    assert.is(v.changes, !same(bytesBefore, Y.encodeStateAsUpdate(clone)), `#${i} changes`)
    if (!v.changes) continue
    assert.ok(writer.canWrite, `#${i} read-only writer changed the doc`)
    const after = viewOf(clone)
    assert.equal(after.participants, before.participants, `#${i} participants untouched`)
    assert.equal(after.meta, before.meta, `#${i} meta untouched`)
    for (const key of new Set([...Object.keys(before.reads), ...Object.keys(after.reads)])) {
      if (key === writer.userId && writer.role === 'participant') continue
      assert.equal(after.reads[key], before.reads[key], `#${i} reads.${key} untouched`)
    }
    const others = (ms: Array<Record<string, unknown>>): string[] => ms.filter(m => m.senderId !== writer.userId).map(m => JSON.stringify(m)).sort()
    assert.equal(others(after.messages), others(before.messages), `#${i} others' messages untouched`)
    for (const m of after.messages) assert.is(messageShapeProblem(m, 200), null, `#${i} message shape`)
    const ids = after.messages.map(m => m.id)
    assert.is(new Set(ids).size, ids.length, `#${i} live ids unique`)
    Y.applyUpdate(server, u)
    for (const id of v.newClientIds) bindings.set(id, writer.userId)
  }
  assert.ok(accepted > 0, 'some random updates were accepted')
  judge.destroy()
})

// The seed is in each test title, so uvu prints it with any failure.
fuzz.run()
