/**
 * A TCP proxy on loopback that a test can stop (refusing and cutting every connection, as an
 * unreachable server does) and start again on the same port.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

export interface TcpProxy {
  readonly port: number
  /** Closes the listener and cuts every connection. */
  stop (): Promise<void>
  /** Listens again on the same port. */
  start (): Promise<void>
}

export const startTcpProxy = async (targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> => {
  const sockets = new Set<Socket>()
  let server: Server | null = null
  const track = (s: Socket): void => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
  }
  const listen = async (port: number): Promise<number> => {
    const s = createServer(client => {
      const upstream = connect(targetPort, targetHost)
      track(client)
      track(upstream)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      client.pipe(upstream)
      upstream.pipe(client)
    })
    await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(port, '127.0.0.1', resolve) })
    server = s
    return (s.address() as AddressInfo).port
  }
  const port = await listen(0)
  return {
    port,
    async stop () {
      const s = server
      server = null
      for (const sock of sockets) sock.destroy()
      if (s !== null) await new Promise<void>(resolve => s.close(() => resolve()))
    },
    async start () {
      if (server === null) await listen(port)
    }
  }
}
