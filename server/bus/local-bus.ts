/** The bus within one process: every subscriber of a channel gets each message, asynchronously. */
import type { Bus, BusHandler } from './port.ts'

export class LocalBus implements Bus {
  private readonly channels = new Map<string, Set<BusHandler>>()

  publish (channel: string, message: string): void {
    const handlers = this.channels.get(channel)
    if (handlers === undefined) return
    for (const h of [...handlers]) queueMicrotask(() => h(message))
  }

  subscribe (channel: string, handler: BusHandler): () => void {
    let handlers = this.channels.get(channel)
    if (handlers === undefined) this.channels.set(channel, handlers = new Set())
    handlers.add(handler)
    return () => { handlers.delete(handler) }
  }

  onGap (): void {} // nothing is ever lost in-process
  hearing (): boolean { return true }

  async close (): Promise<void> { this.channels.clear() }
}
