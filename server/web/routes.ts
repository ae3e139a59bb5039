/**
 * The web UI and its demo sign-in, on the server's own port:
 *
 *   GET  /             the page (HTML shell, styles inlined; `data-demo` tells it whether demo
 *                      sign-in is on)
 *   GET  /app.js       the bundled UI (built once, on first request, see `bundle.ts`)
 *   GET  /embed-example, /embed-example.js   demo mode only: the embedding example page
 *                      (web/embed-example.*), with the chatbox and inbox of parley/client/ui
 *   POST /demo/token   `{ userId }` -> `{ token, expiresAt }`: a one-hour user token for anyone
 *                      who asks. Only in demo mode (`config.demo`, decided and loudly logged by
 *                      main.ts: on by default only while listening on loopback); otherwise 404.
 *                      Refused (403) to any request carrying `Forwarded`, `X-Forwarded-For` or
 *                      `X-Real-IP`: demo mode is for a laptop, never behind a reverse proxy.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { toUserId } from '../../shared/ids.ts'
import { ChatError } from '../../shared/errors.ts'
import type { Authenticator } from '../auth.ts'
import { buildEmbedExample, buildWebAssets, type ExampleAssets, type WebAssets } from './bundle.ts'
import { pagePolicy, styleHashSource } from './security-headers.ts'
import { decodeJwt } from 'jose'

export interface WebDeps {
  auth: Authenticator
  config: { demo: boolean, demoLoopbackOnly: boolean }
  logger: Logger
}

const isLoopbackAddress = (a: string | undefined): boolean =>
  a !== undefined && (a === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(a))

/** The Host header names this machine: localhost, 127.x.y.z or [::1], with any port. */
const isLoopbackHost = (host: string | undefined): boolean =>
  host !== undefined && /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i.test(host)

/** Headers a reverse proxy adds: a request carrying any of them gets no demo token. */
const PROXY_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'] as const

/** Lifetime of a demo token, in seconds. */
export const DEMO_TOKEN_TTL_S = 3600

export const registerWebRoutes = (http: FastifyInstance, deps: WebDeps): void => {
  let assets: Promise<WebAssets> | null = null
  const load = async (): Promise<WebAssets> => {
    assets ??= buildWebAssets().catch(e => { assets = null; throw e })
    return await assets
  }

  http.get('/', async (_req, reply) => {
    const { html, styles } = await load()
    void reply.header('cache-control', 'no-cache')
    void reply.header('content-security-policy', pagePolicy(styleHashSource(styles)))
    return await reply.type('text/html; charset=utf-8').send(html.replace('{{DEMO}}', deps.config.demo ? '1' : '0'))
  })

  http.get('/app.js', async (_req, reply) => {
    const { js } = await load()
    void reply.header('cache-control', 'no-cache')
    return await reply.type('text/javascript; charset=utf-8').send(js)
  })

  // The embedding example (docs/client.md#embedding), with the demo sign-in: demo mode only.
  let example: Promise<ExampleAssets> | null = null
  const loadExample = async (): Promise<ExampleAssets> => {
    if (!deps.config.demo) throw new ChatError('ROUTE_NOT_FOUND', 'The embedding example needs demo mode')
    example ??= buildEmbedExample().catch(e => { example = null; throw e })
    return await example
  }
  http.get('/embed-example', async (_req, reply) => {
    const { html, styles, injected } = await loadExample()
    void reply.header('cache-control', 'no-cache')
    void reply.header('content-security-policy', pagePolicy(`${styleHashSource(styles)} ${styleHashSource(injected)}`))
    return await reply.type('text/html; charset=utf-8').send(html)
  })
  http.get('/embed-example.js', async (_req, reply) => {
    const { js } = await loadExample()
    void reply.header('cache-control', 'no-cache')
    return await reply.type('text/javascript; charset=utf-8').send(js)
  })

  http.post('/demo/token', async req => {
    if (!deps.config.demo) throw new ChatError('ROUTE_NOT_FOUND', 'Demo sign-in is off on this server')
    // Demo mode is for a laptop: a request that went through a reverse proxy (which may well
    // connect from loopback naming a loopback host) gets no token, whatever the mode.
    if (PROXY_HEADERS.some(h => req.headers[h] !== undefined)) {
      throw new ChatError('FORBIDDEN', 'Demo sign-in refuses requests that came through a proxy (Forwarded, X-Forwarded-For or X-Real-IP); demo mode is for a laptop only')
    }
    if (deps.config.demoLoopbackOnly && !(isLoopbackAddress(req.socket.remoteAddress) && isLoopbackHost(req.headers.host))) {
      throw new ChatError('FORBIDDEN', 'Demo sign-in answers only local requests to a local host name (start with --demo on to allow others)')
    }
    const body: unknown = req.body
    const userId = toUserId(typeof body === 'object' && body !== null ? (body as { userId?: unknown }).userId : undefined)
    const token = await deps.auth.signUserToken(userId, DEMO_TOKEN_TTL_S)
    deps.logger.info({ user: userId }, 'demo token issued')
    // The token's own `exp` (whole seconds), so the answer and the token never disagree.
    return { token, expiresAt: (decodeJwt(token).exp ?? 0) * 1000 }
  })
}
