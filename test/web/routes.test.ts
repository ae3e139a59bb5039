import { request } from 'node:http'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer, TEST_SECRET } from '../helpers/server.ts'

const Routes = suite('web routes')

Routes('the page is served at / with its bundle at /app.js', async () => {
  const s = await startServer()
  try {
    const page = await fetch(s.url + '/')
    assert.is(page.status, 200)
    assert.match(page.headers.get('content-type') ?? '', /text\/html/)
    const html = await page.text()
    assert.match(html, /<script type="module" src="\/app.js"><\/script>/)
    assert.match(html, /data-demo="0"/)
    const js = await fetch(s.url + '/app.js')
    assert.is(js.status, 200)
    assert.match(js.headers.get('content-type') ?? '', /javascript/)
    assert.ok((await js.text()).length > 10_000)
  } finally {
    await s.stop()
  }
})

Routes('POST /demo/token is 404 unless demo mode is on', async () => {
  const s = await startServer()
  try {
    const res = await fetch(s.url + '/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'alice' }) })
    assert.is(res.status, 404)
    assert.is((await res.json() as { error: { code: string } }).error.code, 'ROUTE_NOT_FOUND')
  } finally {
    await s.stop()
  }
})

Routes('in demo mode POST /demo/token issues a working user token for a valid id only', async () => {
  const s = await startServer({ config: { demo: true } })
  try {
    assert.match(await (await fetch(s.url + '/')).text(), /data-demo="1"/)
    const post = async (body: unknown): Promise<Response> => await fetch(s.url + '/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const res = await post({ userId: 'alice' })
    assert.is(res.status, 200)
    const { token, expiresAt } = await res.json() as { token: string, expiresAt: number }
    assert.ok(expiresAt > Date.now())
    const verified = await s.server.auth.verifyUserToken(token)
    assert.equal([verified.userId, verified.admin], ['alice', false])
    assert.is(verified.expiresAt, expiresAt, 'the token expires when the answer says')
    assert.is.not(token, TEST_SECRET)
    assert.is((await post({ userId: 'no spaces' })).status, 400)
    assert.is((await post({})).status, 400)
  } finally {
    await s.stop()
  }
})

Routes('in loopback-only demo mode a request naming another host gets no token (reverse proxy, DNS rebinding)', async () => {
  const s = await startServer({ config: { demo: true, demoLoopbackOnly: true } })
  try {
    const port = Number(new URL(s.url).port)
    const status = async (host: string): Promise<number> => await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/demo/token', method: 'POST', headers: { host, 'content-type': 'application/json' } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      req.end(JSON.stringify({ userId: 'alice' }))
    })
    assert.is(await status('evil.example'), 403)
    assert.is(await status('chat.example.com:443'), 403)
    assert.is(await status(`127.0.0.1:${port}`), 200)
    assert.is(await status(`localhost:${port}`), 200)
  } finally {
    await s.stop()
  }
})

Routes('demo mode refuses every request that came through a reverse proxy (Forwarded, X-Forwarded-For, X-Real-IP), in every mode', async () => {
  for (const demoLoopbackOnly of [true, false]) {
    const s = await startServer({ config: { demo: true, demoLoopbackOnly } })
    try {
      const post = async (headers: Record<string, string>): Promise<Response> => await fetch(s.url + '/demo/token', {
        method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ userId: 'alice' })
      })
      for (const h of [{ forwarded: 'for=203.0.113.9' }, { 'x-forwarded-for': '203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }] as Array<Record<string, string>>) {
        const res = await post(h)
        assert.is(res.status, 403, JSON.stringify(h))
        assert.is((await res.json() as { error: { code: string } }).error.code, 'FORBIDDEN')
      }
      assert.is((await post({})).status, 200)
    } finally {
      await s.stop()
    }
  }
})

Routes.run()
