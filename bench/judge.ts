/**
 * Benchmark (not a test): what it costs the server to judge a peer's update, next to what
 * `Y.applyUpdate` costs for the same update, on conversations of 1,000, 10,000 and 100,000
 * messages, measured in the same run. Also the judge's cost for an offline batch of 100
 * messages (one merged item of 100 elements).
 *
 *   node --import tsx bench/judge.ts            (all sizes)
 *   node --import tsx bench/judge.ts 10000      (only the given sizes)
 *
 * Columns (µs per update, median of ROUNDS timed rounds, after a warm-up):
 *   judge          UpdateJudge.judge of one one-message append (pure: the same update each time)
 *   apply          Y.applyUpdate of a one-message append on a plain copy of the document, over a
 *                  chain of appends by two alternating client ids (no item merging, no
 *                  concurrency scan, few clients: each append has exactly one predecessor)
 *   judge+apply    the server's path: judge, then apply, on the judged document (its message
 *                  index observes every transaction), over the same kind of chain
 *   judge/apply    the ratio of the first two
 *   batch100       UpdateJudge.judge of 100 offline appends merged into one item
 */
import * as Y from 'yjs'
import { cpus } from 'node:os'
import { readFileSync } from 'node:fs'
import { UpdateJudge, type Writer } from '../shared/update-judge.ts'

const SIZES = process.argv.slice(2).map(Number).filter(n => Number.isInteger(n) && n > 0)
const sizes = SIZES.length > 0 ? SIZES : [1_000, 10_000, 100_000]
const ROUNDS = 7
const ROUND_MS = 60
/** Appends per chain round; the document grows by ROUNDS × this during the apply columns. */
const CHAIN = 500
const WRITERS = 50
const BATCH = 100

const ALICE: Writer = { userId: 'alice', role: 'participant', canWrite: true }
const TEXT = 'The quick brown fox jumps over the lazy dog, again.'

const message = (id: string, senderId: string, createdAt: number): Record<string, unknown> =>
  ({ id, senderId, text: TEXT, createdAt, type: 'UserMessage' })

/**
 * A conversation document as the server would hold it: participants and meta written by the
 * server, then `n` messages pushed in batches of 100 by 50 writers taking turns (so items hold
 * 100 elements and consecutive items belong to different clients, as with real writers).
 */
const buildDoc = (n: number): Y.Doc => {
  const doc = new Y.Doc({ gc: true })
  doc.clientID = 1
  doc.transact(() => {
    const participants = doc.getMap('participants')
    participants.set('alice', { access: 'ReadWrite', notify: true, joinedAt: 1 })
    for (let w = 0; w < WRITERS; w++) participants.set(`u${w}`, { access: 'ReadWrite', notify: true, joinedAt: 1 })
    doc.getMap('meta').set('createdAt', 1)
    doc.getMap('meta').set('guestAccess', 'write')
    doc.getMap('reads')
  })
  const messages = doc.getArray('messages')
  for (let i = 0, b = 0; i < n; b++) {
    const w = b % WRITERS
    doc.clientID = 1000 + w
    const count = Math.min(100, n - i)
    const batch: Array<Record<string, unknown>> = []
    for (let k = 0; k < count; k++, i++) batch.push(message(`m${i}`, `u${w}`, 1_700_000_000_000 + i))
    doc.transact(() => { messages.push(batch) })
  }
  doc.clientID = 1
  return doc
}

const copyOf = (doc: Y.Doc): Y.Doc => {
  const copy = new Y.Doc({ gc: true })
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc))
  return copy
}

let nextClient = 1_000_000

/**
 * A chain of one-message appends from `from`'s state, alternating between two client ids: each
 * append's origin is the other client's last one, so Yjs never merges them into one growing item
 * (which would make the cost depend on the chain) and the number of clients stays small.
 */
const appendChain = (from: Y.Doc, length: number, tag: string, clients = [nextClient++, nextClient++]): Uint8Array[] => {
  const out: Uint8Array[] = []
  const messages = from.getArray('messages')
  for (let i = 0; i < length; i++) {
    from.clientID = clients[i % clients.length]
    const sv = Y.encodeStateVector(from)
    messages.push([message(`${tag}-${i}`, 'alice', 1_800_000_000_000 + i)])
    out.push(Y.encodeStateAsUpdate(from, sv))
  }
  return out
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** µs per call of `fn`: median of ROUNDS rounds of at least ROUND_MS each, after a warm-up. */
const timeRepeated = (fn: () => void): number => {
  const warmEnd = process.hrtime.bigint() + BigInt(ROUND_MS) * 1_000_000n
  while (process.hrtime.bigint() < warmEnd) fn()
  const rounds: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0
    const start = process.hrtime.bigint()
    const end = start + BigInt(ROUND_MS) * 1_000_000n
    let now = start
    while (now < end) {
      for (let k = 0; k < 16; k++) fn()
      n += 16
      now = process.hrtime.bigint()
    }
    rounds.push(Number(now - start) / 1000 / n)
  }
  return median(rounds)
}

