/**
 * Resource abuse over real sockets (issue 13, contract §7): sockets that never read, liveness
 * proven by pongs only, message rate limits and slowMode, connection caps, and awareness
 * amplification by one user's many sockets or by many guests.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import WebSocket from 'ws'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, connectRaw, sendMessage, texts, waitFor, type Peer } from '../helpers/clients.ts'
import { awarenessFrame, changesOf, connectRawPeer, encodeSyncStep1, type RawPeer } from '../helpers/crafted.ts'
import { messagesOf } from '../../shared/doc.ts'
import type { SyncConnection } from '../../server/sync/connection.ts'

const HEARTBEAT = 150
const Abuse = suite<{ s: TestServer, peers: Peer[], raws: Array<{ ws: WebSocket }> }>('resource abuse')
Abuse.before.each(async ctx => {
  ctx.s = await startServer({ config: { heartbeatMs: HEARTBEAT, historyWindow: 300, archiveChunk: 100 } })
  ctx.peers = []
  ctx.raws = []
  await ctx.s.api('PUT', '/v1/conversations/room', { participants: ['boss', 'alice'] })
})
Abuse.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  for (const r of ctx.raws) r.ws.terminate()
  await ctx.s.stop()
})

const guestUrl = async (s: TestServer, user: string, room = 'room'): Promise<string> => `${s.wsUrl}/${room}?guest=1&token=${await s.token(user)}`

/** The server side of the only connection of `user` in `room`. */
const serverConn = (s: TestServer, user: string, room = 'room'): SyncConnection => {
  const r = s.server.rooms.peek(room)
  const conn = r === undefined ? undefined : [...r.connections()].find(c => c.userId === user)
  if (conn === undefined) throw new Error(`no connection of ${user}`)
  return conn as SyncConnection
}

Abuse('a socket that never reads and sends many sync step 1s holds at most one answer on the server and is cut', async ctx => {
  // A live window of 300 messages of 9,900 characters: each answer to a step 1 is ~3 MB.
  const text = 'x'.repeat(9900)
  for (let i = 0; i < 30; i++) {
    const r = await ctx.s.api('POST', '/v1/conversations/room/messages', Array.from({ length: 10 }, () => ({ text, type: 'SystemMessage' })))
    assert.is(r.status, 201)
  }
  const answer = Y.encodeStateAsUpdate(ctx.s.server.rooms.peek('room')!.doc).byteLength
  assert.ok(answer > 2_900_000, `answer ${answer} bytes`)
  const raw = connectRaw(await guestUrl(ctx.s, 'hoarder'))
  ctx.raws.push(raw)
  await raw.opened
  // Never read again: no data, no pings, no pongs.
  ;(raw.ws as unknown as { _socket: { pause (): void } })._socket.pause()
  await waitFor(() => ctx.s.server.rooms.peek('room')?.connectionCount === 1, 5000, 'admitted')
  const conn = serverConn(ctx.s, 'hoarder')
  const empty = encodeSyncStep1(Y.encodeStateVector(new Y.Doc()))
  for (let i = 0; i < 40; i++) raw.ws.send(empty)
  await waitFor(() => ctx.s.server.rooms.peek('room')?.connectionCount === 0, 40 * HEARTBEAT, 'the hoarder is closed')
  // Before: 40 answers sent (~120 MB, in ws and kernel buffers). Now: one answer, then nothing
  // more until the peer has read it.
  assert.ok(conn.peakUnreadBytes < 2 * answer, `peak unread ${conn.peakUnreadBytes} bytes, one answer is ${answer}`)
})

