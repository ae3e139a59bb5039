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
 * what the store holds. On resume the stalled batch is written (same sequence number; a copy
 * that did reach the store byte for byte counts as written, see `DocStore.appendUpdates`) and
 * only then forwarded. Any other failure (a consistency error, or a seq conflict: the store
 * holds a different entry at that number) closes the room with 1011; the store is the truth and
 * a join reloads it.
 */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import type { Logger } from 'pino'
import { ChatError, isChatError } from '../../shared/errors.ts'
import { encodeSyncUpdate } from '../../shared/protocol.ts'
import { ensureRoots, findMessageIndex, getGuestAccess, getParticipant, isModerator, messagesOf, metaOf, participantsOf, reactionsOf, readsOf } from '../../shared/doc.ts'
import { messagesRemovedIn, parseReactionKey, ReactionIndex, removeReactionsTo } from '../../shared/reactions.ts'
import { isMessage, type Message, type Participant, type Role } from '../../shared/schema.ts'
import type { Settings } from '../../shared/settings.ts'
import { UpdateJudge, type Verdict } from '../../shared/update-judge.ts'
import { moveEarlyMessages } from '../../shared/order.ts'
import { StalePeer, type RecoveredIntents } from './stale-peer.ts'
import type { ServerClientIds } from './server-client-ids.ts'
import { PresenceHub, type Timers } from '../presence/presence-hub.ts'
import type { AppendWith, ArchivedMessage, DocStore, StoredDoc } from '../storage/port.ts'
import type { Metrics } from '../metrics.ts'
import type { EventSink, ServerEvent } from '../events.ts'
import { claimOf, type AttachmentClaim } from '../../shared/update-judge/attachments.ts'

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
  /** Makes and recognises the server's own Yjs client ids. */
  serverClientIds: ServerClientIds
  /** Checks attachments against the conversation's uploads (and claims them); throws INVALID_ATTACHMENT. */
  checkAttachments: (conv: string, claims: readonly AttachmentClaim[]) => Promise<void>
}

/** How a peer's update came (`catchUp`: its sync step 2), and a check of the messages it writes (rate limits). */
export interface AcceptOptions {
  catchUp?: boolean
  /** Sees how many message objects an allowed change writes, before it is applied; throws to refuse it. */
  admit?: (messages: number) => void
}

/**
 * One emitted update. `byServer`: the server wrote in it too (a peer's transaction in which it
 * moved messages, see `order.ts`), so it goes to its origin connection as well, and the
 * server's client id gets bound.
 */
export interface Queued { update: Uint8Array, origin: unknown, events: ServerEvent[], byServer: boolean }

/** What one flush writes: the queued updates merged into one log entry, and what travels with it. */
export interface Batch {
  queued: Queued[]
  bindings: Array<{ userId: string, clientIds: number[] }>
  archive: ArchivedMessage[]
  records: TransactRecords[]
  merged: Uint8Array | null
  events: ServerEvent[]
  staged: ReturnType<EventSink['stage']>
  with_: AppendWith
  /** The entry it was stored as, once stored (null: it had no update). */
  seq: number | null
}

/**
 * Refusals a peer's catch-up gets when it holds history the server lost (a system message or
 * another user's message the server no longer has, structs depending on them).
 */
const RECOVERABLE: ReadonlySet<string> = new Set(['WRITE_FORBIDDEN', 'MISSING_DEPENDENCIES', 'CLIENT_ID_TAKEN', 'SENDER_MISMATCH', 'READ_ONLY', 'DUPLICATE_MESSAGE_ID', 'REACTION_TARGET_NOT_FOUND'])

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

/**
 * Store records a server change writes in the same LevelDB batch as its update (`transact`),
 * and events of changes outside the document (an archived message deleted) emitted with it.
 */
export type TransactRecords = Pick<AppendWith, 'conversation' | 'members' | 'archiveDeletes'> & { events?: ServerEvent[] }

/**
 * A server change (`Room.transact`). It reads what it changes from `doc` (not from a copy read
 * before): in a cluster it runs later, inside the conversation's lock, on the caught-up document,
 * and refuses (throws, before changing anything) what no longer holds there.
 */
export type ServerChange = (doc: Y.Doc, tr: Y.Transaction) => TransactRecords | undefined | void

