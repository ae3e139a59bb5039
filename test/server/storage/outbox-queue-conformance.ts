/**
 * The conformance suite of the outbox claims (`OutboxQueue`, server/storage/port.ts), run
 * against LevelStore (level-conformance.test.ts) and PgStore (pg-conformance.test.ts). "Another
 * node" is a second handle on the same data when the store is shared (a second PgStore on the
 * same schema), else the same store.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { DocStore, OutboxClaim, OutboxQueue } from '../../../server/storage/port.ts'

export interface OpenedQueueStore {
  store: DocStore
  /** A second handle on the same data, as another node has (the same store when it cannot be shared). */
  other: DocStore
  cleanup: () => Promise<void>
}

const SECTION = 'outbox'
const key = (id: string): string => `v1!o!${id}`
const record = (id: string, nextAt: number, attempts = 0): Record<string, unknown> =>
  ({ id, payload: { kind: 'webhook', text: `payload of ${id} \u0000 ✓` }, attempts, createdAt: 1, nextAt })
const ids = (claims: OutboxClaim[]): string[] => claims.map(c => (c.value as { id: string }).id)

export const runOutboxQueueConformance = (name: string, open: () => Promise<OpenedQueueStore>): void => {
  interface Ctx { opened: OpenedQueueStore, a: OutboxQueue, b: OutboxQueue }
  const test = suite<Ctx>(`outbox claims: ${name}`)
  test.before.each(async ctx => {
    ctx.opened = await open()
    ctx.a = ctx.opened.store.outboxQueue(SECTION)
    ctx.b = ctx.opened.other.outboxQueue(SECTION)
  })
  test.after.each(async ctx => { await ctx.opened.cleanup() })

  const put = async (ctx: Ctx, ...records: Array<Record<string, unknown>>): Promise<void> => {
    await ctx.opened.store.section(SECTION).batch(records.map(r => ({ type: 'put' as const, key: key(r.id as string), value: r })))
  }

  test('a due record is claimed once: nobody else claims it while the claim holds, by key or by sweep', async ctx => {
    await put(ctx, record('e1', 100))
    const [c] = await ctx.a.claim([key('e1')], 1000, 30_000)
    assert.ok(c !== undefined, 'claimed')
    assert.equal(c.value, record('e1', 100), 'the record as stored before the claim')
    assert.equal(await ctx.b.claim([key('e1')], 1001, 30_000), [])
    assert.equal(await ctx.b.claimDue('v1!o!', 1001, 10, 30_000), [])
    assert.equal(await ctx.a.claim([key('e1')], 1001, 30_000), [], 'not even by its own holder')
  })

  test('a record not due yet, or missing, is not claimed; it is once its time comes', async ctx => {
    await put(ctx, record('later', 5000))
    assert.equal(await ctx.a.claim([key('later'), key('missing')], 1000, 30_000), [])
    assert.equal(await ctx.a.claimDue('v1!o!', 1000, 10, 30_000), [])
    assert.equal(ids(await ctx.b.claim([key('later'), key('missing')], 5000, 30_000)), ['later'])
  })

  test('a sweep claims due records oldest first, up to its limit, only under its prefix', async ctx => {
    await put(ctx, record('e3', 10), record('e1', 10), record('e2', 10), record('e4', 99_999))
    await ctx.opened.store.section(SECTION).put('v1!dead!e0', record('e0', 0))
    assert.equal(ids(await ctx.a.claimDue('v1!o!', 1000, 2, 30_000)), ['e1', 'e2'])
    assert.equal(ids(await ctx.b.claimDue('v1!o!', 1000, 10, 30_000)), ['e3'])
    assert.equal(await ctx.a.claimDue('v1!o!', 1000, 0, 30_000), [])
  })

  test('delivered: settling deletes the record; a claim lost to another holder settles nothing', async ctx => {
    await put(ctx, record('e1', 0), record('e2', 0))
    const [c1] = await ctx.a.claim([key('e1')], 1000, 30_000)
    assert.is(await ctx.a.settle(c1, [{ type: 'del', key: key('e1') }]), true)
    assert.is(await ctx.opened.other.section(SECTION).get(key('e1')), undefined)
    // e2's holder hangs past its lease: another node takes it over, under a new token.
    const [stale] = await ctx.a.claim([key('e2')], 1000, 100)
    assert.equal(await ctx.b.claim([key('e2')], 1050, 100), [], 'still held')
    const [fresh] = await ctx.b.claim([key('e2')], 1101, 30_000)
    assert.ok(fresh !== undefined, 'taken over once the lease ended')
    assert.is.not(fresh.token, stale.token)
    assert.is(await ctx.a.settle(stale, [{ type: 'del', key: key('e2') }]), false, 'the old holder is fenced off')
    assert.ok(await ctx.opened.store.section(SECTION).get(key('e2')) !== undefined, 'and wrote nothing')
    assert.is(await ctx.b.settle(fresh, [{ type: 'del', key: key('e2') }]), true)
    assert.is(await ctx.opened.store.section(SECTION).get(key('e2')), undefined)
  })

  test('a failed attempt puts the record back under the same id with its next time; moving it to the dead letters is one write', async ctx => {
    await put(ctx, record('e1', 0))
    const [c] = await ctx.a.claim([key('e1')], 1000, 30_000)
    assert.is(await ctx.a.settle(c, [{ type: 'put', key: key('e1'), value: { ...record('e1', 3000, 1), lastError: 'HTTP 500' } }]), true)
    assert.equal(await ctx.b.claimDue('v1!o!', 2999, 10, 30_000), [], 'released, but not due before its next time')
    const [again] = await ctx.b.claimDue('v1!o!', 3000, 10, 30_000)
    assert.is((again.value as { id: string }).id, 'e1')
    assert.is((again.value as { attempts: number }).attempts, 1)
    assert.is(await ctx.b.settle(again, [{ type: 'del', key: key('e1') }, { type: 'put', key: 'v1!dead!e1', value: { ...record('e1', 3000, 2), lastError: 'HTTP 500' } }]), true)
    assert.is(await ctx.opened.store.section(SECTION).get(key('e1')), undefined)
    assert.is((await ctx.opened.store.section(SECTION).get('v1!dead!e1') as { attempts: number }).attempts, 2)
    assert.equal(await ctx.a.claimDue('v1!o!', 1e12, 10, 30_000), [], 'dead letters are not records: a sweep never claims them')
  })

  test('a released claim is due again at once for anyone', async ctx => {
    await put(ctx, record('e1', 0))
    const [c] = await ctx.a.claim([key('e1')], 1000, 30_000)
    await ctx.a.release(c, 1000)
    assert.equal(ids(await ctx.b.claim([key('e1')], 1000, 30_000)), ['e1'])
    assert.is(await ctx.a.settle(c, [{ type: 'del', key: key('e1') }]), false, 'the released claim settles nothing')
  })

  test('two nodes sweeping and claiming at once take every record exactly once', async ctx => {
    const n = 60
    await put(ctx, ...Array.from({ length: n }, (_, i) => record(`e${String(i).padStart(3, '0')}`, 0)))
    const taken: string[] = []
    await Promise.all([ctx.a, ctx.b, ctx.a, ctx.b].map(async (q, w) => {
      for (let round = 0; round < 20; round++) {
        const claims = w % 2 === 0
          ? await q.claimDue('v1!o!', 1000, 7, 30_000)
          : await q.claim(Array.from({ length: 9 }, (_, i) => key(`e${String((round * 9 + i) % n).padStart(3, '0')}`)), 1000, 30_000)
        taken.push(...ids(claims))
      }
    }))
    assert.is(taken.length, n, `claimed ${taken.length} times`)
    assert.is(new Set(taken).size, n)
  })

  test.run()
}
