/** The bus port: in-process and on the machine's Redis (its own channel prefix per test). */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Bus } from '../../../server/bus/port.ts'
import { LocalBus } from '../../../server/bus/local-bus.ts'
import { RedisBus } from '../../../server/bus/redis-bus.ts'
import { waitFor } from '../../helpers/clients.ts'
import { REDIS_URL, testPrefix } from '../../helpers/redis.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'

const B = suite('bus')

const roundTrip = async (a: Bus, b: Bus): Promise<void> => {
  const got: string[] = []
  const off = b.subscribe('commits', m => got.push(`b:${m}`))
  a.subscribe('commits', m => got.push(`a:${m}`))
  a.subscribe('other', m => got.push(`other:${m}`))
  // A Redis subscription is live once the server confirmed it: publish until it is heard.
  for (let i = 0; i < 100 && !got.includes('b:hello'); i++) {
    a.publish('commits', 'hello')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  await waitFor(() => got.includes('b:hello') && got.includes('a:hello'), 5000, 'both subscribers hear it')
  assert.not.ok(got.some(m => m.startsWith('other:')), 'another channel hears nothing')
  off()
  got.length = 0
  a.publish('commits', 'after')
  await waitFor(() => got.includes('a:after'), 5000, 'the remaining subscriber hears it')
  assert.not.ok(got.includes('b:after'), 'an unsubscribed handler hears nothing')
}

B('in-process: every subscriber of a channel hears a message, only that channel, until it unsubscribes', async () => {
  const bus = new LocalBus()
  await roundTrip(bus, bus)
  await bus.close()
})

B('on Redis: two nodes hear each other; another prefix (another cluster) hears nothing', async () => {
  const prefix = testPrefix()
  const [a, b, stranger] = await Promise.all([
    RedisBus.open({ url: REDIS_URL, prefix }), RedisBus.open({ url: REDIS_URL, prefix }), RedisBus.open({ url: REDIS_URL, prefix: testPrefix() })
  ])
  const heardByStranger: string[] = []
  stranger.subscribe('commits', m => heardByStranger.push(m))
  try {
    await roundTrip(a, b)
    assert.equal(heardByStranger, [])
  } finally {
    await Promise.all([a.close(), b.close(), stranger.close()])
  }
})

B('on Redis: after its connection was cut and came back, the bus says it may have lost messages, and delivers again', async () => {
  const proxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname)
  const prefix = testPrefix()
  const [cut, other] = await Promise.all([RedisBus.open({ url: `redis://127.0.0.1:${proxy.port}`, prefix }), RedisBus.open({ url: REDIS_URL, prefix })])
  try {
    let gaps = 0
    cut.onGap(() => { gaps++ })
    const got: string[] = []
    cut.subscribe('commits', m => got.push(m))
    await proxy.stop()
    await proxy.start()
    await waitFor(() => gaps === 1, 10_000, 'a gap is reported after the reconnection')
    for (let i = 0; i < 100 && !got.includes('again'); i++) {
      other.publish('commits', 'again')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.ok(got.includes('again'), 'the subscription was renewed')
  } finally {
    await Promise.all([cut.close(), other.close()])
    await proxy.stop()
  }
})

B('on Redis: an unreachable server is refused at open', async () => {
  let refused = false
  try {
    const bus = await RedisBus.open({ url: 'redis://127.0.0.1:1', prefix: testPrefix() })
    await bus.close()
  } catch {
    refused = true
  }
  assert.ok(refused)
})

B.run()
