/**
 * Prometheus metrics (served at `GET /metrics`). One registry per server instance, so tests can
 * run several servers in one process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface Metrics {
  readonly registry: Registry
  readonly connections: Gauge<'role'>
  readonly loadedConversations: Gauge
  readonly updatesApplied: Counter
  readonly updatesRefused: Counter<'code'>
  readonly storageWriteSeconds: Histogram
  readonly framesSent: Counter
  /** Times storage stopped accepting writes (fail-stop), and whether it accepts them now. */
  readonly storageFailures: Counter
  readonly storageAvailable: Gauge
  /** Reads the outbox and notifier sizes at scrape time (set once the services exist). */
  readonly delivery: { outboxPending: () => number, notificationsPending: () => number }
}

export const createMetrics = (withDefaults: boolean): Metrics => {
  const registry = new Registry()
  const delivery = { outboxPending: () => 0, notificationsPending: () => 0 }
  new Gauge({ name: 'parley_outbox_pending', help: 'Webhook posts and emails waiting in the outbox (in flight included)', registers: [registry], collect () { this.set(delivery.outboxPending()) } })
  new Gauge({ name: 'parley_notifications_pending', help: 'Conversations with a notification batch waiting for quiet', registers: [registry], collect () { this.set(delivery.notificationsPending()) } })
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'parley_process_' })
  return {
    registry,
    connections: new Gauge({ name: 'parley_connections', help: 'Open sync connections by role', labelNames: ['role'], registers: [registry] }),
    loadedConversations: new Gauge({ name: 'parley_loaded_conversations', help: 'Conversations loaded in memory', registers: [registry] }),
    updatesApplied: new Counter({ name: 'parley_updates_applied_total', help: 'Peer updates applied', registers: [registry] }),
    updatesRefused: new Counter({ name: 'parley_updates_refused_total', help: 'Peer updates refused, by error code', labelNames: ['code'], registers: [registry] }),
    storageWriteSeconds: new Histogram({
      name: 'parley_storage_write_seconds',
      help: 'Latency of durable update writes',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry]
    }),
    framesSent: new Counter({ name: 'parley_frames_sent_total', help: 'Sync and awareness frames sent to peers', registers: [registry] }),
    storageFailures: new Counter({ name: 'parley_storage_failures_total', help: 'Times storage failed a write and stopped accepting writes until reopened', registers: [registry] }),
    storageAvailable: new Gauge({ name: 'parley_storage_available', help: '1 while storage accepts writes, 0 while it is failing', registers: [registry] }),
    delivery
  }
}
