/**
 * Holes a red team found (issue 13) that are not moderation: token expiry on live sockets,
 * admin tokens without a user on the sync endpoint, names that would mislead people.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { SignJWT } from 'jose'
import { connect, type AddressInfo } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { clientError } from '../../server/http-errors.ts'
import { startServer, TEST_SECRET, type TestServer } from '../helpers/server.ts'
import { connectPeer, connectRaw, sendMessage, waitFor } from '../helpers/clients.ts'
import { connectRawPeer, craft, msg } from '../helpers/crafted.ts'

const Holes = suite<{ s: TestServer }>('red-team holes')

Holes.before.each(async ctx => {
  ctx.s = await startServer()
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
})
Holes.after.each(async ctx => { await ctx.s.stop() })

Holes('a live socket is closed with 4401 TOKEN_EXPIRED when its token expires; what it sends after is not stored', async ctx => {
  const token = await ctx.s.token('alice', 2)
  const peer = await connectRawPeer(`${ctx.s.wsUrl}/c1?token=${token}`, 4242)
  try {
    // While valid it writes.
    peer.sendUpdate(craft([{ client: 4242, clock: 0, structs: [{ parent: 'messages', content: { any: [msg('early', 'alice')] } }] }]))
    assert.ok(await peer.barrier(), 'accepted while the token is valid')
    const closed = await peer.closed
    assert.equal([closed.code, closed.reason], [4401, 'TOKEN_EXPIRED'])
    assert.is(peer.authReason()?.code, 'TOKEN_EXPIRED')
    assert.equal(ctx.s.server.rooms.peek('c1')?.doc.getArray('messages').toArray().map(m => (m as { id: string }).id), ['early'])
  } finally {
    peer.end()
  }
})

Holes('an admin-scope token without sub is refused on the sync endpoint (TOKEN_INVALID), not admitted as user ""', async ctx => {
  const key = new TextEncoder().encode(TEST_SECRET)
  const now = Math.floor(Date.now() / 1000)
  const admin = await new SignJWT({ scope: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 600).sign(key)
  await ctx.s.api('PUT', '/v1/conversations/c1', { guestAccess: 'write' })
  for (const q of ['', '&guest=1']) {
    const r = connectRaw(`${ctx.s.wsUrl}/c1?token=${admin}${q}`)
    const closed = await r.closed
    assert.is(closed.code, 4401)
    assert.is(r.authReason()?.code, 'TOKEN_INVALID')
  }
  // It is still an admin credential over REST.
  assert.is((await ctx.s.api('GET', '/v1/conversations/c1', undefined, `Bearer ${admin}`)).status, 200)
})

Holes('names and subjects with control characters, bidi overrides or lone surrogates are refused with INVALID_REQUEST', async ctx => {
  const bad = ['bo\u0000b', 'evil\u202Egnp.exe', 'half \ud800 surrogate', 'tail \udc00', 'new\nline', 'iso\u2066late']
  for (const name of bad) {
    const user = await ctx.s.api('PUT', '/v1/users/u1', { name })
    assert.equal([user.status, user.body.error.code], [400, 'INVALID_REQUEST'], JSON.stringify(name))
    const conv = await ctx.s.api('PUT', '/v1/conversations/c1', { subject: name })
    assert.equal([conv.status, conv.body.error.code], [400, 'INVALID_REQUEST'], JSON.stringify(name))
  }
  for (const name of ['Zoë 🌍', 'שלום', 'مرحبا', 'Ana-María']) {
    assert.is((await ctx.s.api('PUT', '/v1/users/u1', { name })).status === 400, false, name)
    assert.is((await ctx.s.api('PUT', '/v1/conversations/c1', { subject: name })).status, 200, name)
  }
  assert.is((await ctx.s.api('GET', '/v1/users/u1')).body.name, 'Ana-María')
})

Holes('conversation-id squatting: answers say who created a conversation, and an admin claims it in one call', async ctx => {
  const squatter = `Bearer ${await ctx.s.token('squatter')}`
  const made = await ctx.s.api('PUT', '/v1/conversations/support-43', { subject: 'Support' }, squatter)
  assert.equal([made.status, made.body.createdBy], [201, 'squatter'])
  const peer = connectPeer(ctx.s.wsUrl, 'support-43', await ctx.s.token('squatter'))
  try {
    await peer.synced
    sendMessage(peer.doc, 'squatter', 'give me your password')
    await waitFor(() => ctx.s.server.rooms.peek('support-43')?.doc.getArray('messages').length === 1, 5000, 'the message lands')
    // A plain admin PUT merges, and says the conversation is a user's.
    const merged = await ctx.s.api('PUT', '/v1/conversations/support-43', { participants: ['agent'] })
    assert.equal([merged.status, merged.body.createdBy, Object.keys(merged.body.participants).sort()], [200, 'squatter', ['agent', 'squatter']])
    assert.is((await ctx.s.api('PUT', '/v1/conversations/support-43?claim=1', {}, squatter)).body.error.code, 'ADMIN_REQUIRED')
    // The claim starts it over as the admin defines it.
    const claimed = await ctx.s.api('PUT', '/v1/conversations/support-43?claim=1', { participants: ['agent', 'customer'], subject: 'Order 43' })
    assert.equal([claimed.status, claimed.body.createdBy, claimed.body.subject], [201, null, 'Order 43'])
    assert.equal(Object.keys(claimed.body.participants).sort(), ['agent', 'customer'])
    await waitFor(() => peer.closes.length > 0, 5000, 'the squatter closed')
    assert.is(peer.closes[0].code, 4404)
    assert.equal((await ctx.s.api('GET', '/v1/conversations/support-43/messages')).body.data, [])
    assert.equal((await ctx.s.api('GET', '/v1/users/squatter/conversations')).body.data, [])
    // Claiming what an admin created is an ordinary merge.
    await ctx.s.api('POST', '/v1/conversations/support-43/messages', [{ text: 'hello', sender: 'agent', type: 'UserMessage' }])
    const again = await ctx.s.api('PUT', '/v1/conversations/support-43?claim=1', { participants: ['agent', 'customer'] })
    assert.is(again.status, 200)
    assert.is((await ctx.s.api('GET', '/v1/conversations/support-43/messages')).body.data.length, 1)
  } finally {
    peer.destroy()
  }
})

/** Sends raw bytes to the server and reads its whole answer (the server closes the socket). */
const rawHttp = async (port: number, data: string): Promise<{ status: number, body: unknown }> => await new Promise((resolve, reject) => {
  const socket = connect(port, '127.0.0.1', () => socket.write(data))
  let out = ''
  socket.setEncoding('utf8')
  socket.on('data', d => { out += d })
  socket.on('error', reject)
  socket.on('close', () => {
    const [head, ...rest] = out.split('\r\n\r\n')
    resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), body: JSON.parse(rest.join('\r\n\r\n')) })
  })
})

