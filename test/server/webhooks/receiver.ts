/**
 * A real webhook receiver on loopback (port 0) for tests: records every request with its raw
 * body and headers, and answers with a status the test sets (optionally after a delay).
 */
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  headers: IncomingHttpHeaders
  raw: string
  body: { id: string, type: string, createdAt: number, data: Record<string, unknown> }
  /** The status the receiver answered. */
  status: number
  /** When the request arrived, and when it was answered (ms). */
  arrivedAt: number
  at: number
}

export interface Receiver {
  url: string
  /** Every request, in arrival order. */
  received: Received[]
  /** Status for the next requests (default 200). */
  status: number
  /** Delay before answering, in ms (default 0). */
  delayMs: number
  /** Requests answered 2xx of type `type` (all types when omitted). */
  ok (type?: string): Received[]
  close (): Promise<void>
}

export const startReceiver = async (): Promise<Receiver> => {
  const r: Receiver = {
    url: '',
    received: [],
    status: 200,
    delayMs: 0,
    ok: type => r.received.filter(x => x.status >= 200 && x.status < 300 && (type === undefined || x.body.type === type)),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
  const server = createServer((req, res) => {
    const arrivedAt = Date.now()
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
    req.on('end', () => {
      const status = r.status
      const answer = (): void => {
        r.received.push({ headers: req.headers, raw, body: JSON.parse(raw), status, arrivedAt, at: Date.now() })
        res.writeHead(status).end()
      }
      if (r.delayMs > 0) setTimeout(answer, r.delayMs)
      else answer()
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  return r
}
