/**
 * Security headers on every HTTP answer (`@fastify/helmet`): no sniffing, no framing, no
 * referrer leaks, and a Content-Security-Policy. The REST API and everything else that is not
 * the page get `default-src 'none'` (JSON loads nothing). The web UI page (`GET /`) gets
 * `pagePolicy`: its script and styles from this origin only (the inlined stylesheet by its hash),
 * its WebSocket and REST calls to this origin only.
 *
 * HSTS is left to whatever terminates TLS in front of Parley (the server itself speaks HTTP).
 */
import { createHash } from 'node:crypto'
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'

/** Registers the headers for every route (call before the routes are added). */
export const registerSecurityHeaders = async (http: FastifyInstance): Promise<void> => {
  await http.register(helmet, {
    hsts: false,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] }
    }
  })
}

/** The CSP `source` of an inline stylesheet with this text. */
export const styleHashSource = (css: string): string => `'sha256-${createHash('sha256').update(css).digest('base64')}'`

/** The page's policy, given its inline stylesheet's hash source. */
export const pagePolicy = (styleSource: string): string => [
  "default-src 'none'",
  "script-src 'self'",
  `style-src 'self' ${styleSource}`,
  // The sync endpoint and REST are this origin ('self' covers ws: and wss: of it in CSP 3).
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'"
].join('; ')
