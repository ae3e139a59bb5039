/**
 * One loaded conversation: its Y.Doc, the connections attached to it, its presence hub and its
 * durable write path.
 *
 * Write path (peer and server writes alike): the document emits an update; the update joins the
 * room's queue; a single flush loop per room merges what is queued (group commit), appends it
 * to the store as one log entry, and only when the write resolved sends it to the peers (never
 * back to the connection it came from). So no peer ever sees a change that is not on disk.
 *
 * When storage fails (the store refuses with STORAGE_UNAVAILABLE, see write-queue.ts), the batch
 * that failed goes back to the head of the queue and the room stalls: nobody saw it, nobody was
 * told it is stored. Until `resumeWrites()` the room refuses every change (peers: close 1013, a
 * retryable code; server writes: 503), keeps its readers connected, and answers sync step 1 from
 * what the store holds. On resume the stalled batch is written (same sequence number, so a copy
 * that did reach the disk is simply overwritten) and only then forwarded. Any other failure
 * (a consistency error) closes the room with 1011; the store is the truth and a join reloads it.
 */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import type { Logger } from 'pino'
import { ChatError, isChatError } from '../../shared/errors.ts'
import { encodeSyncUpdate } from '../../shared/protocol.ts'
import { ensureRoots, getGuestAccess, getParticipant, messagesOf, metaOf, participantsOf, readsOf } from '../../shared/doc.ts'
import { isMessage, type Message, type Participant, type Role } from '../../shared/schema.ts'
import type { Settings } from '../../shared/settings.ts'
import { UpdateJudge } from '../../shared/update-judge.ts'
import { moveEarlyMessages } from '../../shared/order.ts'
import { PresenceHub, type Timers } from '../presence/presence-hub.ts'
import type { ArchivedMessage, DocStore, StoredDoc } from '../storage/port.ts'
import type { Metrics } from '../metrics.ts'
import type { EventSink, ServerEvent } from '../events.ts'

/** The owner recorded for the server's own Yjs client ids; never a valid user id. */
export const SERVER_OWNER = '#server'

/** Origin of the transactions that move old messages out of the live document. */
export const ARCHIVE_ORIGIN = '#archive'

/** `meta.archived`: how much of the history lives in the archive (written by the server only). */
export interface ArchiveMarker {
  /** Messages moved to the archive so far; archived positions are 0 .. count-1. */
  count: number
  /** The newest archived message when the marker was written. */
  lastId: string
  lastCreatedAt: number
}

/** What a room needs from a live connection. */
export interface RoomConnection {
  readonly connId: number
  readonly userId: string
  readonly role: Role
  canWrite: boolean
  /** Sends a frame; a no-op once the connection is closing. */
  send (frame: Uint8Array): void
  /** Ends the connection with the error's close code after an auth message naming it. */
  close (error: ChatError): void
}

export interface RoomDeps {
  store: DocStore
  logger: Logger
  metrics: Metrics
  timers: Timers
  now: () => number
  settings: () => Settings
  /** Compact the log into a snapshot once it holds this many entries... */
  compactAfterUpdates: number
  /** ...or this many bytes. */
  compactAfterBytes: number
  /** Messages kept in the live document. */
  historyWindow: number
  /** Extra messages allowed past the window before the oldest move to the archive. */
  archiveChunk: number
  /** Presence keepalive period (see PresenceHub). */
  keepaliveMs: number
  /** Called once when the room can no longer be used (write failure, deletion). */
  onClosed: (room: Room) => void
  /** Receives message and participant events once they are durable. */
  events: EventSink
}

/**
 * One emitted update. `byServer`: the server wrote in it too (a peer's transaction in which it
 * moved messages, see `order.ts`), so it goes to its origin connection as well, and the
 * server's client id gets bound.
 */
interface Queued { update: Uint8Array, origin: unknown, events: ServerEvent[], byServer: boolean }

