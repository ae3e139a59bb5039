/**
 * Everything that follows the durable event bus, wired together: the inbox index, the
 * notifier, and delivery (webhook posts and notification emails) through the durable outbox.
 * Each subscriber only records or queues; nothing here is awaited by the sync path.
 */
import type { Logger } from 'pino'
import { isPlainObject } from '../../shared/schema.ts'
import type { Settings } from '../../shared/settings.ts'
import type { EventBus, ServerEvent, StagedWrite } from '../events.ts'
import { InboxIndex } from '../inbox/inbox-index.ts'
import type { Timers } from '../presence/presence-hub.ts'
import type { RoomManager } from '../rooms/room-manager.ts'
import type { DocStore } from '../storage/port.ts'
import { isWebhookEventType, webhookDataOf, type WebhookEvent, type WebhookEventType } from '../webhooks/events.ts'
import { DEFAULT_OUTBOX_TUNING, Outbox, type OutboxTuning } from '../webhooks/outbox.ts'
import { postWebhook } from '../webhooks/post.ts'
import { composeNotificationEmail, createMailer, isEmailJob, type EmailJob, type Mailer } from './email.ts'
import { Notifier, type Notification, type PendingStore, type StoredPending } from './notifier.ts'
import { SharedNotifier } from './shared-notifier.ts'
import type { KvSection } from '../storage/port.ts'

/** Longest time a change to a pending notification batch waits before it is written. */
const PENDING_SAVE_INTERVAL_MS = 1000

/** The store section holding the webhook and email outbox. */
const OUTBOX_SECTION = 'outbox'

export interface DeliveryTuning {
  outbox: OutboxTuning
  /** Nodes sharing PostgreSQL: how often each looks for notification batches no live node fired (ms). */
  notifySweepMs?: number
}

export const DEFAULT_DELIVERY_TUNING: Readonly<DeliveryTuning> = Object.freeze({
  outbox: DEFAULT_OUTBOX_TUNING,
  notifySweepMs: 1000
})

/** What the server needs of either notifier (one node's memory, or rows shared by a cluster). */
export interface NotifierService {
  handle (e: ServerEvent): void
  readonly pendingConversations: number
  restore (): Promise<void>
  stop (): void | Promise<void>
}

/** One outbox payload. */
export type Delivery =
  | { kind: 'webhook', event: WebhookEvent }
  | { kind: 'email', email: EmailJob }

const isDelivery = (v: unknown): v is Delivery => {
  if (!isPlainObject(v)) return false
  if (v.kind === 'email') return isEmailJob(v.email)
  return v.kind === 'webhook' && isPlainObject(v.event) && typeof v.event.id === 'string' && isWebhookEventType(v.event.type)
}

export interface EventServicesDeps {
  secret: string
  smtpUrl: string | null
  tuning: DeliveryTuning
  store: DocStore
  logger: Logger
  timers: Timers
  now: () => number
  rooms: RoomManager
  settings: () => Settings
  events: EventBus
}

export interface EventServices {
  readonly inbox: InboxIndex
  readonly notifier: NotifierService
  readonly outbox: Outbox<Delivery>
  /** Starts delivering (including what a previous run left in the outbox). */
  start (): Promise<void>
  /** Stops timers and delivery after writing what is queued; pending notifications stay stored for the next start. */
  stop (): Promise<void>
}

/**
 * Pending notification batches in the store section `notify`, key `v1!p!<conv>`. A batch
 * changes with every message of a busy conversation and holds all its missed messages, so
 * saves are coalesced per conversation and written at most once per `intervalMs`, off the sync
 * path; `flushed()` writes what is waiting at once (on stop). A crash loses at most the last
 * interval's changes to pending batches, never a message.
 */
