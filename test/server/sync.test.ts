import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { SignJWT } from 'jose'
import { startServer, TEST_SECRET, type TestServer } from '../helpers/server.ts'
import { connectPeer, connectRaw, sendMessage, texts, waitFor, type Peer } from '../helpers/clients.ts'
import { encodeSyncUpdate } from '../../shared/protocol.ts'
import { messagesOf } from '../../shared/doc.ts'

const Sync = suite<{ s: TestServer, peers: Peer[] }>('sync endpoint')

Sync.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'], subject: 'Hi' })
  await ctx.s.api('PUT', '/v1/conversations/c1/participants/reader', { access: 'Read' })
  await ctx.s.api('PUT', '/v1/conversations/c1/participants/blocked', { access: 'None' })
})
Sync.after.each(async ctx => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

const peer = async (ctx: { s: TestServer, peers: Peer[] }, user: string, room = 'c1', params: Record<string, string> = {}): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, room, await ctx.s.token(user), params)
  ctx.peers.push(p)
  return p
}

Sync('two participants with stock providers exchange messages both ways', async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await Promise.all([a.synced, b.synced])
  sendMessage(a.doc, 'alice', 'hello bob')
  await waitFor(() => texts(b.doc).includes('hello bob'), 5000, 'bob receives')
  sendMessage(b.doc, 'bob', 'hello alice')
  await waitFor(() => texts(a.doc).includes('hello alice'), 5000, 'alice receives')
  assert.equal(texts(a.doc), texts(b.doc))
  assert.is(b.doc.getMap('meta').get('subject'), 'Hi')
  assert.is((b.doc.getMap('participants').get('alice') as { access: string }).access, 'ReadWrite')
})

Sync('a late joiner receives the stored history on sync', async ctx => {
  const a = await peer(ctx, 'alice')
  await a.synced
  for (let i = 0; i < 20; i++) sendMessage(a.doc, 'alice', `m${i}`)
  await waitFor(() => texts(a.doc).length === 20)
  const rest = await ctx.s.api('GET', '/v1/conversations/c1/messages?limit=100')
  await waitFor(() => rest.body.data.length === 20 || true)
  const b = await peer(ctx, 'bob')
  await b.synced
  await waitFor(() => texts(b.doc).length === 20, 5000, 'history')
  assert.equal(texts(b.doc), texts(a.doc))
})

const refusal = async (s: TestServer, path: string): Promise<{ code: number, reason: { code: string } | undefined }> => {
  const c = connectRaw(s.wsUrl + path)
  const { code } = await c.closed
  return { code, reason: c.authReason() }
}