/** True when a V1 update carries at least one struct (its first number counts client groups). */
const hasStructs = (update: Uint8Array): boolean => {
  try {
    return decoding.readVarUint(decoding.createDecoder(update)) > 0
  } catch {
    return true
  }
}

/** Applies a stored document (snapshot, then the log in order) to `doc` in one transaction. */
const applyStored = (doc: Y.Doc, stored: StoredDoc): void => {
  Y.transact(doc, () => {
    if (stored.snapshot !== null) Y.applyUpdate(doc, stored.snapshot)
    for (const u of stored.updates) Y.applyUpdate(doc, u)
  })
}

const isArchiveMarker = (v: unknown): v is ArchiveMarker =>
  typeof v === 'object' && v !== null && typeof (v as ArchiveMarker).count === 'number'

export class Room {
  readonly id: string
  readonly doc: Y.Doc
  readonly presence: PresenceHub
  private readonly deps: RoomDeps
  private readonly judge: UpdateJudge
  private readonly clientOwners: Map<number, string>
  private readonly conns = new Set<RoomConnection>()
  private queue: Queued[] = []
  private pendingBindings: Array<{ userId: string, clientIds: number[] }> = []
  private pendingArchive: ArchivedMessage[] = []
  private flushing: Promise<void> | null = null
  /** True while a batch that storage refused waits at the head of the queue. */
  private stalled = false
  private lastSeq: number
  private logCount: number
  private logBytes = 0
  private serverIdBound: boolean
  private closedWith: ChatError | null = null
  /** Events of the transaction being committed; attached to its update when it is emitted. */
  private txEvents: ServerEvent[] = []
  /** Whether the server wrote in the peer transaction being committed (see `Queued.byServer`). */
  private txByServer = false
  /** The whole durable document as one update, shared by every step 1 with an empty state vector until the next change. */
  private fullAnswer: Uint8Array | null = null

