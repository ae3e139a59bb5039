import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as prng from 'lib0/prng'
import { Awareness, encodeAwarenessUpdate } from 'y-protocols/awareness'
import { isChatError } from '../../../shared/errors.ts'
import { readAwarenessUpdate, sanitizeState, writeAwarenessUpdate, type AwarenessEntry } from '../../../server/presence/awareness-codec.ts'

const Codec = suite('awareness-codec')

Codec('reads what y-protocols writes', () => {
  const doc = new Y.Doc()
  const awareness = new Awareness(doc)
  awareness.setLocalState({ user: { name: 'A' } })
  const [e] = readAwarenessUpdate(encodeAwarenessUpdate(awareness, [doc.clientID]))
  assert.is(e.clientId, doc.clientID)
  assert.is(e.clock, 1)
  assert.equal(JSON.parse(e.json), { user: { name: 'A' } })
  awareness.destroy()
})

Codec('round-trips random entries', () => {
  const seed = Date.now() >>> 0
  const gen = prng.create(seed)
  for (let round = 0; round < 200; round++) {
    const entries: AwarenessEntry[] = []
    const n = prng.uint32(gen, 0, 5)
    for (let i = 0; i < n; i++) {
      entries.push({ clientId: prng.uint32(gen, 0, 0xffffffff), clock: prng.uint32(gen, 0, 1e6), json: JSON.stringify({ s: prng.word(gen) }) })
    }
    assert.equal(readAwarenessUpdate(writeAwarenessUpdate(entries)), entries, `seed ${seed}`)
  }
})

Codec('sanitizeState sets user.id and role from the owner, keeps other user keys and drops __proto__', () => {
  const owner = { userId: 'u1', role: 'guest' as const }
  assert.is(sanitizeState('null', owner, 100), 'null')
  const out = JSON.parse(sanitizeState('{"__proto__":{"x":1},"user":{"id":"root","name":"N","extra":1},"typing":true}', owner, 1000))
  assert.equal(out, { user: { extra: 1, name: 'N', nameSource: 'self', id: 'u1', role: 'guest' }, typing: true })
  assert.not.ok(Object.prototype.hasOwnProperty.call(out, '__proto__'))
})

Codec('a guest\'s name is marked as chosen by itself; a claimed nameSource and names unfit to show are dropped', () => {
  const guest = { userId: 'g1', role: 'guest' as const }
  const participant = { userId: 'bob', role: 'participant' as const }
  const user = (json: string, owner: typeof guest | typeof participant): unknown => (JSON.parse(sanitizeState(json, owner, 1000)) as { user: unknown }).user
  assert.equal(user('{"user":{"name":"bob","nameSource":"record"}}', guest), { name: 'bob', nameSource: 'self', id: 'g1', role: 'guest' })
  assert.equal(user('{"user":{"name":"Bob","nameSource":"self"}}', participant), { name: 'Bob', id: 'bob', role: 'participant' })
  for (const bad of ['b\\u0000ob', 'bo\\u202eb', 'b\\ud800ob']) {
    assert.equal(user(`{"user":{"name":"${bad}"}}`, guest), { id: 'g1', role: 'guest' }, bad)
  }
})

Codec('the name of the user\'s record replaces any claimed name, for guests and participants alike', () => {
  const user = (json: string, owner: { userId: string, role: 'guest' | 'participant', recordName?: string | null }): unknown =>
    (JSON.parse(sanitizeState(json, owner, 1000)) as { user: unknown }).user
  assert.equal(user('{"user":{"name":"bob"}}', { userId: 'g1', role: 'guest', recordName: 'Gina' }), { name: 'Gina', id: 'g1', role: 'guest' })
  assert.equal(user('{"typing":true}', { userId: 'a', role: 'participant', recordName: 'Alice' }), { name: 'Alice', id: 'a', role: 'participant' })
  assert.equal(user('{"user":{"name":"bob"}}', { userId: 'g1', role: 'guest', recordName: null }), { name: 'bob', nameSource: 'self', id: 'g1', role: 'guest' })
})

Codec('sanitizeState refuses a state over the size cap', () => {
  try {
    sanitizeState(JSON.stringify({ a: 'x'.repeat(100) }), { userId: 'u', role: 'participant' }, 50)
    assert.unreachable()
  } catch (e) {
    assert.ok(isChatError(e) && e.code === 'MALFORMED_MESSAGE')
  }
})

Codec.run()