Sync('a missing, forged, expired or alg:none token is refused with 4401', async ctx => {
  const { s } = ctx
  let r = await refusal(s, '/c1')
  assert.is(r.code, 4401); assert.is(r.reason?.code, 'TOKEN_MISSING')
  r = await refusal(s, '/c1?token=garbage')
  assert.is(r.code, 4401); assert.is(r.reason?.code, 'TOKEN_INVALID')
  const wrong = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime('1h').sign(new TextEncoder().encode('another-secret-0123456789'))
  r = await refusal(s, `/c1?token=${wrong}`)
  assert.is(r.reason?.code, 'TOKEN_INVALID')
  const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime(Math.floor(Date.now() / 1000) - 10).sign(new TextEncoder().encode(TEST_SECRET))
  r = await refusal(s, `/c1?token=${expired}`)
  assert.is(r.code, 4401); assert.is(r.reason?.code, 'TOKEN_EXPIRED')
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 })}.`
  r = await refusal(s, `/c1?token=${none}`)
  assert.is(r.code, 4401); assert.is(r.reason?.code, 'TOKEN_INVALID')
  const noExp = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').sign(new TextEncoder().encode(TEST_SECRET))
  r = await refusal(s, `/c1?token=${noExp}`)
  assert.is(r.code, 4401)
})

Sync('non-participants, access None, unknown conversations and bad ids are refused with their codes', async ctx => {
  const { s } = ctx
  let r = await refusal(s, `/c1?token=${await s.token('mallory')}`)
  assert.is(r.code, 4403); assert.is(r.reason?.code, 'NOT_PARTICIPANT')
  r = await refusal(s, `/c1?token=${await s.token('blocked')}`)
  assert.is(r.code, 4403); assert.is(r.reason?.code, 'ACCESS_NONE')
  r = await refusal(s, `/nope?token=${await s.token('alice')}`)
  assert.is(r.code, 4404); assert.is(r.reason?.code, 'CONVERSATION_NOT_FOUND')
  r = await refusal(s, `/bad%20id?token=${await s.token('alice')}`)
  assert.is(r.code, 4400); assert.is(r.reason?.code, 'INVALID_ID')
})

Sync('the stock provider stops reconnecting after a 44xx refusal', async ctx => {
  const m = await peer(ctx, 'mallory')
  await waitFor(() => m.closes.length > 0)
  await new Promise(resolve => setTimeout(resolve, 400))
  assert.is(m.closes.length, 1)
  assert.is(m.closes[0].code, 4403)
  assert.is(m.provider.shouldConnect, false)
})

Sync('a read-only participant reads, and a write from it closes it with 4403 and is not stored', async ctx => {
  const a = await peer(ctx, 'alice')
  const r = await peer(ctx, 'reader')
  await Promise.all([a.synced, r.synced])
  sendMessage(a.doc, 'alice', 'for everyone')
  await waitFor(() => texts(r.doc).includes('for everyone'))
  sendMessage(r.doc, 'reader', 'sneaky')
  await waitFor(() => r.closes.length > 0)
  assert.is(r.closes[0].code, 4403)
  await new Promise(resolve => setTimeout(resolve, 100))
  assert.not.ok(texts(a.doc).includes('sneaky'))
  const rest = await ctx.s.api('GET', '/v1/conversations/c1/messages')
  assert.equal(rest.body.data.map((m: { text: string }) => m.text), ['for everyone'])
})

Sync('writes to the server-only roots are refused with 4403 and other peers are undisturbed', async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await Promise.all([a.synced, b.synced])
  a.doc.getMap('participants').set('alice', { access: 'ReadWrite', notify: true, joinedAt: 0, admin: true })
  await waitFor(() => a.closes.length > 0)
  assert.is(a.closes[0].code, 4403)
  sendMessage(b.doc, 'bob', 'still here')
  await waitFor(() => (ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length ?? 0) === 1)
  const conv = await ctx.s.api('GET', '/v1/conversations/c1')
  assert.equal(conv.body.participants.alice, { access: 'ReadWrite', notify: true })
})

Sync('removing a participant or setting access None closes its live connection with 4403', async ctx => {
  const a = await peer(ctx, 'alice')
  const b = await peer(ctx, 'bob')
  await Promise.all([a.synced, b.synced])
  await ctx.s.api('DELETE', '/v1/conversations/c1/participants/alice')
  await waitFor(() => a.closes.length > 0)
  assert.is(a.closes[0].code, 4403)
  await ctx.s.api('PATCH', '/v1/conversations/c1/participants/bob', { access: 'None' })
  await waitFor(() => b.closes.length > 0)
  assert.is(b.closes[0].code, 4403)
})

Sync('deleting a conversation closes its peers with 4404', async ctx => {
  const a = await peer(ctx, 'alice')
  await a.synced
  const res = await ctx.s.api('DELETE', '/v1/conversations/c1')
  assert.is(res.status, 204)
  await waitFor(() => a.closes.length > 0)
  assert.is(a.closes[0].code, 4404)
  const r = await refusal(ctx.s, `/c1?token=${await ctx.s.token('alice')}`)
  assert.is(r.code, 4404)
})

Sync('a frame over 1 MiB closes with 4413; malformed and unknown messages with 4400', async ctx => {
  const token = await ctx.s.token('alice')
  const big = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  await big.opened
  big.ws.send(new Uint8Array(1024 * 1024 + 1))
  assert.is((await big.closed).code, 4413)
  assert.is(big.authReason()?.code, 'FRAME_TOO_LARGE')

  const bad = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  await bad.opened
  bad.ws.send(new Uint8Array([0, 2, 0xff, 0xff, 0xff]))
  assert.is((await bad.closed).code, 4400)

  const unknown = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  await unknown.opened
  unknown.ws.send(new Uint8Array([7, 0]))
  assert.is((await unknown.closed).code, 4400)
  assert.is(unknown.authReason()?.code, 'UNKNOWN_MESSAGE_TYPE')

  const text = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  await text.opened
  text.ws.send('hello')
  assert.is((await text.closed).code, 4400)

  const b = await peer(ctx, 'bob')
  await b.synced
  sendMessage(b.doc, 'bob', 'fine')
  await waitFor(() => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 1)
})

Sync('a V2-looking or garbage update is refused and leaves the document unchanged', async ctx => {
  const token = await ctx.s.token('alice')
  const c = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  await c.opened
  const before = Y.encodeStateAsUpdate(ctx.s.server.rooms.peek('c1')!.doc)
  c.ws.send(encodeSyncUpdate(new Uint8Array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25])))
  const { code } = await c.closed
  assert.ok(code === 4400 || code === 4403, `code ${code}`)
  assert.equal(Y.encodeStateAsUpdate(ctx.s.server.rooms.peek('c1')!.doc), before)
})

Sync('messages sent before the room finished loading are processed in order', async ctx => {
  const token = await ctx.s.token('alice')
  const c = connectRaw(`${ctx.s.wsUrl}/c1?token=${token}`)
  const doc = new Y.Doc()
  const updates: Uint8Array[] = []
  doc.on('update', (u: Uint8Array) => updates.push(u))
  for (let i = 0; i < 5; i++) messagesOf(doc).push([{ id: `early${i}`, senderId: 'alice', text: `e${i}`, createdAt: Date.now(), type: 'UserMessage' }])
  await c.opened
  for (const u of updates) c.ws.send(encodeSyncUpdate(u))
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0); encoding.writeVarUint(e, 0); encoding.writeVarUint8Array(e, Y.encodeStateVector(new Y.Doc()))
  c.ws.send(encoding.toUint8Array(e))
  await waitFor(() => ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').length === 5)
  c.ws.close()
})

Sync.run()