  private constructor (id: string, doc: Y.Doc, owners: Map<number, string>, lastSeq: number, logCount: number, deps: RoomDeps) {
    this.id = id
    this.doc = doc
    this.deps = deps
    this.clientOwners = owners
    this.lastSeq = lastSeq
    this.logCount = logCount
    this.serverIdBound = owners.get(doc.clientID) === SERVER_OWNER
    this.judge = new UpdateJudge(doc, {
      // Read at every judgment, so a settings change applies to loaded rooms at once.
      get maxTextLength () { return deps.settings().maxTextLength },
      clientOwner: clientId => this.clientOwners.get(clientId),
      reservedClientIds: new Set([doc.clientID])
    })
    this.presence = new PresenceHub({ serverClientId: doc.clientID, timers: deps.timers, now: deps.now, keepaliveMs: deps.keepaliveMs })
    messagesOf(doc).observe(event => { this.collectMessageEvents(event) })
    participantsOf(doc).observe(event => {
      this.collectParticipantEvents(event)
      this.reevaluate()
    })
    readsOf(doc).observe(event => {
      for (const userId of event.keysChanged) {
        const readUpTo = readsOf(doc).get(userId)
        if (typeof readUpTo === 'number') this.txEvents.push({ type: 'reads.updated', conversationId: this.id, userId, readUpTo })
      }
    })
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      this.fullAnswer = null
      this.queue.push({ update, origin, events: this.txEvents, byServer: this.txByServer })
      this.txEvents = []
      this.txByServer = false
      this.scheduleFlush()
    })
    metaOf(doc).observe(event => {
      if (event.transaction.origin !== ARCHIVE_ORIGIN && event.keysChanged.has('subject')) {
        const subject = metaOf(doc).get('subject')
        this.txEvents.push({ type: 'conversation.updated', conversationId: this.id, subject: typeof subject === 'string' ? subject : null })
      }
      this.reevaluate()
    })
    this.maybeArchive()
  }

  /** Messages moved to the archive so far. */
  get archivedCount (): number {
    const marker = metaOf(this.doc).get('archived')
    return isArchiveMarker(marker) ? marker.count : 0
  }

  /** Loads a conversation from the store: snapshot, then the log. */
  static async load (id: string, deps: RoomDeps): Promise<Room> {
    const [stored, owners] = await Promise.all([deps.store.loadDoc(id), deps.store.loadClientOwners(id)])
    const doc = new Y.Doc({ gc: true })
    while (owners.has(doc.clientID)) doc.clientID = Math.floor(Math.random() * 0xffffffff) >>> 0
    applyStored(doc, stored)
    ensureRoots(doc)
    return new Room(id, doc, owners, stored.lastSeq, stored.updates.length, deps)
  }

  /** The sequence number of the last log entry this room wrote (what its peers may have seen). */
  get durableSeq (): number { return this.lastSeq }

  get closed (): boolean { return this.closedWith !== null }
  get connectionCount (): number { return this.conns.size }
  connections (): IterableIterator<RoomConnection> { return this.conns.values() }

  attach (conn: RoomConnection): void {
    if (this.closedWith !== null) throw this.closedWith
    this.conns.add(conn)
  }

  detach (conn: RoomConnection): void {
    if (this.conns.delete(conn)) this.presence.leave(conn)
  }

  /**
   * Judges a peer's update and applies it when allowed. Throws the refusal; the caller closes
   * the connection. Nothing of a refused update is applied, stored or forwarded. `admit` sees
   * how many message objects an allowed change writes, before it is applied, and may refuse it
   * by throwing (rate limits).
   */
  receiveUpdate (conn: RoomConnection, update: Uint8Array, admit?: (messages: number) => void): void {
    if (this.closedWith !== null) throw this.closedWith
    // While storage fails, peers were told the stored state vector: any struct they send is
    // something the store lacks. Refusing it (retryably) keeps every later answer to their sync
    // step 1 probes honest: it acknowledges only what is stored.
    if (this.stalled && hasStructs(update)) throw this.storageRefusal()
    const verdict = this.judge.judge(update, { userId: conn.userId, role: conn.role, canWrite: conn.canWrite })
    if (!verdict.ok) {
      this.deps.metrics.updatesRefused.inc({ code: verdict.error.code })
      throw verdict.error
    }
    if (!verdict.changes) return
    this.assertWritable()
    admit?.(verdict.messages)
    if (verdict.newClientIds.length > 0) {
      for (const id of verdict.newClientIds) this.clientOwners.set(id, conn.userId)
      this.pendingBindings.push({ userId: conn.userId, clientIds: verdict.newClientIds })
    }
    try {
      // One transaction: the peer's update, then the move of any message it put in front of the
      // history (contract §4.1), so the change is stored, forwarded and reported as one.
      Y.transact(this.doc, tr => {
        Y.applyUpdate(this.doc, update, conn)
        const moved = moveEarlyMessages(this.doc, tr, { clients: verdict.writtenClientIds, wasLive: id => this.judge.isLive(id) })
        if (moved.length > 0) {
          this.txByServer = true
          this.deps.logger.debug({ conversation: this.id, user: conn.userId, moved }, 'moved messages written before sync to the end')
        }
      }, conn)
    } catch (e) {
      this.fail(e, 'applying a judged update threw')
      throw new ChatError('MALFORMED_MESSAGE')
    }
    if (this.doc.store.pendingStructs !== null || this.doc.store.pendingDs !== null) {
      this.fail(new Error('pending structs after apply'), 'a judged update left structs pending')
      throw new ChatError('MISSING_DEPENDENCIES')
    }
    this.deps.metrics.updatesApplied.inc()
  }

  /** Runs a server-side change (REST, participants, meta) and resolves once it is durable. */
  async transact (fn: (doc: Y.Doc) => void): Promise<void> {
    if (this.closedWith !== null) throw this.closedWith
    this.assertWritable()
    Y.transact(this.doc, () => fn(this.doc), SERVER_OWNER)
    await this.whenDurable()
  }

  /** Resolves once everything the document has emitted so far is on disk. */
  async whenDurable (): Promise<void> {
    while (this.flushing !== null) await this.flushing
    if (this.closedWith !== null) throw this.closedWith
    if (this.stalled) throw this.storageRefusal()
  }

  /**
   * The answer to a peer's sync step 1: what it lacks of the durable document. Waits until
   * nothing unwritten is in the document; while storage is failing, answers from the store.
   */
  async syncStep2For (stateVector: Uint8Array): Promise<Uint8Array> {
    for (;;) {
      if (this.stalled) return await this.encodeStored(stateVector)
      // Another connection's update may be applied between the wait and this continuation.
      await this.whenDurable().catch(e => { if (!this.stalled) throw e })
      if (this.hasUnflushed || this.stalled) continue
      // Joiners (and peers that re-ask) mostly send an empty state vector: encode that once.
      if (stateVector.byteLength === 1 && stateVector[0] === 0) return (this.fullAnswer ??= Y.encodeStateAsUpdate(this.doc))
      return Y.encodeStateAsUpdate(this.doc, stateVector)
    }
  }

  /** Storage works again (reopened and checked): writes the stalled batch, accepts changes. */
  resumeWrites (): void {
    if (!this.stalled) return
    this.stalled = false
    if (this.queue.length > 0) this.scheduleFlush()
  }

  /** True while storage refuses this room's writes. */
  get isStalled (): boolean { return this.stalled }

  /** The state vector of the stored document (what peers are told the server has while stalled). */
  async storedStateVector (): Promise<Uint8Array> {
    return await this.withStored(doc => Y.encodeStateVector(doc))
  }

  private assertWritable (): void {
    if (this.stalled || this.deps.store.writeFailure !== null) throw this.storageRefusal()
  }

  private storageRefusal (): ChatError {
    const reason = this.deps.store.writeFailure?.reason
    return new ChatError('STORAGE_UNAVAILABLE', `Storage is failing${reason === undefined ? '' : ` (${reason})`}; nothing can be written now, retry later`)
  }

  private async encodeStored (stateVector: Uint8Array): Promise<Uint8Array> {
    return await this.withStored(doc => Y.encodeStateAsUpdate(doc, stateVector))
  }

  private async withStored<T> (fn: (doc: Y.Doc) => T): Promise<T> {
    let stored: StoredDoc
    try {
      stored = await this.deps.store.loadDoc(this.id)
    } catch {
      throw this.storageRefusal() // the store is closed while it is being reopened
    }
    const scratch = new Y.Doc({ gc: true })
    try {
      applyStored(scratch, stored)
      return fn(scratch)
    } finally {
      scratch.destroy()
    }
  }

  /** Resolves once no write is in flight, whether or not the room was closed meanwhile. */
  async settled (): Promise<void> {
    while (this.flushing !== null) await this.flushing.catch(() => {})
  }

  /** True while something the document emitted is not yet on disk. */
  get hasUnflushed (): boolean {
    return this.flushing !== null || this.queue.length > 0
  }

  /**
   * Applies the current participants, meta and settings to the live connections: closes those
   * that lost their right to be here and updates the write right of the others.
   */
  reevaluate (): void {
    const settings = this.deps.settings()
    const guestAccess = getGuestAccess(this.doc)
    for (const conn of [...this.conns]) {
      if (conn.role === 'participant') {
        const p = getParticipant(this.doc, conn.userId)
        if (p === undefined) conn.close(new ChatError('PARTICIPANT_REMOVED'))
        else if (p.access === 'None') conn.close(new ChatError('ACCESS_NONE'))
        else conn.canWrite = p.access === 'ReadWrite'
      } else if (!settings.browserSync || guestAccess === 'none') {
        conn.close(new ChatError('GUEST_ACCESS_OFF'))
      } else {
        conn.canWrite = guestAccess === 'write'
      }
    }
  }

  /** Closes every connection with `error` and makes the room unusable. Idempotent. */
  close (error: ChatError): void {
    if (this.closedWith !== null) return
    this.closedWith = error
    for (const conn of [...this.conns]) conn.close(error)
    this.conns.clear()
    this.presence.destroy()
    this.judge.destroy()
    this.deps.onClosed(this)
  }

  /**
   * Flushes, compacts what the log holds, and frees the document. For unloading and shutdown.
   * Needs no free space when storage is failing: what storage refused was never acknowledged
   * nor forwarded, so it is dropped, and the compaction (an optimisation) is skipped.
   */
  async unload (): Promise<void> {
    await this.whenDurable().catch(() => {})
    if (this.stalled) {
      this.deps.logger.warn({ conversation: this.id, updates: this.queue.length }, 'unloading with changes storage refused; they were never acknowledged')
    } else if (this.closedWith === null && this.logCount > 0 && this.deps.store.writeFailure === null) {
      await this.compact().catch(err => this.deps.logger.warn({ err, conversation: this.id }, 'compaction skipped'))
    }
    this.close(new ChatError('SHUTTING_DOWN'))
    this.doc.destroy()
  }

  private scheduleFlush (): void {
    if (this.flushing !== null || this.stalled) return
    this.flushing = this.flushLoop()
      .catch(e => this.fail(e, 'storage write failed'))
      .finally(() => { this.flushing = null })
  }

  private async flushLoop (): Promise<void> {
    await Promise.resolve() // let the current transaction and its siblings queue up
    while (this.queue.length > 0 && this.closedWith === null) {
      const batch = this.queue
      this.queue = []
      if (!this.serverIdBound && batch.some(q => q.byServer || q.origin === SERVER_OWNER || q.origin === ARCHIVE_ORIGIN)) {
        this.serverIdBound = true
        this.clientOwners.set(this.doc.clientID, SERVER_OWNER)
        this.pendingBindings.push({ userId: SERVER_OWNER, clientIds: [this.doc.clientID] })
      }
      const bindings = this.pendingBindings
      this.pendingBindings = []
      const archive = this.pendingArchive
      this.pendingArchive = []
      const merged = batch.length === 1 ? batch[0].update : Y.mergeUpdates(batch.map(q => q.update))
      const seq = this.lastSeq + 1
      const endTimer = this.deps.metrics.storageWriteSeconds.startTimer()
      const events = batch.flatMap(q => q.events)
      const staged = this.deps.events.stage(events)
      try {
        await this.deps.store.appendUpdates(this.id, seq, [merged], { archive, bindings, sections: staged })
      } catch (e) {
        if (!isChatError(e) || e.code !== 'STORAGE_UNAVAILABLE') throw e
        // Nothing of it was forwarded or acknowledged: keep it, in order, for when storage is back.
        this.queue = [...batch, ...this.queue]
        this.pendingBindings = [...bindings, ...this.pendingBindings]
        this.pendingArchive = [...archive, ...this.pendingArchive]
        this.stalled = true
        const refusal = this.storageRefusal()
        for (const q of batch) if (this.conns.has(q.origin as RoomConnection)) (q.origin as RoomConnection).close(refusal)
        return
      }
      endTimer()
      this.lastSeq = seq
      this.logCount++
      this.logBytes += merged.byteLength
      this.broadcast(batch, merged)
      for (const w of staged) w.committed()
      for (const e of events) this.deps.events.emit(e)
      if (this.queue.length === 0) this.maybeArchive()
      if (this.queue.length === 0 && this.closedWith === null &&
        (this.logCount >= this.deps.compactAfterUpdates || this.logBytes >= this.deps.compactAfterBytes)) {
        // An optimisation: when storage refuses it, the log simply stays as it is.
        await this.compact().catch(err => {
          if (!isChatError(err) || err.code !== 'STORAGE_UNAVAILABLE') throw err
        })
      }
    }
  }

  /**
   * Sends a durable batch to every peer, without echoing a peer's own updates back to it (but
   * an update the server wrote in too goes to its origin as well: it must see the move).
   */
  private broadcast (batch: Queued[], merged: Uint8Array): void {
    if (this.conns.size === 0) return
    const all = encodeSyncUpdate(merged)
    const origins = new Set(batch.filter(q => !q.byServer).map(q => q.origin))
    for (const conn of this.conns) {
      if (!origins.has(conn)) {
        conn.send(all)
        continue
      }
      const others = batch.filter(q => q.origin !== conn || q.byServer)
      if (others.length > 0) conn.send(encodeSyncUpdate(Y.mergeUpdates(others.map(q => q.update))))
    }
  }

  /**
   * Keeps the live document to a window of recent messages, so a join costs the window, not the
   * whole history, and an append costs the same at any history length. When the live array is
   * over `historyWindow + archiveChunk`, the oldest move out in one server transaction that also
   * advances `meta.archived`; the flush writes them to the archive in the same LevelDB batch as
   * that transaction's update, so a message is always in the log or in the archive, never lost.
   */
  private maybeArchive (): void {
    const arr = messagesOf(this.doc)
    if (this.closedWith !== null || this.stalled || this.deps.store.writeFailure !== null) return
    if (arr.length <= this.deps.historyWindow + this.deps.archiveChunk) return
    const k = arr.length - this.deps.historyWindow
    const base = this.archivedCount
    const moved = arr.slice(0, k)
    const last = moved[moved.length - 1]
    this.pendingArchive.push(...moved.map((message, i) => ({ pos: base + i, message })))
    Y.transact(this.doc, () => {
      arr.delete(0, k)
      metaOf(this.doc).set('archived', { count: base + k, lastId: last.id, lastCreatedAt: last.createdAt } satisfies ArchiveMarker)
    }, ARCHIVE_ORIGIN)
  }

  /** Turns one transaction's changes to `messages` into message events (edits pair by id). */
  private collectMessageEvents (event: Y.YArrayEvent<Message>): void {
    if (event.transaction.origin === ARCHIVE_ORIGIN) return
    const removed = new Map<string, Message>()
    for (const item of event.changes.deleted) {
      for (const m of item.content.getContent()) if (isMessage(m, Number.MAX_SAFE_INTEGER)) removed.set(m.id, m)
    }
    const conversationId = this.id
    for (const item of event.changes.added) {
      if (item.deleted) continue
      for (const m of item.content.getContent()) {
        if (!isMessage(m, Number.MAX_SAFE_INTEGER)) continue
        const previous = removed.get(m.id)
        if (previous !== undefined) {
          removed.delete(m.id)
          this.txEvents.push({ type: 'message.updated', conversationId, message: m, previous })
        } else {
          this.txEvents.push({ type: 'message.sent', conversationId, message: m })
        }
      }
    }
    for (const m of removed.values()) this.txEvents.push({ type: 'message.deleted', conversationId, message: m })
  }

  private collectParticipantEvents (event: Y.YMapEvent<Participant>): void {
    for (const [userId, change] of event.changes.keys) {
      if (change.action === 'add') {
        const participant = getParticipant(this.doc, userId)
        if (participant !== undefined) this.txEvents.push({ type: 'participant.added', conversationId: this.id, userId, participant })
      } else if (change.action === 'update') {
        const participant = getParticipant(this.doc, userId)
        if (participant !== undefined) this.txEvents.push({ type: 'participant.updated', conversationId: this.id, userId, participant })
      } else if (change.action === 'delete') {
        this.txEvents.push({ type: 'participant.removed', conversationId: this.id, userId })
      }
    }
  }

  private async compact (): Promise<void> {
    const seq = this.lastSeq
    const snapshot = Y.encodeStateAsUpdate(this.doc)
    await this.deps.store.compact(this.id, seq, snapshot)
    if (this.lastSeq === seq) {
      this.logCount = 0
      this.logBytes = 0
    }
  }

  private fail (e: unknown, what: string): void {
    this.deps.logger.error({ err: e, conversation: this.id }, `room closed: ${what}`)
    this.close(new ChatError('INTERNAL', 'The conversation hit a storage or consistency error; reconnect'))
  }
}