Abuse('a client that keeps sending frames but never answers pings is cut within two heartbeats', async ctx => {
  const ws = new WebSocket(await guestUrl(ctx.s, 'chatty'), { autoPong: false })
  ctx.raws.push({ ws })
  ws.on('error', () => {})
  await new Promise(resolve => ws.once('open', resolve))
  const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
  let isClosed = false
  void closed.then(() => { isClosed = true })
  const empty = encodeSyncStep1(Y.encodeStateVector(new Y.Doc()))
  // Bounded: at most 400 frames, one every 10 ms.
  for (let i = 0; i < 400 && !isClosed; i++) {
    ws.send(empty)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  assert.ok(isClosed, 'closed while it was still sending')
  assert.is(await closed, 1006)
})

/** A raw guest peer that may write, with its own client id. */
const rawWriter = async (s: TestServer, user: string, clientId: number): Promise<RawPeer> =>
  await connectRawPeer(await guestUrl(s, user), clientId)

const messageUpdate = (peer: RawPeer, user: string, count: number, tag: string): Uint8Array =>
  changesOf(peer.doc, doc => {
    messagesOf(doc).push(Array.from({ length: count }, (_, i) => ({ id: `${tag}-${i}`, senderId: user, text: `${tag} ${i}`, createdAt: Date.now(), type: 'UserMessage' as const })))
  })

Abuse('a flooding guest is refused with 4429 RATE_LIMITED past its burst; nothing of the refused update is stored; others go on', async ctx => {
  await ctx.s.api('PATCH', '/v1/settings', { messageRate: { perSecond: 0.001, burst: 5 } })
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  const flooder = await rawWriter(ctx.s, 'flooder', 424242)
  ctx.raws.push(flooder)
  flooder.sendUpdate(messageUpdate(flooder, 'flooder', 3, 'a'))
  assert.ok(await flooder.barrier(), 'three messages fit in the burst')
  flooder.sendUpdate(messageUpdate(flooder, 'flooder', 3, 'b'))
  assert.is((await flooder.closed).code, 4429)
  assert.is(flooder.authReason()?.code, 'RATE_LIMITED')
  const room = ctx.s.server.rooms.peek('room')!
  await room.whenDurable()
  assert.equal(texts(room.doc).filter(t => t.startsWith('a ') || t.startsWith('b ')), ['a 0', 'a 1', 'a 2'])
  const stored = new Y.Doc()
  const loaded = await ctx.s.store.loadDoc('room')
  if (loaded.snapshot !== null) Y.applyUpdate(stored, loaded.snapshot)
  for (const u of loaded.updates) Y.applyUpdate(stored, u)
  assert.not.ok(texts(stored).some(t => t.startsWith('b ')), 'the refused batch is not stored')
  // Another user's allowance is its own, and delivery goes on.
  const alice = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('alice'))
  ctx.peers.push(alice)
  await alice.synced
  sendMessage(alice.doc, 'alice', 'still here')
  await waitFor(() => texts(boss.doc).includes('still here'), 5000, 'boss receives alice')
  assert.ok(texts(boss.doc).includes('a 2') && !texts(boss.doc).includes('b 0'))
  // Reconnecting at once is refused at admission, before any sync answer.
  const again = connectRaw(await guestUrl(ctx.s, 'flooder'))
  ctx.raws.push(again)
  assert.is((await again.closed).code, 4429)
  assert.is(again.authReason()?.code, 'RATE_LIMITED')
  assert.not.ok(again.frames.some(f => f[0] === 0), 'no sync frame was sent to it')
})