/** µs per update of `step` over ROUNDS chains of CHAIN updates (after one warm-up chain). */
const timeChain = (chains: Uint8Array[][], step: (u: Uint8Array) => void): number => {
  for (const u of chains[0]) step(u)
  const rounds: number[] = []
  for (const chain of chains.slice(1)) {
    const start = process.hrtime.bigint()
    for (const u of chain) step(u)
    rounds.push(Number(process.hrtime.bigint() - start) / 1000 / chain.length)
  }
  return median(rounds)
}

interface Row { n: number, judge: number, apply: number, judgeApply: number, batch: number, updateBytes: number, buildMs: number }

const benchSize = (n: number): Row => {
  const t0 = Date.now()
  const judged = buildDoc(n)
  const plain = copyOf(judged)
  const alice = copyOf(judged)
  const buildMs = Date.now() - t0

  const bindings = new Map<number, string>()
  const judge = new UpdateJudge(judged, {
    maxTextLength: 10_000,
    clientOwner: id => bindings.get(id),
    reservedClientIds: new Set([judged.clientID])
  })

  // One one-message append, judged over and over (the judge never changes the document).
  const single = appendChain(copyOf(judged), 1, 'single')[0]
  const v = judge.judge(single, ALICE)
  if (!v.ok || !v.changes) throw new Error(`the append was not accepted: ${v.ok ? 'no change' : v.error.code}`)
  const judgeUs = timeRepeated(() => { judge.judge(single, ALICE) })

  // An offline batch: 100 appends in 100 transactions by one client, merged into one item.
  const offline = copyOf(judged)
  offline.clientID = 999_999
  const sv = Y.encodeStateVector(offline)
  for (let i = 0; i < BATCH; i++) offline.getArray('messages').push([message(`off-${i}`, 'alice', 1_900_000_000_000 + i)])
  const batch = Y.encodeStateAsUpdate(offline, sv)
  if (Y.decodeUpdate(batch).structs.length !== 1) throw new Error('the offline batch did not merge into one item')
  const bv = judge.judge(batch, ALICE)
  if (!bv.ok || !bv.changes) throw new Error(`the batch was not accepted: ${bv.ok ? 'no change' : bv.error.code}`)
  const batchUs = timeRepeated(() => { judge.judge(batch, ALICE) })

  // Chains of real appends: applied to the plain copy, and judged + applied on the judged doc.
  const writers = [nextClient++, nextClient++]
  const chains = Array.from({ length: ROUNDS + 1 }, (_, r) => appendChain(alice, CHAIN, `c${r}`, writers))
  const applyUs = timeChain(chains, u => { Y.applyUpdate(plain, u) })
  const judgeApplyUs = timeChain(chains, u => {
    const verdict = judge.judge(u, ALICE)
    if (!verdict.ok) throw new Error(`refused: ${verdict.error.code}`)
    for (const id of verdict.newClientIds) bindings.set(id, ALICE.userId)
    Y.applyUpdate(judged, u, 'peer')
  })
  if (judged.getArray('messages').length !== plain.getArray('messages').length) throw new Error('the two documents diverged')
  judge.destroy()
  return { n, judge: judgeUs, apply: applyUs, judgeApply: judgeApplyUs, batch: batchUs, updateBytes: single.byteLength, buildMs }
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits)
const pad = (s: string, w: number): string => s.padStart(w)

const yjsVersion = (JSON.parse(readFileSync(new URL('../node_modules/yjs/package.json', import.meta.url), 'utf8')) as { version: string }).version
console.log(`UpdateJudge.judge vs Y.applyUpdate: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, yjs ${yjsVersion}`)
console.log(`median of ${ROUNDS} rounds; judge rounds >= ${ROUND_MS} ms; apply chains of ${CHAIN} appends by two alternating clients\n`)
const header = ['messages', 'update B', 'judge µs', 'apply µs', 'judge/apply', 'judge+apply µs', 'batch100 µs', 'µs/msg in batch']
const widths = [10, 9, 9, 9, 12, 15, 12, 16]
console.log(header.map((h, i) => pad(h, widths[i])).join(' |'))
console.log(widths.map(w => '-'.repeat(w)).join('-|'))
benchSize(1_000) // warm-up, discarded: the first size measured would otherwise pay for the JIT
for (const n of sizes) {
  const r = benchSize(n)
  console.log([
    r.n.toLocaleString('en-US'), String(r.updateBytes), fmt(r.judge), fmt(r.apply), fmt(r.judge / r.apply, 2),
    fmt(r.judgeApply), fmt(r.batch), fmt(r.batch / BATCH, 2)
  ].map((c, i) => pad(c, widths[i])).join(' |'))
}
