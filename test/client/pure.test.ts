import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { backoffDelay } from '../../client/backoff.ts'
import { presenceOf } from '../../client/presence.ts'
import { refusalOf } from '../../client/transport.ts'
import { tokenExpiry } from '../../client/token.ts'

const Backoff = suite('client backoff')

Backoff('delays grow exponentially, stay within [cap/2, cap) and never exceed the maximum', () => {
  const opts = { baseMs: 100, maxMs: 2000 }
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(2000, 100 * 2 ** attempt)
    assert.is(backoffDelay(attempt, () => 0, opts), cap / 2)
    assert.ok(backoffDelay(attempt, () => 0.999999, opts) < cap)
  }
})

Backoff('two clients with different random draws retry at different times (jitter)', () => {
  let seed = 42
  const prng = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  const delays = Array.from({ length: 20 }, () => backoffDelay(5, prng))
  assert.ok(new Set(delays).size > 15, `seed 42 gave ${delays.join(',')}`)
})

Backoff.run()

const PresenceSuite = suite('client presence')

PresenceSuite('participants, guests, the server guest count and typing come from awareness states', () => {
  const states = new Map<number, unknown>([
    [1, { parley: { guestCount: 3, participantCount: 2 } }],
    [2, { user: { id: 'bob', role: 'participant', name: 'Bob' }, typing: true }],
    [3, { user: { id: 'g1', role: 'guest' } }],
    [4, { user: { id: 'g1', role: 'guest' } }],
    [5, { user: { id: 'x' } }],
    [9, { user: { id: 'alice', role: 'participant' }, typing: true }]
  ])
  const p = presenceOf(states, { clientId: 9, user: { id: 'alice', role: 'participant' } })
  assert.equal(p.participants.map(u => u.id), ['alice', 'bob'])
  assert.equal(p.guests.map(u => u.id), ['g1'])
  assert.is(p.guestCount, 3)
  assert.equal(p.typing, ['bob'])
})

PresenceSuite('a guest does not list itself; without a server count the visible guests are counted', () => {
  const p = presenceOf(new Map([[2, { user: { id: 'g2', role: 'guest' } }]]), { clientId: 7, user: { id: 'g1', role: 'guest' } })
  assert.equal(p.guests.map(u => u.id), ['g2'])
  assert.is(p.guestCount, 1)
})

PresenceSuite('a name a guest chose is marked as its own choice (nameSource self); a participant\'s is not', () => {
  const p = presenceOf(new Map<number, unknown>([
    [2, { user: { id: 'g2', role: 'guest', name: 'bob', nameSource: 'self' } }],
    [3, { user: { id: 'bob', role: 'participant', name: 'Bob' } }]
  ]), { clientId: 7, user: { id: 'alice', role: 'participant' } })
  assert.equal(p.guests, [{ id: 'g2', role: 'guest', name: 'bob', nameSource: 'self' }])
  assert.equal(p.participants.find(u => u.id === 'bob'), { id: 'bob', role: 'participant', name: 'Bob' })
})

PresenceSuite.run()

const Refusal = suite('client refusals')

Refusal('a 44xx close takes the code of the auth message, else of the close reason, else of the close code', () => {
  assert.is(refusalOf(4403, 'X', JSON.stringify({ code: 'GUEST_ACCESS_OFF', message: 'off' })).code, 'GUEST_ACCESS_OFF')
  assert.is(refusalOf(4409, 'GUEST_LIMIT', null).code, 'GUEST_LIMIT')
  assert.is(refusalOf(4404, '', 'not json').code, 'CONVERSATION_NOT_FOUND')
  assert.is(refusalOf(4401, '', null).closeCode, 4401)
})

Refusal('the expiry of a token is read from its exp claim', () => {
  const payload = Buffer.from(JSON.stringify({ sub: 'a', exp: 1700000000 })).toString('base64url')
  assert.is(tokenExpiry(`x.${payload}.y`), 1700000000 * 1000)
  assert.is(tokenExpiry('garbage'), null)
})

Refusal.run()
