import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import WebSocket from 'ws'
import * as awarenessProtocol from 'y-protocols/awareness'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, waitFor, type Peer } from '../helpers/clients.ts'
import { encodeAwareness, encodeSyncStep1 } from '../../shared/protocol.ts'

const HEARTBEAT = 100
const Live = suite<{ s: TestServer, peers: Peer[] }>('liveness and ghosts')
Live.before.each(async ctx => {
  ctx.s = await startServer({ config: { heartbeatMs: HEARTBEAT, keepaliveMs: HEARTBEAT } })
  ctx.peers = []
  await ctx.s.api('PUT', '/v1/conversations/room', { participants: ['boss'] })
})
Live.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

/** A guest speaking the protocol by hand, with a chosen awareness client id and clock. */
const rawGuest = async (s: TestServer, user: string, clientId: number, clock: number, autoPong: boolean): Promise<WebSocket> => {
  const ws = new WebSocket(`${s.wsUrl}/room?guest=1&token=${await s.token(user)}`, { autoPong })
  ws.on('error', () => {})
  await new Promise(resolve => ws.once('open', resolve))
  ws.send(encodeSyncStep1(Y.encodeStateVector(new Y.Doc())))
  const aw = new awarenessProtocol.Awareness(new Y.Doc())
  aw.clientID = clientId
  aw.setLocalState(null)
  aw.states.set(clientId, { user: { name: user } })
  aw.meta.set(clientId, { clock, lastUpdated: Date.now() })
  ws.send(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(aw, [clientId])))
  aw.destroy()
  return ws
}

const sees = (p: Peer, clientId: number): boolean => p.provider.awareness.getStates().has(clientId)

Live('a connection that stops answering pings is closed and its presence removed', async ctx => {
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  const ws = await rawGuest(ctx.s, 'silent', 777001, 3, false)
  await waitFor(() => sees(boss, 777001), 5000, 'guest visible')
  const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
  await waitFor(() => !sees(boss, 777001), 30 * HEARTBEAT, 'presence removed after missed pongs')
  assert.is(await closed, 1006)
})

Live('a client that reconnects with its state as "updated" and then drops abruptly leaves no ghost', async ctx => {
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  // The first connection goes half-open: it never answers pings and is never closed by the client.
  const first = await rawGuest(ctx.s, 'roamer', 777002, 5, false)
  await waitFor(() => sees(boss, 777002), 5000, 'first connection visible')
  // The same client reconnects on a new socket: same client id, same clock (an "updated" state).
  const second = await rawGuest(ctx.s, 'roamer', 777002, 5, true)
  await new Promise(resolve => setTimeout(resolve, 50))
  second.terminate()
  const t0 = Date.now()
  await waitFor(() => !sees(boss, 777002), 20 * HEARTBEAT, 'no ghost after the abrupt drop')
  assert.ok(Date.now() - t0 < 20 * HEARTBEAT)
  first.terminate()
})

Live('every peer receives a frame at least every keepalive period even when nothing happens', async ctx => {
  const boss = connectPeer(ctx.s.wsUrl, 'room', await ctx.s.token('boss'))
  ctx.peers.push(boss)
  await boss.synced
  const ws = await rawGuest(ctx.s, 'idle', 777003, 1, true)
  await new Promise(resolve => setTimeout(resolve, 3 * HEARTBEAT))
  const stamps: number[] = []
  ws.on('message', () => stamps.push(Date.now()))
  const start = Date.now()
  await new Promise(resolve => setTimeout(resolve, 10 * HEARTBEAT))
  const gaps = [...stamps, Date.now()].map((t, i, a) => t - (i === 0 ? start : a[i - 1]))
  assert.ok(stamps.length >= 5, `received ${stamps.length} frames in ${10 * HEARTBEAT} ms`)
  assert.ok(Math.max(...gaps) < 8 * HEARTBEAT, `largest silence ${Math.max(...gaps)} ms`)
  const serverId = ctx.s.server.rooms.peek('room')!.doc.clientID
  const state = boss.provider.awareness.getStates().get(serverId) as { parley: { guestCount: number, participantCount: number } }
  assert.equal(state.parley, { guestCount: 1, participantCount: 1 })
  ws.close()
})

Live.run()