/** The records of several transactions as one batch's: the last conversation record, every other change in order. */
const mergeRecords = (records: readonly TransactRecords[]): Omit<TransactRecords, 'events'> => {
  let conversation: TransactRecords['conversation']
  for (const r of records) conversation = r.conversation ?? conversation
  return { conversation, members: records.flatMap(r => r.members ?? []), archiveDeletes: records.flatMap(r => r.archiveDeletes ?? []) }
}

const isArchiveMarker = (v: unknown): v is ArchiveMarker =>
  typeof v === 'object' && v !== null && typeof (v as ArchiveMarker).count === 'number'

export class Room {
  readonly id: string
  readonly doc: Y.Doc
  readonly presence: PresenceHub
  protected readonly deps: RoomDeps
  private readonly judge: UpdateJudge
  /** Who reacted to which message (live or archived: the reactions root is not windowed). */
  readonly reactions: ReactionIndex
  protected readonly clientOwners: Map<number, string>
  protected readonly conns = new Set<RoomConnection>()
  protected queue: Queued[] = []
  protected pendingBindings: Array<{ userId: string, clientIds: number[] }> = []
  protected pendingArchive: ArchivedMessage[] = []
  protected pendingRecords: TransactRecords[] = []
  protected flushing: Promise<void> | null = null
  /** True while a batch that storage refused waits at the head of the queue. */
  protected stalled = false
  protected lastSeq: number
  protected logCount: number
  private logBytes = 0
  private serverIdBound: boolean
  protected closedWith: ChatError | null = null
  /** Events of the transaction being committed; attached to its update when it is emitted. */
  protected txEvents: ServerEvent[] = []
  /** Connections in recovery mode: they hold history the server lost (see stale-peer.ts). */
  protected readonly stalePeers = new Map<RoomConnection, StalePeer>()
  /** Whether the server wrote in the peer transaction being committed (see `Queued.byServer`). */
  protected txByServer = false
  /** Ids this room moved to the archive since it loaded (the store may not hold them yet). */
  private readonly archivedHere = new Set<string>()
  /** Archived messages deleted since the room loaded: reactions and replies to them are refused. */
  private readonly archiveDeletedHere = new Set<string>()
  /** Messages whose reactions the transaction being committed removes with them (no `message.reacted`). */
  private readonly txCascade = new Set<string>()
  /** Counts the updates the document emitted, so a judgment knows whether it went stale. */
  private docVersion = 0
  /** Who a server transaction acts for (a REST caller's user id; null: admin or the server). */
  private txActor: string | null = null
  /** The whole durable document as one update, shared by every step 1 with an empty state vector until the next change. */
  private fullAnswer: Uint8Array | null = null

  protected constructor (id: string, doc: Y.Doc, owners: Map<number, string>, lastSeq: number, logCount: number, deps: RoomDeps) {
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
    this.reactions = new ReactionIndex(doc)
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
    reactionsOf(doc).observe(event => {
      for (const key of event.keysChanged) {
        const target = parseReactionKey(key)
        if (target === null || this.txCascade.has(target.messageId)) continue
        const value: unknown = reactionsOf(doc).get(key)
        this.txEvents.push({ type: 'message.reacted', conversationId: this.id, ...target, reactions: Array.isArray(value) ? value.filter(r => typeof r === 'string') : [] })
      }
    })
    doc.on('afterTransaction', () => { this.txCascade.clear() })
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      this.docVersion++
      for (const peer of this.stalePeers.values()) peer.follow(update)
      this.fullAnswer = null
      this.onDocUpdate(update, origin)
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

  /** What the document emitted: queued for the flush (a cluster room also sees updates it did not make). */
  protected onDocUpdate (update: Uint8Array, origin: unknown): void {
    this.queue.push({ update, origin, events: this.txEvents, byServer: this.txByServer })
    this.txEvents = []
    this.txByServer = false
    this.scheduleFlush()
  }

  /** Messages moved to the archive so far. */
  get archivedCount (): number {
    const marker = metaOf(this.doc).get('archived')
    return isArchiveMarker(marker) ? marker.count : 0
  }

  /** Loads a conversation from the store: snapshot, then the log. */
  static async load (id: string, deps: RoomDeps): Promise<Room> {
    const { doc, owners, stored } = await Room.read(id, deps)
    return new Room(id, doc, owners, stored.lastSeq, stored.updates.length, deps)
  }

  /** What a room is made of, read from the store. */
  protected static async read (id: string, deps: RoomDeps): Promise<{ doc: Y.Doc, owners: Map<number, string>, stored: StoredDoc }> {
    const [stored, owners] = await Promise.all([deps.store.loadDoc(id), deps.store.loadClientOwners(id)])
    const doc = new Y.Doc({ gc: true })
    doc.clientID = deps.serverClientIds.next(id => owners.has(id))
    applyStored(doc, stored)
    ensureRoots(doc)
    return { doc, owners, stored }
  }

  /**
   * Resolves once the room holds everything committed before the call (a REST request starts
   * from there). Not `strict` (a sync connection): what the node has heard of may do. A room
   * alone on its store always holds everything.
   */
  caughtUp (_strict = true): Promise<void> | undefined { return undefined }

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
    this.stalePeers.get(conn)?.destroy()
    this.stalePeers.delete(conn)
  }

