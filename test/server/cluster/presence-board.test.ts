/** The presence board on the machine's Redis (its own key prefix per test): records, expiry, liveness. */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { RedisPresenceBoard } from '../../../server/bus/presence-board.ts'
import type { PresenceChange } from '../../../server/presence/types.ts'
import { REDIS_URL, testPrefix } from '../../helpers/redis.ts'

const B = suite('presence board')

const alice = { clientId: 7, clock: 3, json: '{"user":{"name":"Alice","id":"alice","role":"participant"}}', userId: 'alice', role: 'participant' as const }
const vic = { clientId: 8, clock: 1, json: '{"user":{"id":"vic","role":"guest"}}', userId: 'vic', role: 'guest' as const }
const user = (userId: string, guest: boolean): PresenceChange['users'][number] => ({ userId, participant: !guest, guest, viewing: !guest, guestSince: guest ? 1234 : 0 })
const full = (states: PresenceChange['states'], users: PresenceChange['users']): PresenceChange => ({ full: true, states, removed: [], users, left: [] })
const empty = { changes: new Map<string, PresenceChange>(), renew: [], withdraw: [], watch: [] }

/** Waits for a key of `ttlMs` to expire (a condition, not a timed assertion: Redis decides). */
const until = async (check: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

B('a node reads the others’ records whole, as they were written and changed; a withdrawn record is gone', async () => {
  const prefix = testPrefix()
  const a = new RedisPresenceBoard(REDIS_URL, prefix, 10_000)
  const b = new RedisPresenceBoard(REDIS_URL, prefix, 10_000)
  try {
    await until(async () => { try { await a.tick('A', { ...empty, version: 0 }); await b.tick('B', { ...empty, version: 0 }); return true } catch { return false } }, 5000, 'connected')
    let r = await a.tick('A', { ...empty, version: 1, changes: new Map([['c1', full([alice, vic], [user('alice', false), user('vic', true)])], ['c2', full([], [user('alice', false)])]]) })
    assert.equal(r, { expired: [], dead: [] })
    let read = await b.read('B', ['c1', 'c2', 'c3'])
    assert.equal(read.get('c1')?.get('A')?.version, 1)
    assert.equal(read.get('c1')?.get('A')?.change.states.map(s => s.clientId).sort(), [7, 8])
    assert.equal(read.get('c1')?.get('A')?.change.users.find(u => u.userId === 'vic'), user('vic', true))
    assert.equal([...(read.get('c3') ?? new Map()).keys()], [])
    // A delta: alice renews, vic leaves; c2 only renewed; B's own record is not read back to B.
    r = await a.tick('A', { ...empty, version: 2, changes: new Map([['c1', { full: false, states: [{ ...alice, clock: 4 }], removed: [{ clientId: 8, clock: 2 }], users: [], left: ['vic'] }]]), renew: ['c2'] })
    assert.equal(r, { expired: [], dead: [] })
    await b.tick('B', { ...empty, version: 1, changes: new Map([['c1', full([], [user('bob', false)])]]), watch: ['A', 'Z'] }).then(res => { assert.equal(res.dead, ['Z']) })
    read = await b.read('B', ['c1'])
    const rec = read.get('c1')?.get('A')
    assert.is(rec?.version, 2)
    assert.equal(rec?.change.states, [{ ...alice, clock: 4 }])
    assert.equal(rec?.change.users, [user('alice', false)])
    assert.equal([...(read.get('c1') ?? new Map()).keys()], ['A'])
    assert.equal([...((await a.read('A', ['c1'])).get('c1') ?? new Map()).keys()], ['B'])
    // Withdrawn: gone for readers.
    await a.tick('A', { ...empty, version: 3, withdraw: ['c1'] })
    assert.equal([...((await b.read('B', ['c1'])).get('c1') ?? new Map()).keys()], [])
    await a.withdrawAll('A', ['c2'])
    assert.equal([...((await b.read('B', ['c2'])).get('c2') ?? new Map()).keys()], [])
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

B('a node that stops renewing: its liveness key and records expire after the TTL; a renewal of an expired record says so', async () => {
  const prefix = testPrefix()
  const a = new RedisPresenceBoard(REDIS_URL, prefix, 1000)
  const b = new RedisPresenceBoard(REDIS_URL, prefix, 1000)
  try {
    await until(async () => { try { await a.tick('A', { ...empty, version: 0 }); await b.tick('B', { ...empty, version: 0 }); return true } catch { return false } }, 5000, 'connected')
    await a.tick('A', { ...empty, version: 1, changes: new Map([['c1', full([alice], [user('alice', false)])]]) })
    assert.equal((await b.tick('B', { ...empty, version: 1, watch: ['A'] })).dead, [])
    await until(async () => (await b.tick('B', { ...empty, version: 2, watch: ['A'] })).dead.length === 1, 5000, 'A found dead')
    assert.equal([...((await b.read('B', ['c1'])).get('c1') ?? new Map()).keys()], [], 'its record expired too')
    // A comes back: renewing (or changing) its expired record tells it to write it whole.
    const r = await a.tick('A', { ...empty, version: 2, renew: ['c1'], changes: new Map([['c2', { full: false, states: [alice], removed: [], users: [], left: [] }]]) })
    assert.equal(r.expired.sort(), ['c1', 'c2'])
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

B.run()
