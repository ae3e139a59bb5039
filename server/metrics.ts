/**
 * Prometheus metrics (served at `GET /metrics`). One registry per server instance, so tests can
 * run several servers in one process.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface Metrics {
  readonly registry: Registry
  readonly connections: Gauge<'role'>
  readonly loadedConversations: Gauge
  readonly updatesApplied: Counter
  readonly updatesRefused: Counter<'code'>
  readonly storageWriteSeconds: Histogram
  /** Every frame written to a peer's socket: sync, awareness and auth (refusal) frames. */
  readonly framesSent: Counter
  /** Times storage stopped accepting writes (fail-stop), and whether it accepts them now. */
  readonly storageFailures: Counter
  readonly storageAvailable: Gauge
  /** Connections that came back holding changes the server lost (recovery mode). */
  readonly stalePeers: Counter
  /** Reads the outbox and notifier sizes at scrape time (set once the services exist). */
  readonly delivery: { outboxPending: () => number, notificationsPending: () => number }
  /** Stops sampling (the event-loop delay monitor); the registry still answers. */
  stop (): void
}

/** Sampling resolution of the event-loop delay, in ms. */
const EVENT_LOOP_RESOLUTION_MS = 10

/** prom-client's event-loop delay gauges, replaced by `eventLoopDelayMetrics` (same names). */
const EVENT_LOOP_STATS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const

/**
 * Event-loop delay statistics over the samples taken since the last scrape. prom-client's own
 * reset the monitor at every scrape and then report its empty state (a min of 2^63 ns, a mean
 * of NaN) to a scrape that comes within the sampling resolution of the last; these repeat the
 * last statistics instead until there are new samples.
 */
const eventLoopDelayMetrics = (registry: Registry, prefix: string): { stop: () => void } => {
  const monitor = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS })
  monitor.enable()
  const seconds: Record<typeof EVENT_LOOP_STATS[number], number> = { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 }
  const read = (): void => {
    if (monitor.count === 0) return
    Object.assign(seconds, {
      min: monitor.min, max: monitor.max, mean: monitor.mean, stddev: monitor.stddev,
      p50: monitor.percentile(50), p90: monitor.percentile(90), p99: monitor.percentile(99)
    })
    for (const stat of EVENT_LOOP_STATS) seconds[stat] /= 1e9
    monitor.reset()
  }
  for (const [i, stat] of EVENT_LOOP_STATS.entries()) {
    const name = `${prefix}nodejs_eventloop_lag_${stat}_seconds`
    registry.removeSingleMetric(name)
    new Gauge({
      name,
      help: `The ${stat} of the event loop delays sampled since the last scrape (repeated while there is no new sample)`,
      registers: [registry],
      // The registry collects in registration order: the first gauge reads the monitor for all.
      collect () {
        if (i === 0) read()
        this.set(seconds[stat])
      }
    })
  }
  return { stop: () => monitor.disable() }
}

export const createMetrics = (withDefaults: boolean): Metrics => {
  const registry = new Registry()
  const delivery = { outboxPending: () => 0, notificationsPending: () => 0 }
  new Gauge({ name: 'parley_outbox_pending', help: 'Webhook posts and emails waiting in the outbox (in flight included)', registers: [registry], collect () { this.set(delivery.outboxPending()) } })
  new Gauge({ name: 'parley_notifications_pending', help: 'Conversations with a notification batch waiting for quiet', registers: [registry], collect () { this.set(delivery.notificationsPending()) } })
  let stop = (): void => {}
  if (withDefaults) {
    // Their names already start with process_ or nodejs_: parley_process_cpu_seconds_total.
    collectDefaultMetrics({ register: registry, prefix: 'parley_', eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS })
    ;({ stop } = eventLoopDelayMetrics(registry, 'parley_'))
  }
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
    framesSent: new Counter({ name: 'parley_frames_sent_total', help: 'Frames sent to peers: sync, awareness and auth (refusal) frames', registers: [registry] }),
    storageFailures: new Counter({ name: 'parley_storage_failures_total', help: 'Times storage failed a write and stopped accepting writes until reopened', registers: [registry] }),
    storageAvailable: new Gauge({ name: 'parley_storage_available', help: '1 while storage accepts writes, 0 while it is failing', registers: [registry] }),
    stalePeers: new Counter({ name: 'parley_stale_peers_total', help: 'Connections served in recovery mode: they held changes the server no longer has', registers: [registry] }),
    delivery,
    stop
  }
}