const createPendingStore = (section: KvSection, timers: Timers, intervalMs: number, onError: (err: unknown) => void): PendingStore & { flushed: () => Promise<void> } => {
  const key = (conv: string): string => `v1!p!${conv}`
  let dirty = new Map<string, StoredPending | null>()
  let timer: unknown = null
  let writing: Promise<void> = Promise.resolve()
  const write = (): Promise<void> => {
    if (timer !== null) { timers.clearTimeout(timer); timer = null }
    const batch = dirty
    dirty = new Map()
    if (batch.size === 0) return writing
    writing = writing.then(async () => {
      await section.batch([...batch].map(([conv, v]) => v === null ? { type: 'del' as const, key: key(conv) } : { type: 'put' as const, key: key(conv), value: v }))
    }).catch(onError)
    return writing
  }
  return {
    save (conv, pending) {
      dirty.set(conv, pending)
      timer ??= timers.setTimeout(() => { timer = null; void write() }, intervalMs)
    },
    async loadAll () {
      const out: Array<[string, StoredPending]> = []
      for await (const [k, v] of section.entries({ gte: 'v1!p!', lt: 'v1!p!\xff' })) {
        if (isPlainObject(v) && Array.isArray(v.recipients) && typeof v.busyAt === 'number') out.push([k.slice(5), v as unknown as StoredPending])
      }
      return out
    },
    async flushed () {
      await write()
    }
  }
}