  /** Closes every connection of `userId` (only those of `role`, when given) with `error`; returns how many. */
  closeUser (userId: string, error: ChatError, role?: Role): number {
    let n = 0
    for (const conn of [...this.conns]) {
      if (conn.userId !== userId || (role !== undefined && conn.role !== role)) continue
      conn.close(error)
      n++
    }
    return n
  }

  /**
   * Judges a peer's update and applies it when allowed. Throws the refusal; the caller closes
   * the connection. Nothing of a refused update is applied, stored or forwarded. `admit` sees
   * how many message objects an allowed change writes, before it is applied, and may refuse it
   * by throwing (rate limits).
   */
  async receiveUpdate (conn: RoomConnection, update: Uint8Array, opts: AcceptOptions = {}): Promise<void> {
    if (this.closedWith !== null) throw this.closedWith
    // While storage fails, peers were told the stored state vector: any struct they send is
    // something the store lacks. Refusing it (retryably) keeps every later answer to their sync
    // step 1 probes honest: it acknowledges only what is stored.
    if (this.stalled && hasStructs(update)) throw this.storageRefusal()
    const stale = this.stalePeers.get(conn)
    if (stale !== undefined) {
      stale.absorb(update)
      await this.recover(conn, stale)
      return
    }
    await this.acceptUpdate(conn, update, opts)
  }

  /** After the checks of `receiveUpdate`: judges and applies it now (a room alone on its store). */
  protected async acceptUpdate (conn: RoomConnection, update: Uint8Array, opts: AcceptOptions): Promise<void> {
    await this.judgeAndApply(conn, update, opts, async id => await this.deps.store.archivePosOf(this.id, id), async peer => await this.recover(conn, peer))
  }