Holes('requests that never reach a route answer the project\'s error body: a path too long (fastify\'s 414), a bad URL, 431, unparsable HTTP', async ctx => {
  const port = Number(new URL(ctx.s.url).port)
  const cases: Array<[string, number, string]> = [
    [`GET /v1/conversations/${'a'.repeat(2000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 400, 'INVALID_ID'],
    ['GET /v1/conversations/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'INVALID_ID'],
    [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ['NOT HTTP AT ALL\r\n\r\n', 400, 'INVALID_REQUEST']
  ]
  for (const [request, status, code] of cases) {
    const res = await rawHttp(port, request)
    assert.is(res.status, status, code)
    assert.is((res.body as { error: { code: string } }).error.code, code)
  }
})

Holes('a request slower than the server\'s timeouts answers 408 REQUEST_TIMEOUT in the project\'s body', async () => {
  // Parley's own handler on a Node server with short timeouts (Parley keeps Node's defaults: 60 s).
  const server = createHttpServer({ requestTimeout: 300, headersTimeout: 200, connectionsCheckingInterval: 50 }, (_req, res) => { res.end() })
  server.on('clientError', clientError)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  try {
    const res = await rawHttp((server.address() as AddressInfo).port, 'GET / HTTP/1.1\r\nHost: x\r\n')
    assert.is(res.status, 408)
    assert.is((res.body as { error: { code: string } }).error.code, 'REQUEST_TIMEOUT')
  } finally {
    server.close()
  }
})

Holes('security headers on the API and the page: CSP, nosniff, no framing, no referrer', async ctx => {
  for (const path of ['/v1/settings', '/', '/healthz']) {
    const res = await fetch(ctx.s.url + path)
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/, path)
    assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path)
    assert.is(res.headers.get('x-content-type-options'), 'nosniff', path)
    assert.is(res.headers.get('referrer-policy'), 'no-referrer', path)
  }
})

Holes.run()
