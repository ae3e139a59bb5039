/**
 * Malformed frames at the socket (contract §3, §7; issue 4): a seeded, bounded run that opens
 * connections to a real server and sends random bytes, truncations of valid frames, huge
 * varints, unknown message types, empty frames and text frames. Each offending connection is
 * closed with 4400 (a malformed protocol message; 4403 allowed only where random bytes happen
 * to form a well-formed update that breaks a rule), the server stays up, the document and the
 * store are unchanged, a bystander stock provider keeps syncing, and the heap stays bounded.
 *
 * Seed: PARLEY_FUZZ_SEED (default below); every assertion message names it, so a failure
 * replays with `PARLEY_FUZZ_SEED=<seed> node --import tsx test/run.ts malformed`.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startServer, UNLIMITED_RATE, type TestServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, texts, waitFor, type Peer } from '../helpers/clients.ts'
import {
  awarenessFrame, changesOf, connectRawPeer, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate, msg, type RawPeer
} from '../helpers/crafted.ts'

const SEED = Number(process.env.PARLEY_FUZZ_SEED ?? 0x5eed_4044)
const MAX_CASES = 400
/** Connections in flight at once. */
const PARALLEL = 8
/** No new batch starts after this; the run stays within a few seconds. */
const BUDGET_MS = 3000
/** Loose bound on heap growth over the run. */
const HEAP_BOUND_MB = 64
const CONV = 'c1'

const tag = `[seed ${SEED}]`

/** mulberry32: small, fast, good enough for test input. */
const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const gc = ((): (() => void) | null => {
  const g = (globalThis as { gc?: () => void }).gc
  if (typeof g === 'function') return g
  try {
    setFlagsFromString('--expose-gc')
    const fn: unknown = runInNewContext('gc')
    return typeof fn === 'function' ? fn as () => void : null
  } catch {
    return null
  }
})()

const heapMb = (): number => {
  if (gc !== null) { gc(); gc() }
  return process.memoryUsage().heapUsed / 1024 / 1024
}

type Frame = Uint8Array | string
/** `malformed`: must close with 4400. `any`: closed with 4400/4403, or still open (it was well-formed). */
interface Case { kind: string, frames: Frame[], expect: 'malformed' | 'any' }

const varuintBytes = (n: number | bigint): number[] => {
  const out: number[] = []
  let v = BigInt(n)
  while (v > 127n) { out.push(Number(v & 127n) | 128); v >>= 7n }
  out.push(Number(v))
  return out
}

/** A varint that never ends, or one far beyond 2^53. */
const hugeVarint = (rand: () => number): number[] =>
  rand() < 0.5 ? new Array<number>(10 + Math.floor(rand() * 20)).fill(0xff) : varuintBytes(2n ** BigInt(53 + Math.floor(rand() * 20)) + 1n)

const randomBytes = (rand: () => number, max: number): Uint8Array => {
  const b = new Uint8Array(Math.floor(rand() * max))
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256)
  return b
}

const pick = <T>(rand: () => number, list: readonly T[]): T => list[Math.floor(rand() * list.length)]

/** Valid frames to truncate: an honest update, a full step 2, a step 1, an awareness update. */
const validFrames = (server: Y.Doc): Uint8Array[] => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, Y.encodeStateAsUpdate(server))
  const update = changesOf(doc, d => { d.getArray('messages').push([msg('trunc', 'alice', { custom: { k: 'v' } })]) })
  return [
    encodeSyncUpdate(update),
    encodeSyncStep2(Y.encodeStateAsUpdate(server)),
    encodeSyncStep1(Y.encodeStateVector(server)),
    awarenessFrame([{ clientId: 777, clock: 1, state: { user: { name: 'trunc' }, typing: true } }])
  ]
}