  /**
   * Judges a peer's update against the document as it is and applies it when allowed; throws
   * the refusal. `archivePosOf` answers whether an id is archived; `onStale` takes a peer that
   * turned out to hold history the server lost (recovery mode).
   */
  protected async judgeAndApply (conn: RoomConnection, update: Uint8Array, opts: AcceptOptions, archivePosOf: (id: string) => Promise<number | undefined>, onStale: (peer: StalePeer) => Promise<void>): Promise<void> {
    let verdict: Extract<Verdict, { ok: true }>
    try {
      verdict = await this.checkArchive(conn, update, this.judgeUpdate(conn, update), archivePosOf)
    } catch (e) {
      // A catch-up that carries history the server lost (or reacts to a message deleted while
      // the peer was away): recovery mode instead of a final 4403.
      const peer = opts.catchUp === true && isChatError(e) && RECOVERABLE.has(e.code)
        ? StalePeer.detect(this.doc, update, client => this.clientOwners.has(client) || this.deps.serverClientIds.isServers(client))
        : null
      if (peer === null) throw e
      this.stalePeers.set(conn, peer)
      this.deps.metrics.stalePeers.inc()
      this.deps.logger.warn({ conversation: this.id, user: conn.userId, refusal: e instanceof ChatError ? e.code : undefined }, 'a peer holds changes the server does not have: recovery mode (its own changes are taken again, the rest dropped at the peer)')
      await onStale(peer)
      return
    }
    if (verdict.attachments.length > 0) {
      // The judge knows the document only: each attachment must match its upload (contract §4.2).
      const version = this.docVersion
      await this.deps.checkAttachments(this.id, verdict.attachments).catch((e: unknown) => this.refuseUpdate(isChatError(e) ? e : new ChatError('INTERNAL')))
      if (this.closedWith !== null) throw this.closedWith
      if (this.docVersion !== version) verdict = await this.checkArchive(conn, update, this.judgeUpdate(conn, update), archivePosOf)
    }
    if (!verdict.changes) return
    this.assertWritable()
    opts.admit?.(verdict.messages)
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
        if (this.removeReactionsOfRemoved(tr)) this.txByServer = true
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

  /**
   * Re-issues, as the server, what a peer in recovery mode may do (see stale-peer.ts), then
   * deletes at the peer whatever it holds beyond the server's document.
   */
  protected async recover (conn: RoomConnection, peer: StalePeer): Promise<void> {
    const { maxTextLength } = this.deps.settings()
    const intents = peer.intents(this.doc, conn.userId, maxTextLength)
    const added: Message[] = []
    for (const m of conn.canWrite ? intents.added : []) {
      if (!this.archivedHere.has(m.id) && await this.deps.store.archivePosOf(this.id, m.id) === undefined && await this.attachmentHolds(m)) added.push(m)
    }
    const edited: Message[] = []
    for (const m of conn.canWrite ? intents.edited : []) if (await this.attachmentHolds(m)) edited.push(m)
    const deleted = conn.canWrite ? intents.deleted : []
    const readUpTo = conn.role === 'participant' ? intents.readUpTo : null
    // Reactions to messages that are gone (deleted while the peer was away) are dropped.
    const reactions: RecoveredIntents['reactions'] = []
    const addedIds = new Set(added.map(m => m.id))
    for (const r of conn.canWrite ? intents.reactions : []) {
      if (r.value === null || addedIds.has(r.messageId) || await this.messageExists(r.messageId)) reactions.push(r)
    }
    if (added.length > 0 || edited.length > 0 || deleted.length > 0 || readUpTo !== null || reactions.length > 0) {
      await this.transact(doc => {
        const arr = messagesOf(doc)
        for (const m of edited) {
          const i = findMessageIndex(doc, m.id)
          if (i >= 0) { arr.delete(i, 1); arr.insert(i, [m]) }
        }
        for (const id of deleted) {
          const i = findMessageIndex(doc, id)
          if (i >= 0) arr.delete(i, 1)
        }
        // Added messages are new to the server: after the whole history (contract §4.1).
        const fresh = added.filter(m => findMessageIndex(doc, m.id) < 0)
        if (fresh.length > 0) arr.push(fresh)
        if (readUpTo !== null) readsOf(doc).set(conn.userId, readUpTo)
        for (const r of reactions) {
          if (r.value === null) reactionsOf(doc).delete(r.key)
          else reactionsOf(doc).set(r.key, r.value)
        }
      })
    }
    const stale = peer.takeStale(this.doc)
    if (stale !== null) conn.send(encodeSyncUpdate(stale))
  }

  /**
   * The judge knows the live document only. Ids it reports are looked up in the archive: a new
   * message's id must not be an archived message's; a reaction's target and a reply's reference
   * must be one (not deleted since). When the document changed while the store was asked, the
   * update is judged again (and ids new to that judgment looked up), so the verdict holds for
   * the document it is applied to.
   */
  private async checkArchive (conn: RoomConnection, update: Uint8Array, first: Extract<Verdict, { ok: true }>, archivePosOf: (id: string) => Promise<number | undefined>): Promise<Extract<Verdict, { ok: true }>> {
    let verdict = first
    const inStore = new Map<string, boolean>()
    for (;;) {
      const { reactionTargets, references } = verdict.archiveChecks
      const unknown = this.archivedCount === 0 ? [] : [...verdict.freshIds, ...reactionTargets, ...references].filter(id => !inStore.has(id))
      if (unknown.length === 0) break
      const version = this.docVersion
      for (const id of unknown) inStore.set(id, await archivePosOf(id) !== undefined)
      if (this.closedWith !== null) throw this.closedWith
      if (this.docVersion === version) break
      verdict = this.judgeUpdate(conn, update)
    }
    // Ids archived while the store was asked (or not yet written to it) are in `archivedHere`.
    const archived = (id: string): boolean => !this.archiveDeletedHere.has(id) && (inStore.get(id) === true || this.archivedHere.has(id))
    for (const id of verdict.freshIds) {
      if (inStore.get(id) === true || this.archivedHere.has(id)) this.refuseUpdate(new ChatError('DUPLICATE_MESSAGE_ID', `message id ${id} belongs to an archived message`))
    }
    for (const id of verdict.archiveChecks.reactionTargets) {
      if (!archived(id)) this.refuseUpdate(new ChatError('REACTION_TARGET_NOT_FOUND', `No message ${id} in this conversation`))
    }
    for (const id of verdict.archiveChecks.references) {
      if (!archived(id)) this.refuseUpdate(new ChatError('REFERENCED_MESSAGE_NOT_FOUND', `No message ${id} in this conversation`))
    }
    return verdict
  }

  /**
   * Deleting a message deletes its reactions, in the transaction that deletes it (contract
   * §4.2). True when it removed any.
   */
  private removeReactionsOfRemoved (tr: Y.Transaction): boolean {
    const removed = messagesRemovedIn(this.doc, tr)
    if (removed.length === 0) return false
    for (const id of removed) this.txCascade.add(id)
    return removeReactionsTo(this.doc, tr, this.reactions, removed) > 0
  }

  /** Whether a message with this id exists in the conversation, live or archived (for REST). */
  async messageExists (id: string): Promise<boolean> {
    if (this.judge.isLive(id)) return true
    if (this.archiveDeletedHere.has(id)) return false
    return this.archivedHere.has(id) || await this.deps.store.archivePosOf(this.id, id) !== undefined
  }

  /**
   * Deletes an archived message (REST): its archive record, its reactions and its
   * `message.deleted` event in one batch. Reactions and replies to it are refused from now on.
   */
  async deleteArchived (archived: ArchivedMessage, actor: string | null = null): Promise<void> {
    const id = archived.message.id
    this.archiveDeletedHere.add(id)
    try {
      await this.transact((doc, tr) => {
        this.txCascade.add(id)
        removeReactionsTo(doc, tr, this.reactions, [id])
        return { archiveDeletes: [archived], events: [{ type: 'message.deleted', conversationId: this.id, message: archived.message, deletedBy: actor }] }
      }, actor)
    } catch (e) {
      this.archiveDeletedHere.delete(id)
      throw e
    }
  }

  /** Whether a message the server re-issues for a peer in recovery carries no attachment, or one that matches its upload. */
  private async attachmentHolds (m: Message): Promise<boolean> {
    const claim = claimOf(m)
    if (claim === null) return true
    return await this.deps.checkAttachments(this.id, [claim]).then(() => true, () => false)
  }

  private judgeUpdate (conn: RoomConnection, update: Uint8Array): Extract<Verdict, { ok: true }> {
    const moderator = conn.role === 'participant' && isModerator(this.doc, conn.userId)
    const verdict = this.judge.judge(update, { userId: conn.userId, role: conn.role, canWrite: conn.canWrite, moderator })
    return verdict.ok ? verdict : this.refuseUpdate(verdict.error)
  }

  private refuseUpdate (error: ChatError): never {
    this.deps.metrics.updatesRefused.inc({ code: error.code })
    throw error
  }

  /**
   * Runs a server-side change (REST, participants, meta) and resolves once it is durable. The
   * store records `fn` returns (the conversation's record, memberships) are written in the same
   * batch as the change's update, so a crash keeps both or neither. `actor`: the user whose
   * token asked for it (events name it), or null for admin credentials and the server.
   */
  async transact (fn: ServerChange, actor: string | null = null): Promise<void> {
    if (this.closedWith !== null) throw this.closedWith
    this.assertWritable()
    this.applyServerChange(fn, actor)
    // A change that left the document as it was still writes its records.
    if (this.pendingRecords.length > 0) this.scheduleFlush()
    await this.whenDurable()
  }

  /**
   * Applies a server change to the document now, as one transaction (its update and records
   * join the next flush). `fn` may throw a refusal, before it changes anything.
   */
  protected applyServerChange (fn: ServerChange, actor: string | null): void {
    this.txActor = actor
    try {
      Y.transact(this.doc, tr => {
        const records = fn(this.doc, tr)
        this.removeReactionsOfRemoved(tr)
        if (records !== undefined) this.pendingRecords.push(records)
      }, SERVER_OWNER)
    } finally {
      this.txActor = null
    }
  }

  /** The user a transaction acts for: a peer connection's user, or a server transaction's actor. */
  private actorOf (origin: unknown): string | null {
    if (typeof origin === 'object' && origin !== null && this.conns.has(origin as RoomConnection)) return (origin as RoomConnection).userId
    return this.txActor
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
      await this.untilAnswerable().catch(e => { if (!this.stalled) throw e })
      if (this.holdsUnwritten || this.stalled) continue
      // Joiners (and peers that re-ask) mostly send an empty state vector: encode that once.
      if (stateVector.byteLength === 1 && stateVector[0] === 0) return (this.fullAnswer ??= Y.encodeStateAsUpdate(this.doc))
      return Y.encodeStateAsUpdate(this.doc, stateVector)
    }
  }