Abuse('slowMode: set by an admin only, one message per user per interval, REST answers 429 with Retry-After', async ctx => {
  const byUser = await ctx.s.api('PUT', '/v1/conversations/room', { slowMode: 60 }, `Bearer ${await ctx.s.token('boss')}`)
  assert.is(byUser.status, 403)
  const set = await ctx.s.api('PUT', '/v1/conversations/room', { slowMode: 60 })
  assert.is(set.status, 200)
  assert.is(set.body.slowMode, 60)
  assert.is((await ctx.s.api('GET', '/v1/conversations/room')).body.slowMode, 60)
  const guest = await rawWriter(ctx.s, 'talker', 515151)
  ctx.raws.push(guest)
  guest.sendUpdate(messageUpdate(guest, 'talker', 1, 'one'))
  assert.ok(await guest.barrier(), 'the first message passes')
  guest.sendUpdate(messageUpdate(guest, 'talker', 1, 'two'))
  assert.is((await guest.closed).code, 4429)
  const first = await ctx.s.api('POST', '/v1/conversations/room/messages', [{ text: 'hi', sender: 'alice', type: 'UserMessage' }])
  assert.is(first.status, 201)
  const res = await fetch(`${ctx.s.url}/v1/conversations/room/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${'test-secret-0123456789abcdef'}`, 'content-type': 'application/json' },
    body: JSON.stringify([{ text: 'again', sender: 'alice', type: 'UserMessage' }])
  })
  assert.is(res.status, 429)
  assert.is((await res.json()).error.code, 'RATE_LIMITED')
  const retry = Number(res.headers.get('retry-after'))
  assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`)
  // System messages have no sender and are not limited.
  assert.is((await ctx.s.api('POST', '/v1/conversations/room/messages', [{ text: 'notice', type: 'SystemMessage' }])).status, 201)
})

Abuse('REST posts share the sender\'s allowance with its sockets', async ctx => {
  await ctx.s.api('PATCH', '/v1/settings', { messageRate: { perSecond: 0.001, burst: 4 } })
  const ok = await ctx.s.api('POST', '/v1/conversations/room/messages', Array.from({ length: 4 }, (_, i) => ({ text: `r${i}`, sender: 'alice', type: 'UserMessage' })))
  assert.is(ok.status, 201)
  const refused = await ctx.s.api('POST', '/v1/conversations/room/messages', [{ text: 'r4', sender: 'alice', type: 'UserMessage' }])
  assert.is(refused.status, 429)
  const alice = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('alice'))
  ctx.peers.push(alice)
  await alice.synced
  sendMessage(alice.doc, 'alice', 'over')
  await waitFor(() => alice.closes.length > 0, 5000, 'alice closed')
  assert.is(alice.closes[0].code, 4429)
})

Abuse('connections per user and conversations per user are capped with 4429', async ctx => {
  await ctx.s.api('PATCH', '/v1/settings', { maxConnectionsPerUser: 2, maxConversationsPerUser: 1 })
  await ctx.s.api('PUT', '/v1/conversations/other', {})
  const a = connectRaw(await guestUrl(ctx.s, 'many'))
  const b = connectRaw(await guestUrl(ctx.s, 'many'))
  ctx.raws.push(a, b)
  await waitFor(() => ctx.s.server.rooms.peek('room')?.connectionCount === 2, 5000, 'two admitted')
  const third = connectRaw(await guestUrl(ctx.s, 'many'))
  ctx.raws.push(third)
  assert.is((await third.closed).code, 4429)
  assert.is(third.authReason()?.code, 'RATE_LIMITED')
  a.ws.close()
  await waitFor(() => ctx.s.server.rooms.peek('room')?.connectionCount === 1, 5000, 'one left')
  const elsewhere = connectRaw(await guestUrl(ctx.s, 'many', 'other'))
  ctx.raws.push(elsewhere)
  assert.is((await elsewhere.closed).code, 4429, 'a second conversation is over maxConversationsPerUser')
  assert.is(ctx.s.server.rooms.peek('other')?.connectionCount ?? 0, 0, 'nothing attached to the refused conversation')
  const again = connectRaw(await guestUrl(ctx.s, 'many'))
  ctx.raws.push(again)
  await waitFor(() => ctx.s.server.rooms.peek('room')?.connectionCount === 2, 5000, 'a slot freed by a close is usable')
})

/** Guest client ids of `peer`'s awareness, other than the server's summary. */
const guestStates = (p: Peer, user: string): number =>
  [...p.provider.awareness.getStates().values()].filter(s => (s as { user?: { id?: string } }).user?.id === user).length

Abuse('one user\'s many sockets hold at most 8 awareness states in a room, whatever each socket sends', async ctx => {
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  const pad = 'p'.repeat(3500)
  for (let k = 0; k < 10; k++) {
    const raw = connectRaw(await guestUrl(ctx.s, 'swarm'))
    ctx.raws.push(raw)
    await raw.opened
    raw.ws.send(awarenessFrame([0, 1, 2, 3].map(j => ({ clientId: 600_000 + k * 10 + j, clock: 1, state: { user: { name: 's' }, pad } }))))
  }
  const probe = await rawWriter(ctx.s, 'probe', 989898)
  ctx.raws.push(probe)
  assert.ok(await probe.barrier(), 'the server processed everything before')
  await waitFor(() => guestStates(boss, 'swarm') >= 8, 5000, 'boss sees the swarm')
  await new Promise(resolve => setTimeout(resolve, 200))
  assert.is(guestStates(boss, 'swarm'), 8)
})

Abuse('participants receive at most 100 guest states; the rest are counted in guestCount', async ctx => {
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  const guests: Array<{ ws: WebSocket }> = []
  for (let k = 0; k < 104; k++) {
    const raw = connectRaw(await guestUrl(ctx.s, `g${k}`))
    ctx.raws.push(raw)
    guests.push(raw)
    await raw.opened
    raw.ws.send(awarenessFrame([{ clientId: 700_000 + k, clock: 1, state: { user: { name: `g${k}` } } }]))
  }
  const guestIds = (): number[] => [...boss.provider.awareness.getStates().entries()]
    .filter(([, s]) => (s as { user?: { role?: string } }).user?.role === 'guest').map(([id]) => id)
  const summary = (): number => {
    for (const s of boss.provider.awareness.getStates().values()) {
      const count = (s as { parley?: { guestCount?: number } }).parley?.guestCount
      if (count !== undefined) return count
    }
    return -1
  }
  await waitFor(() => summary() === 104, 10_000, 'guestCount 104')
  await waitFor(() => guestIds().length === 100, 5000, '100 guest states')
  // A late joiner gets the same bounded view in its first frame.
  const late = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('alice'))
  ctx.peers.push(late)
  await late.synced
  await waitFor(() => [...late.provider.awareness.getStates().values()].filter(s => (s as { user?: { role?: string } }).user?.role === 'guest').length === 100, 5000, 'late joiner sees 100')
  // When a shown guest leaves, a hidden one takes its place.
  const shown = guestIds()
  const leaving = shown[0] - 700_000
  guests[leaving].ws.close()
  await waitFor(() => summary() === 103 && guestIds().length === 100 && !guestIds().includes(shown[0]), 5000, 'a hidden guest is shown instead')
})

Abuse.run()