const makeCase = (rand: () => number, valid: Uint8Array[]): Case => {
  const r = rand()
  if (r < 0.2) {
    return { kind: 'random bytes', frames: [randomBytes(rand, 64)], expect: 'any' }
  }
  if (r < 0.35) {
    const f = pick(rand, valid)
    const cut = 1 + Math.floor(rand() * (f.length - 1))
    return { kind: `truncation at ${cut}/${f.length}`, frames: [f.subarray(0, cut)], expect: 'malformed' }
  }
  if (r < 0.5) {
    const variants: Array<() => number[]> = [
      () => hugeVarint(rand), // message type
      () => [0, ...hugeVarint(rand)], // sync subtype
      () => [0, 2, ...hugeVarint(rand), 1, 2, 3], // update length
      () => [1, ...hugeVarint(rand), 0], // awareness length
      () => [2, 0, ...hugeVarint(rand)], // auth reason length
      () => [0, 0, ...varuintBytes(2 ** 31), 0] // a step 1 claiming 2 GiB
    ]
    return { kind: 'huge varint', frames: [new Uint8Array(pick(rand, variants)())], expect: 'malformed' }
  }
  if (r < 0.6) {
    const type = rand() < 0.5 ? 3 + Math.floor(rand() * 125) : 128 + Math.floor(rand() * 2 ** 20)
    const sub = rand() < 0.3
    const head = sub ? [0, ...varuintBytes(3 + Math.floor(rand() * 100))] : varuintBytes(type)
    return { kind: sub ? 'unknown sync subtype' : `unknown type ${type}`, frames: [new Uint8Array([...head, ...randomBytes(rand, 16)])], expect: 'malformed' }
  }
  if (r < 0.67) {
    // An empty frame, maybe after a valid step 1 (so the connection is mid-protocol).
    return { kind: 'empty frame', frames: rand() < 0.5 ? [new Uint8Array(0)] : [valid[2], new Uint8Array(0)], expect: 'malformed' }
  }
  if (r < 0.74) {
    const chars = Array.from({ length: Math.floor(rand() * 40) }, () => String.fromCharCode(32 + Math.floor(rand() * 90)))
    return { kind: 'text frame', frames: [chars.join('')], expect: 'malformed' }
  }
  if (r < 0.8) {
    // A valid frame with junk after it.
    const f = pick(rand, valid)
    return { kind: 'trailing bytes', frames: [new Uint8Array([...f, ...randomBytes(rand, 8), 0])], expect: 'malformed' }
  }
  if (r < 0.9) {
    // Random bytes inside a well-formed sync envelope: the Yjs update reader sees them.
    const payload = randomBytes(rand, 48)
    return { kind: 'random update', frames: [rand() < 0.5 ? encodeSyncUpdate(payload) : encodeSyncStep2(payload)], expect: 'any' }
  }
  // Random bytes inside a well-formed awareness envelope.
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 1)
  encoding.writeVarUint8Array(e, randomBytes(rand, 48))
  return { kind: 'random awareness', frames: [encoding.toUint8Array(e)], expect: 'any' }
}

interface Ctx { s: TestServer, bob: Peer }

const Malformed = suite<Ctx>('malformed frames at the socket')

Malformed.before.each(async ctx => {
  // The bystanders exchange many messages; rate limits are tested in abuse.test.ts.
  ctx.s = await startServer({ settings: UNLIMITED_RATE })
  await ctx.s.api('PUT', `/v1/conversations/${CONV}`, { participants: ['alice', 'bob'], subject: 'Fuzz' })
  await ctx.s.api('POST', `/v1/conversations/${CONV}/messages`, [{ text: 'first', sender: 'alice', type: 'UserMessage' }])
  ctx.bob = connectPeer(ctx.s.wsUrl, CONV, await ctx.s.token('bob'))
  await ctx.bob.synced
})

Malformed.after.each(async ctx => {
  ctx.bob.destroy()
  await ctx.s.stop()
})

