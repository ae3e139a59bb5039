/**
 * The project's error body (`{"error":{"code","message"}}`, docs/errors.md) also for requests
 * that never reach a route: a URL that is not valid percent-encoding or has a path parameter over
 * the router's `maxParamLength` (fastify's `frameworkErrors`: INVALID_ID), and requests that Node's HTTP parser
 * refuses before fastify sees them: headers too large (431), a request that took too long (408),
 * anything unparsable (400) (fastify's `clientErrorHandler`, Node's `clientError`).
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ChatError } from '../shared/errors.ts'

/**
 * For fastify's `frameworkErrors` option. Both errors come from a path parameter, which is always
 * an id (contract §2): one longer than the router's limit or not valid percent-encoding is an
 * invalid id.
 */
export const frameworkError = (err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void => {
  const e = err.code === 'FST_ERR_MAX_PARAM_LENGTH' || err.code === 'FST_ERR_BAD_URL'
    ? new ChatError('INVALID_ID', err.code === 'FST_ERR_BAD_URL' ? 'The URL is not valid percent-encoding' : undefined)
    : new ChatError('INVALID_REQUEST', err.message)
  void reply.status(e.status).send({ error: e.toJSON() })
}

/** The refusal for an error of Node's HTTP parser. */
const clientRefusal = (err: NodeJS.ErrnoException): ChatError => {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new ChatError('REQUEST_TIMEOUT')
  if (err.code === 'HPE_HEADER_OVERFLOW') return new ChatError('HEADERS_TOO_LARGE')
  return new ChatError('INVALID_REQUEST', 'The HTTP request could not be parsed')
}

/** For fastify's `clientErrorHandler` option: answers on the raw socket, then closes it. */
export const clientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  if (socket.writable) {
    const e = clientRefusal(err)
    const body = JSON.stringify({ error: e.toJSON() })
    socket.write(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
