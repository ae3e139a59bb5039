import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MESSAGE_TYPE } from '../../shared/protocol.ts'
import { messagesOf } from '../../shared/doc.ts'
import { createMetrics } from '../../server/metrics.ts'
import { startServer } from '../helpers/server.ts'
import { spawnServer } from '../helpers/process.ts'
import { connectRaw } from '../helpers/clients.ts'
import { awarenessFrame, changesOf, connectRawPeer, msg } from '../helpers/crafted.ts'

const Metrics = suite('metrics')

/** `name value` samples of a Prometheus text exposition (labels kept in the name). */
const samples = (text: string): Map<string, string> => new Map(text.split('\n')
  .filter(l => l !== '' && !l.startsWith('#'))
  .map(l => [l.slice(0, l.lastIndexOf(' ')), l.slice(l.lastIndexOf(' ') + 1)]))

Metrics('process metrics have one prefix, and every sample of two back-to-back scrapes is a finite number', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-metrics-'))
  const s = await spawnServer(['--port', '0', '--data', join(dir, 'data')])
  try {
    const [first, second] = await Promise.all([1, 2].map(async () => await (await fetch(s.url + '/metrics')).text()))
    for (const text of [first, second]) {
      assert.not.match(text, /process_process_/)
      const m = samples(text)
      assert.ok(m.has('parley_process_cpu_seconds_total'))
      assert.ok(m.has('parley_nodejs_eventloop_lag_p99_seconds'))
      for (const [name, value] of m) assert.ok(Number.isFinite(Number(value)), `${name} ${value}`)
    }
  } finally {
    s.child.kill('SIGTERM')
    await s.exited
    await rm(dir, { recursive: true, force: true })
  }
})

Metrics('a scrape with no new event-loop sample repeats the last statistics instead of an empty monitor', async () => {
  const metrics = createMetrics(true)
  try {
    // Let the monitor take samples, then collect twice with nothing in between (no timer runs
    // between two collects of the same tick, so the second sees no new sample).
    await new Promise(resolve => setTimeout(resolve, 50))
    const first = samples(await metrics.registry.metrics())
    const second = samples(await metrics.registry.metrics())
    for (const stat of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
      const name = `parley_nodejs_eventloop_lag_${stat}_seconds`
      const v = Number(second.get(name))
      assert.ok(Number.isFinite(v) && v >= 0 && v < 60, `${name} ${String(second.get(name))}`)
      assert.is(second.get(name), first.get(name), name)
    }
  } finally {
    metrics.stop()
  }
})

Metrics('parley_frames_sent_total counts every frame peers receive: sync, awareness and refusals', async () => {
  const s = await startServer({ config: { keepaliveMs: 3_600_000 } })
  try {
    await s.api('PUT', '/v1/conversations/m1', { participants: ['a', 'b'] })
    const a = await connectRawPeer(`${s.wsUrl}/m1?token=${await s.token('a')}`, 7001)
    const b = await connectRawPeer(`${s.wsUrl}/m1?token=${await s.token('b')}`, 7002)
    a.send(awarenessFrame([{ clientId: 7001, clock: 1, state: { user: { id: 'a' } } }]))
    a.sendUpdate(changesOf(a.doc, d => messagesOf(d).push([msg('f1', 'a') as never])))
    assert.ok(await a.barrier())
    const refused = connectRaw(`${s.wsUrl}/m1?token=${await s.token('c')}`)
    assert.is((await refused.closed).code, 4403)
    const received = (): number => a.frames.length + b.frames.length + refused.frames.length
    const counted = async (): Promise<number> => Number(samples(await (await fetch(s.url + '/metrics')).text()).get('parley_frames_sent_total'))
    // Sent frames reach the peers a moment later: look until both sides agree (bounded).
    for (let i = 0; i < 100 && (received() !== await counted() || !b.frames.some(f => f[0] === MESSAGE_TYPE.awareness)); i++) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.ok(b.frames.some(f => f[0] === MESSAGE_TYPE.awareness), 'b received awareness')
    assert.ok(refused.frames.some(f => f[0] === MESSAGE_TYPE.auth), 'the refused client received the reason')
    assert.is(await counted(), received())
    a.end()
    b.end()
  } finally {
    await s.stop()
  }
})

Metrics.run()