export const createEventServices = (deps: EventServicesDeps): EventServices => {
  const { store, logger, now, settings } = deps
  const mailer: Mailer | null = deps.smtpUrl === null ? null : createMailer(deps.smtpUrl)
  const inFlight = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
  }

  const outbox = new Outbox<Delivery>({
    section: store.section(OUTBOX_SECTION),
    queue: store.outboxQueue(OUTBOX_SECTION),
    timers: deps.timers,
    now,
    tuning: deps.tuning.outbox,
    isPayload: isDelivery,
    onError: (err, what) => logger.error({ err }, what),
    async send (payload, id, signal) {
      if (payload.kind === 'email') {
        if (mailer === null) return // SMTP was turned off since: nothing to send with
        await mailer.send(payload.email, id, signal)
        return
      }
      const url = settings().webhookUrl
      if (url === null) return // webhooks were turned off since: drop
      await postWebhook(url, deps.secret, payload.event, now(), signal)
    }
  })

  const enqueueWebhook = (type: WebhookEventType, data: Record<string, unknown>): void => {
    if (settings().webhookUrl === null) return
    const id = outbox.newId()
    outbox.enqueue({ kind: 'webhook', event: { id, type, createdAt: now(), data } }, id)
  }

  /** The outbox payloads of one notification: its webhook (when webhooks are on) and its email (when SMTP is set and the recipient has an address). */
  const deliveriesOf = async (n: Notification): Promise<Array<{ id: string, payload: Delivery }>> => {
    const user = await store.getUser(n.recipientId)
    const names = new Map<string, string>()
    for (const senderId of new Set(n.messages.map(m => m.senderId))) {
      if (senderId === null) continue
      const sender = await store.getUser(senderId)
      if (sender !== undefined && sender.name !== '') names.set(senderId, sender.name)
    }
    const email = user?.email ?? []
    const out: Array<{ id: string, payload: Delivery }> = []
    if (settings().webhookUrl !== null) {
      const id = outbox.newId()
      out.push({
        id,
        payload: {
          kind: 'webhook',
          event: {
            id,
            type: 'notification.triggered',
            createdAt: now(),
            data: {
              conversationId: n.conversationId,
              subject: n.subject,
              recipient: { id: n.recipientId, name: user?.name ?? null, email },
              messages: n.messages
            }
          }
        }
      })
    }
    if (mailer !== null && email.length > 0) {
      out.push({ id: outbox.newId(), payload: { kind: 'email', email: composeNotificationEmail(n, email, names) } })
    }
    return out
  }

  const deliverNotification = async (n: Notification): Promise<void> => {
    for (const d of await deliveriesOf(n)) outbox.enqueue(d.payload, d.id)
  }

  const inbox = new InboxIndex({
    section: store.section('inbox'),
    peekDoc: conv => deps.rooms.peek(conv)?.doc,
    withDoc: async (conv, fn) => await deps.rooms.withRoom(conv, room => fn(room.doc)),
    listMemberships: async user => await store.listMemberships(user),
    conversationExists: async conv => await store.conversationExists(conv),
    now,
    onError: (err, conv) => logger.error({ err, conversation: conv }, 'inbox index update failed')
  })

  const pendingStore = createPendingStore(store.section('notify'), deps.timers, PENDING_SAVE_INTERVAL_MS, err => logger.error({ err }, 'pending notifications write failed'))
  // A store several nodes share keeps the pending batches in its rows, changed under their
  // locks, and a batch's notifications go into the outbox in the transaction that ends it.
  const rows = store.lockedSection?.('notify')
  const notifier: NotifierService = rows !== undefined
    ? new SharedNotifier({
      rows,
      timers: deps.timers,
      now,
      peek: conv => deps.rooms.peek(conv),
      delaySeconds: () => settings().notificationDelay,
      async stage (notifications) {
        const writes: StagedWrite[] = []
        for (const n of notifications) {
          for (const d of await deliveriesOf(n)) {
            const { key, value, committed } = outbox.prepare(d.payload, d.id)
            writes.push({ section: OUTBOX_SECTION, key, value, committed })
          }
        }
        return writes
      },
      onError: (err, conv) => logger.error({ err, conversation: conv }, 'pending notifications change failed'),
      unscheduled: async () => (await pendingStore.loadAll()).filter(([, p]) => typeof (p as { nextAt?: unknown }).nextAt !== 'number').map(([conv]) => conv),
      sweepMs: deps.tuning.notifySweepMs ?? 1000,
      graceMs: 2 * (deps.tuning.notifySweepMs ?? 1000)
    })
    : new Notifier({
      store: pendingStore,
      timers: deps.timers,
      now,
      peek: conv => deps.rooms.peek(conv),
      delaySeconds: () => settings().notificationDelay,
      deliver: n => {
        track(deliverNotification(n).catch(err => logger.error({ err, conversation: n.conversationId }, 'notification delivery failed')))
      }
    })

  // Webhooks of changes to a conversation's document are staged: their outbox records are
  // written in the same LevelDB batch as the change, so a crash cannot keep one without the
  // other. Events that come from elsewhere (REST on users, deletions, notifications) are queued.
  const staged = new WeakSet<ServerEvent>()
  const stageWebhooks = (events: readonly ServerEvent[]): StagedWrite[] => {
    if (settings().webhookUrl === null) return []
    const writes: StagedWrite[] = []
    for (const e of events) {
      const w = webhookDataOf(e)
      if (w === null) continue
      const id = outbox.newId()
      const { key, value, committed } = outbox.prepare({ kind: 'webhook', event: { id, type: w.type, createdAt: now(), data: w.data } }, id)
      writes.push({ section: OUTBOX_SECTION, key, value, committed })
      staged.add(e)
    }
    return writes
  }

  // Separate subscriptions, so that one failing does not starve the others.
  const unsubscribe = [
    deps.events.addStager(stageWebhooks),
    deps.events.subscribe(e => inbox.handle(e)),
    deps.events.subscribe(e => notifier.handle(e)),
    deps.events.subscribe(e => {
      if (staged.has(e)) return
      const w = webhookDataOf(e)
      if (w !== null) enqueueWebhook(w.type, w.data)
    })
  ]

  return {
    inbox,
    notifier,
    outbox,
    async start () {
      await outbox.start()
      await notifier.restore()
    },
    async stop () {
      for (const u of unsubscribe) u()
      await notifier.stop()
      await Promise.all([...inFlight, inbox.settled(), pendingStore.flushed()])
      await outbox.stop()
      mailer?.close()
    }
  }
}
