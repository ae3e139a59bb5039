/**
 * The bus port: small messages on named channels between the nodes of a cluster (committed
 * updates, control events). Delivery is best effort (a message may be lost, e.g. while Redis
 * restarts): the bus is never the only copy of anything, every message only says where to look
 * in the store, and receivers also catch up from the store on their own (see cluster/).
 *
 * `local-bus.ts` delivers within one process (one node), `redis-bus.ts` through Redis pub/sub.
 */
export type BusHandler = (message: string) => void

export interface Bus {
  /** Sends `message` to every subscriber of `channel`, on every node (this one included). */
  publish (channel: string, message: string): void
  /** Calls `handler` for every message on `channel`; returns the unsubscribe. */
  subscribe (channel: string, handler: BusHandler): () => void
  /** Called after the bus lost messages it cannot redeliver (a reconnection): catch up from the store. */
  onGap (fn: () => void): void
  /**
   * True while this node hears the bus (its subscription is up): what it has heard then lacks
   * only what is still on the way. False while it may be losing messages (a gap follows).
   */
  hearing (): boolean
  close (): Promise<void>
}