Malformed(`each malformed connection is closed with 4400, the server, the document, the store and a bystander are unaffected, and the heap stays bounded (seed ${SEED})`, async ctx => {
  const { s } = ctx
  const rand = prng(SEED)
  const room = s.server.rooms.peek(CONV)
  if (room === undefined) throw new Error(`${tag} the room is not loaded`)
  const valid = validFrames(room.doc)
  const token = await s.token('alice')
  const url = `${s.wsUrl}/${CONV}?token=${token}`
  const heapBefore = heapMb()
  const started = Date.now()
  const outcomes = new Map<string, number>()
  let cases = 0
  let exchanges = 0

  while (cases < MAX_CASES && Date.now() - started < BUDGET_MS) {
    await room.whenDurable()
    const bytesBefore = Y.encodeStateAsUpdate(room.doc)
    const rootsBefore = [...room.doc.share.keys()].sort()
    const storedBefore = await s.store.loadDoc(CONV)

    const batch = Array.from({ length: Math.min(PARALLEL, MAX_CASES - cases) }, () => makeCase(rand, valid))
    cases += batch.length
    await Promise.all(batch.map(async (c, i) => {
      const what = `${tag} case ${cases - batch.length + i} (${c.kind})`
      const peer: RawPeer = await connectRawPeer(url, 900_000 + cases * 16 + i)
      assert.ok(peer.isOpen(), `${what}: admitted`)
      for (const f of c.frames) peer.send(f)
      const result = await Promise.race([
        peer.closed.then(({ code }) => ({ closed: true, code })),
        peer.barrier(3000).then(open => open ? { closed: false, code: 0 } : peer.closed.then(({ code }) => ({ closed: true, code })))
      ])
      const key = result.closed ? `${c.kind.replace(/ (at|type) .*/, '')} -> ${result.code}` : `${c.kind} -> stays open`
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
      if (c.expect === 'malformed') {
        assert.ok(result.closed, `${what}: closed`)
        assert.is(result.code, 4400, `${what}: close code`)
        const reason = peer.authReason()?.code
        assert.ok(reason === 'MALFORMED_MESSAGE' || reason === 'UNKNOWN_MESSAGE_TYPE', `${what}: auth reason ${String(reason)}`)
      } else if (result.closed) {
        assert.ok(result.code === 4400 || result.code === 4403, `${what}: close code ${result.code}`)
        assert.ok(peer.authReason() !== undefined, `${what}: an auth message before the close`)
      } else {
        peer.end()
      }
    }))

    await room.whenDurable()
    assert.ok(s.server.rooms.peek(CONV) === room, `${tag} the room was not closed`)
    assert.equal([...room.doc.share.keys()].sort(), rootsBefore, `${tag} no root appeared`)
    assert.ok(Buffer.from(Y.encodeStateAsUpdate(room.doc)).equals(Buffer.from(bytesBefore)), `${tag} the document is unchanged after cases up to ${cases}`)
    assert.is(room.doc.store.pendingStructs, null, `${tag} nothing pending`)
    assert.is(room.doc.store.pendingDs, null, `${tag} no deletion pending`)
    const storedAfter = await s.store.loadDoc(CONV)
    assert.is(storedAfter.lastSeq, storedBefore.lastSeq, `${tag} nothing stored`)

    // The bystander goes on, both ways.
    const n = ++exchanges
    sendMessage(ctx.bob.doc, 'bob', `bob ${n}`)
    await waitFor(() => texts(room.doc).includes(`bob ${n}`), 5000, `${tag} bob's message ${n} reaches the server`)
    await s.api('POST', `/v1/conversations/${CONV}/messages`, [{ text: `alice ${n}`, sender: 'alice', type: 'UserMessage' }])
    await waitFor(() => texts(ctx.bob.doc).includes(`alice ${n}`), 5000, `${tag} bob receives message ${n}`)
  }

  assert.ok(cases >= 16, `${tag} ran at least two batches (${cases} cases)`)
  assert.equal(ctx.bob.closes, [], `${tag} the bystander was never closed`)
  assert.ok(ctx.bob.provider.wsconnected, `${tag} the bystander is connected`)
  const health = await fetch(`${s.url}/healthz`)
  assert.is(health.status, 200, `${tag} healthz`)
  assert.equal(await health.json(), { ok: true }, `${tag} healthz body`)
  await waitFor(() => room.connectionCount === 1, 5000, `${tag} only the bystander is left attached`)
  const growth = heapMb() - heapBefore
  const summary = [...outcomes.entries()].sort().map(([k, v]) => `${k}: ${v}`).join(', ')
  assert.ok(growth < HEAP_BOUND_MB, `${tag} heap grew ${growth.toFixed(1)} MB over ${cases} cases (${summary})`)
  if (process.env.PARLEY_FUZZ_VERBOSE !== undefined) {
    console.log(`${tag} ${cases} cases in ${Date.now() - started} ms, heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB (gc ${gc !== null ? 'on' : 'off'}): ${summary}`)
  }
})

Malformed(`a burst of garbage on one connection ends it once, and the frames after the offending one are not processed (seed ${SEED})`, async ctx => {
  const { s } = ctx
  const room = s.server.rooms.peek(CONV)
  if (room === undefined) throw new Error(`${tag} the room is not loaded`)
  const peer = await connectRawPeer(`${s.wsUrl}/${CONV}?token=${await s.token('alice')}`, 424_242)
  const before = room.doc.getArray('messages').length
  const honest = changesOf(peer.doc, d => { d.getArray('messages').push([msg('after-garbage', 'alice')]) })
  peer.send(new Uint8Array([0, 2, 0xff, 0xff]))
  for (let i = 0; i < 50; i++) peer.send(randomBytes(prng(SEED + i), 32))
  peer.send(encodeSyncUpdate(honest))
  const { code } = await peer.closed
  assert.is(code, 4400, `${tag} close code`)
  assert.is(peer.frames.filter(f => f[0] === 2).length, 1, `${tag} one auth message`)
  await room.whenDurable()
  assert.is(room.doc.getArray('messages').length, before, `${tag} the honest update after the garbage was not applied`)
})

Malformed.run()
