import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MessageRateLimiter } from '../../server/rate-limit.ts'

const limiter = (rate = { perSecond: 5, burst: 20 }): { l: MessageRateLimiter, clock: { now: number } } => {
  const clock = { now: 1_000_000 }
  return { l: new MessageRateLimiter(() => clock.now, () => rate), clock }
}
const one = (user: string, n = 1): Map<string, number> => new Map([[user, n]])

test('a burst, then the refill rate; a batch of N costs N and is refused as a whole', () => {
  const { l, clock } = limiter()
  assert.is(l.charge('c', one('u', 20), 0), 0)
  const wait = l.charge('c', one('u'), 0)
  assert.is(wait, 200, 'one message refills in 200 ms at 5/s')
  clock.now += 1000
  assert.is(l.charge('c', one('u', 6), 0), 200, 'five tokens back, six asked: nothing charged')
  assert.is(l.charge('c', one('u', 5), 0), 0)
  assert.is(l.charge('c', one('other', 20), 0), 0, 'another user has its own allowance')
  assert.is(l.charge('d', one('u', 20), 0), 0, 'and so has another conversation')
})

test('slowMode allows one message per interval and no batch', () => {
  const { l, clock } = limiter()
  assert.is(l.charge('c', one('u'), 10), 0)
  assert.is(l.charge('c', one('u'), 10), 10_000)
  clock.now += 10_000
  assert.ok(l.charge('c', one('u', 2), 10) > 0, 'a batch never fits')
  assert.is(l.charge('c', one('u'), 10), 0)
})

test('several senders are charged all or none; a block refuses new connections for its wait', () => {
  const { l, clock } = limiter({ perSecond: 1, burst: 2 })
  assert.is(l.charge('c', one('b', 2), 0), 0)
  assert.ok(l.charge('c', new Map([['a', 1], ['b', 1]]), 0) > 0)
  assert.is(l.charge('c', one('a', 2), 0), 0, 'a was not charged by the refused post')
  assert.is(l.blockedFor('c', 'a'), 0)
  l.block('c', 'a', 1500)
  assert.is(l.blockedFor('c', 'a'), 1500)
  clock.now += 1500
  assert.is(l.blockedFor('c', 'a'), 0)
})

test('idle users are forgotten once their bucket is full again and slow mode is long over', () => {
  const { l, clock } = limiter()
  for (let i = 0; i < 1100; i++) l.charge('c', one(`u${i}`), 0)
  assert.is(l.size, 1100, 'a sweep past 1,024 entries finds nobody idle')
  clock.now += 3_600_000
  l.charge('c', one('late'), 0)
  for (let i = 0; i < 1100; i++) l.charge('c', one(`v${i}`), 0)
  assert.is(l.size, 1101, 'the 1,100 idle entries were swept; late and the v users remain')
})

test.run()
