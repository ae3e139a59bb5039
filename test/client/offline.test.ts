import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { rm } from 'node:fs/promises'
import type { Session } from '../../client/node.ts'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, texts, waitFor } from '../helpers/clients.ts'
import { convId, countingWebSocket, sessionFor, sleep, tempDir } from './helpers.ts'

const Offline = suite<{ sessions: Session[], servers: TestServer[], dirs: string[] }>('client offline')

Offline.before.each(ctx => { ctx.sessions = []; ctx.servers = []; ctx.dirs = [] })
Offline.after.each(async ctx => {
  await Promise.all(ctx.sessions.map(async s => { await s.close() }))
  for (const s of ctx.servers) await s.stop().catch(() => {})
  for (const d of ctx.dirs) await rm(d, { recursive: true, force: true })
})

const storedTexts = (s: TestServer, id: string): string[] =>
  (s.server.rooms.peek(id)?.doc.getArray('messages').toJSON() ?? []).map(m => (m as { text: string }).text)

Offline('messages sent while the server is down stay pending, then go out exactly once and in order on reconnect', async ctx => {
  const s1 = await startServer()
  ctx.servers.push(s1)
  const id = convId('down')
  await s1.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const ws = countingWebSocket()
  const v = (await sessionFor(s1, 'alice', { WebSocket: ws.ctor }, ctx.sessions)).open(id)
  await v.whenSynced()
  const port = Number(new URL(s1.url).port)
  await s1.stop(true)
  await waitFor(() => v.status !== 'synced', 5000, 'noticed the drop')
  const sent = ['one', 'two', 'three'].map(t => v.send(t))
  assert.equal(v.messages.map(m => m.status), ['pending', 'pending', 'pending'])
  await sleep(300)
  const s2 = await startServer({ dir: s1.dir, config: { port } })
  ctx.servers.push(s2)
  await v.whenSent(sent[2].id)
  assert.equal(v.messages.map(m => m.status), ['sent', 'sent', 'sent'])
  assert.equal(storedTexts(s2, id), ['one', 'two', 'three'])
  assert.ok(ws.count() >= 2, 'reconnected')
  const peer = connectPeer(s2.wsUrl, id, await s2.token('bob'))
  await peer.synced
  assert.equal(texts(peer.doc), ['one', 'two', 'three'])
  peer.destroy()
})

Offline('messages kept in a folder survive an app restart and are delivered exactly once', async ctx => {
  const s1 = await startServer()
  ctx.servers.push(s1)
  const dir = await tempDir()
  ctx.dirs.push(dir)
  const id = convId('restart')
  await s1.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const first = await sessionFor(s1, 'alice', { dir }, [])
  const v1 = first.open(id)
  await v1.whenSynced()
  await v1.whenSent(v1.send('online before').id)
  await s1.stop(true)
  await waitFor(() => v1.status !== 'synced', 5000, 'noticed the drop')
  v1.send('offline 1')
  v1.send('offline 2')
  await first.close() // the app quits with two pending messages
  const s2 = await startServer({ dir: s1.dir })
  ctx.servers.push(s2)
  const second = await sessionFor(s2, 'alice', { dir }, ctx.sessions)
  const v2 = second.open(id)
  await v2.ready
  assert.equal(v2.messages.map(m => [m.text, m.status]), [['online before', 'sent'], ['offline 1', 'pending'], ['offline 2', 'pending']], 'restored from the folder')
  await v2.whenSynced()
  await v2.whenSent(v2.messages[2].id)
  assert.equal(storedTexts(s2, id), ['online before', 'offline 1', 'offline 2'])
  await v2.close()
  const third = await sessionFor(s2, 'alice', { dir }, ctx.sessions)
  const v3 = third.open(id)
  await v3.whenSynced()
  await sleep(100)
  assert.equal(v3.messages.map(m => m.status), ['sent', 'sent', 'sent'], 'acknowledgments were kept')
  assert.equal(storedTexts(s2, id), ['online before', 'offline 1', 'offline 2'], 'nothing sent twice')
})

Offline('a second view of the same conversation and user does not share the stored client id', async ctx => {
  const s = await startServer()
  ctx.servers.push(s)
  const dir = await tempDir()
  ctx.dirs.push(dir)
  const id = convId('twice')
  await s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice'] })
  const session = await sessionFor(s, 'alice', { dir }, ctx.sessions)
  const a = session.open(id)
  const b = session.open(id)
  await Promise.all([a.whenSynced(), b.whenSynced()])
  assert.is.not(a.doc.clientID, b.doc.clientID)
  a.send('from a')
  b.send('from b')
  await waitFor(() => a.messages.length === 2 && b.messages.length === 2 && a.messages.every(m => m.status === 'sent') && b.messages.every(m => m.status === 'sent'))
})

Offline('reactions made while the server is down, kept in a folder across an app restart, go out on reconnect', async ctx => {
  const s1 = await startServer()
  ctx.servers.push(s1)
  const dir = await tempDir()
  ctx.dirs.push(dir)
  const id = convId('react')
  await s1.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const first = await sessionFor(s1, 'alice', { dir }, [])
  const v1 = first.open(id)
  await v1.whenSynced()
  const m = v1.send('react to me')
  await v1.whenSent(m.id)
  v1.react(m.id, '🎉')
  await waitFor(() => s1.server.rooms.peek(id)?.doc.getMap('reactions').has(`${m.id}/alice`) === true, 5000, 'online reaction stored')
  await s1.stop(true)
  await waitFor(() => v1.status !== 'synced', 5000, 'noticed the drop')
  v1.react(m.id, '👍')
  v1.unreact(m.id, '🎉')
  assert.equal(v1.messages[0].reactions, { '👍': ['alice'] }, 'shown at once')
  await first.close() // the app quits with the reactions not delivered
  const s2 = await startServer({ dir: s1.dir })
  ctx.servers.push(s2)
  const stored = (): unknown => s2.server.rooms.peek(id)?.doc.getMap('reactions').get(`${m.id}/alice`)
  const second = await sessionFor(s2, 'alice', { dir }, ctx.sessions)
  const v2 = second.open(id)
  await v2.ready
  assert.equal(v2.messages[0].reactions, { '👍': ['alice'] }, 'restored from the folder')
  await v2.whenSynced()
  await waitFor(() => JSON.stringify(stored()) === '["👍"]', 5000, 'delivered on reconnect')
  const peer = connectPeer(s2.wsUrl, id, await s2.token('bob'))
  await peer.synced
  assert.equal(peer.doc.getMap('reactions').toJSON(), { [`${m.id}/alice`]: ['👍'] })
  peer.destroy()
  assert.is(v2.error, null)
})

Offline.run()