  /**
   * True while the document holds changes that are not durable yet (a sync answer must wait).
   * Here: anything the document emitted and the store does not hold yet.
   */
  protected get holdsUnwritten (): boolean {
    return this.hasUnflushed
  }

  /** Resolves once `holdsUnwritten` may be false (throws as `whenDurable`). */
  protected async untilAnswerable (): Promise<void> {
    await this.whenDurable()
  }

  /** Storage works again (reopened and checked): writes the stalled batch, accepts changes. */
  resumeWrites (): void {
    if (!this.stalled) return
    this.stalled = false
    if (this.hasWork()) this.scheduleFlush()
  }

  /** True while storage refuses this room's writes. */
  get isStalled (): boolean { return this.stalled }

  /** The state vector of the stored document (what peers are told the server has while stalled). */
  async storedStateVector (): Promise<Uint8Array> {
    return await this.withStored(doc => Y.encodeStateVector(doc))
  }

  protected assertWritable (): void {
    if (this.stalled || this.deps.store.writeFailure !== null) throw this.storageRefusal()
  }

  protected storageRefusal (): ChatError {
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
    return this.flushing !== null || this.hasWork()
  }

  /** True while something waits for the flush. */
  protected hasWork (): boolean {
    return this.queue.length > 0 || this.pendingRecords.length > 0
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
    this.reactions.destroy()
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

  protected scheduleFlush (): void {
    if (this.flushing !== null || this.stalled) return
    this.flushing = this.flushLoop()
      .catch(e => this.fail(e, 'storage write failed'))
      .finally(() => {
        this.flushing = null
        // Work queued between the loop's last check and now (a continuation that ran in
        // between) found the loop still set and did not start one.
        if (this.hasWork() && this.closedWith === null) this.scheduleFlush()
      })
  }

  private async flushLoop (): Promise<void> {
    await Promise.resolve() // let the current transaction and its siblings queue up
    while (this.hasWork() && this.closedWith === null) {
      const batch = await this.flushOnce()
      if (this.stalled) return
      if (batch !== null) await this.afterCommit(batch)
    }
  }

  /** Writes one batch of what is queued; null when nothing was written (storage refused it: the room stalled). */
  protected async flushOnce (): Promise<Batch | null> {
    const batch = this.takeBatch()
    const seq = this.lastSeq + 1
    const endTimer = this.deps.metrics.storageWriteSeconds.startTimer()
    try {
      await this.deps.store.appendUpdates(this.id, seq, batch.merged === null ? [] : [batch.merged], batch.with_)
    } catch (e) {
      if (!isChatError(e) || e.code !== 'STORAGE_UNAVAILABLE') throw e
      this.stall(batch)
      return null
    }
    endTimer()
    if (batch.merged !== null) batch.seq = seq
    return batch
  }

  /** Takes everything queued as one batch (one log entry and what travels with it). */
  protected takeBatch (): Batch {
    const queued = this.queue
    this.queue = []
    if (!this.serverIdBound && queued.some(q => q.byServer || q.origin === SERVER_OWNER || q.origin === ARCHIVE_ORIGIN)) {
      this.serverIdBound = true
      this.clientOwners.set(this.doc.clientID, SERVER_OWNER)
      this.pendingBindings.push({ userId: SERVER_OWNER, clientIds: [this.doc.clientID] })
    }
    const bindings = this.pendingBindings
    this.pendingBindings = []
    const archive = this.pendingArchive
    this.pendingArchive = []
    const records = this.pendingRecords
    this.pendingRecords = []
    const merged = queued.length === 0 ? null : queued.length === 1 ? queued[0].update : Y.mergeUpdates(queued.map(q => q.update))
    const events = [...queued.flatMap(q => q.events), ...records.flatMap(r => r.events ?? [])]
    const staged = this.deps.events.stage(events)
    return { queued, bindings, archive, records, merged, events, staged, seq: null, with_: { archive, bindings, sections: staged, ...mergeRecords(records) } }
  }

  /** Storage refused `batch`: nothing of it was forwarded or acknowledged; keep it, in order, for when storage is back. */
  protected stall (batch: Batch): void {
    this.queue = [...batch.queued, ...this.queue]
    this.pendingBindings = [...batch.bindings, ...this.pendingBindings]
    this.pendingArchive = [...batch.archive, ...this.pendingArchive]
    this.pendingRecords = [...batch.records, ...this.pendingRecords]
    this.stalled = true
    const refusal = this.storageRefusal()
    for (const q of batch.queued) if (this.conns.has(q.origin as RoomConnection)) (q.origin as RoomConnection).close(refusal)
  }

  /** A batch is durable (stored as entry `batch.seq`): forward it, report its events, archive, compact. */
  private async afterCommit (batch: Batch): Promise<void> {
    if (batch.merged !== null && batch.seq !== null) {
      this.lastSeq = batch.seq
      this.logCount++
      this.logBytes += batch.merged.byteLength
      // Announced first (a cluster room tells the other nodes): their peers need not wait for
      // this node's own fan-out, which takes milliseconds with thousands of connections.
      this.committed(batch.seq, batch.merged)
      this.broadcast(batch.queued, batch.merged)
    }
    for (const w of batch.staged) w.committed()
    for (const e of batch.events) this.deps.events.emit(e)
    if (this.queue.length === 0) this.maybeArchive()
    if (this.queue.length === 0 && this.closedWith === null &&
      (this.logCount >= this.deps.compactAfterUpdates || this.logBytes >= this.deps.compactAfterBytes)) {
      // An optimisation: when storage refuses it, the log simply stays as it is.
      await this.compact().catch(err => {
        if (!isChatError(err) || err.code !== 'STORAGE_UNAVAILABLE') throw err
      })
    }
  }

  /** Entry `seq` holding `update` was committed by this room (a cluster room announces it). */
  protected committed (_seq: number, _update: Uint8Array): void {}

  /**
   * Sends a durable batch to every peer, without echoing a peer's own updates back to it (but
   * an update the server wrote in too goes to its origin as well: it must see the move).
   */
  protected broadcast (batch: Queued[], merged: Uint8Array): void {
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
  protected maybeArchive (): void {
    const arr = messagesOf(this.doc)
    if (this.closedWith !== null || this.stalled || this.deps.store.writeFailure !== null) return
    if (arr.length <= this.deps.historyWindow + this.deps.archiveChunk) return
    const k = arr.length - this.deps.historyWindow
    const base = this.archivedCount
    const moved = arr.slice(0, k)
    const last = moved[moved.length - 1]
    this.pendingArchive.push(...moved.map((message, i) => ({ pos: base + i, message })))
    for (const m of moved) this.archivedHere.add(m.id)
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
    const deletedBy = this.actorOf(event.transaction.origin)
    for (const m of removed.values()) this.txEvents.push({ type: 'message.deleted', conversationId, message: m, deletedBy })
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
        this.txEvents.push({ type: 'participant.removed', conversationId: this.id, userId, by: this.actorOf(event.transaction.origin) })
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

  protected fail (e: unknown, what: string): void {
    this.deps.logger.error({ err: e, conversation: this.id }, `room closed: ${what}`)
    this.close(new ChatError('INTERNAL', 'The conversation hit a storage or consistency error; reconnect'))
  }
}
