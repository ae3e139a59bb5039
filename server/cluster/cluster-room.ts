/**
 * A room whose conversation other nodes write too (cluster mode, docs/cluster.md). Chosen at
 * startup instead of `Room` (RoomManager's `loadRoom`); the single-node write path never runs
 * this code.
 *
 * What changes against `Room`:
 * - Peer updates are not judged when they arrive: they wait, raw, for the flush. The flush takes
 *   the conversation's lock in PostgreSQL (`ExclusiveLog.appendExclusive`), applies what other
 *   nodes committed since this copy (origin REMOTE_ORIGIN), reads the owners of the client ids
 *   the waiting updates write with, judges each update against that caught-up document, and
 *   inserts the result, all in one transaction. So every update is judged against every update
 *   committed before it, whichever node committed it, and lag never causes a refusal. Refused
 *   updates close their connections once the transaction is over.
 * - Entries other nodes commit reach this room by the bus (fast path: the bytes of the next
 *   entry) or by a read of the store (a gap, a lost message, the periodic catch-up): they are
 *   applied with REMOTE_ORIGIN, forwarded to the local peers, never stored again, and their
 *   events are not reported again (the node that committed them did).
 * - Messages move to the archive only inside the lock.
 * - Server changes (REST, `transact`) wait for the flush too and run inside the lock, in arrival
 *   order with the peers' updates, on the caught-up document.
 * - A flush that fails after judging (PostgreSQL lost mid-transaction) drops this copy instead of
 *   keeping its judged changes for later: they would be written unjudged against what other
 *   nodes commit meanwhile. Its writers are closed with 1013 and send their changes again.
 */
import * as Y from 'yjs'
import { ChatError, isChatError } from '../../shared/errors.ts'
import { encodeSyncUpdate } from '../../shared/protocol.ts'
import { mentionedMessageIds } from '../../shared/update-judge/mentioned-ids.ts'
import { Room, type AcceptOptions, type Batch, type RoomConnection, type RoomDeps, type ServerChange } from '../rooms/room.ts'
import type { StalePeer } from '../rooms/stale-peer.ts'
import type { ExclusiveLog, StoredDoc } from '../storage/port.ts'

/** Origin of the transactions that apply what other nodes committed. */
export const REMOTE_ORIGIN = '#remote'

export interface ClusterRoomLink {
  /** The store's locked append. */
  log: ExclusiveLog
  /** Tells the other nodes that this room committed entry `seq` (holding `update`). */
  announce: (conv: string, seq: number, update: Uint8Array) => void
  /** True while the node hears the other nodes' commits (the bus is up). */
  hearing: () => boolean
}

/** A peer's update, raw until the flush judges it. */
interface RawUpdate { kind: 'peer', conn: RoomConnection, update: Uint8Array, opts: AcceptOptions }
/** A server change (REST), run by the flush on the caught-up document. */
interface ServerWrite { kind: 'server', fn: ServerChange, actor: string | null, applied: boolean, error: unknown }
type Waiting = RawUpdate | ServerWrite

/** The Yjs client ids that write structs in `update` (malformed bytes: none; the judge refuses them). */
const writersOf = (update: Uint8Array): number[] => {
  try {
    return [...Y.parseUpdateMeta(update).from.keys()]
  } catch {
    return []
  }
}

export class ClusterRoom extends Room {
  private readonly link: ClusterRoomLink
  /** Peer updates and server changes waiting to be judged inside the lock, in arrival order. */
  private waiting: Waiting[] = []
  private wantCatchUp = false
  /** What other nodes committed, applied here and not yet forwarded to the local peers. */
  private remoteOut: Uint8Array[] = []
  /** True inside the locked part of a flush. */
  private locked = false
  /**
   * Set while this copy holds changes judged in a flush and not yet committed (from the first
   * judged change until the transaction ends): a sync answer waits for it, and only for it.
   */
  private uncommitted: { settled: Promise<void>, settle: () => void } | null = null
  /** Reads of the store started and finished (a locked flush reads too), for `caughtUp`. */
  private readsStarted = 0
  private readsDone = 0
  private readWaiters: Array<{ after: number, resolve: () => void }> = []

  private constructor (id: string, doc: Y.Doc, owners: Map<number, string>, lastSeq: number, logCount: number, deps: RoomDeps, link: ClusterRoomLink) {
    super(id, doc, owners, lastSeq, logCount, deps)
    this.link = link
  }

  static async loadClustered (id: string, deps: RoomDeps, link: ClusterRoomLink): Promise<ClusterRoom> {
    const { doc, owners, stored } = await ClusterRoom.read(id, deps)
    return new ClusterRoom(id, doc, owners, stored.lastSeq, stored.updates.length, deps, link)
  }

  /** Another node committed entry `seq` (`update`: its bytes, when the bus carried them). */
  remoteCommitted (seq: number, update: Uint8Array | null): void {
    if (this.closed || seq <= this.durableSeq) return
    // Applied at once unless this copy is being judged or holds judged changes not committed
    // yet: a flush waiting for the lock has not touched it (its catch-up read then finds the
    // entry applied: applying an update twice changes nothing). Waiting for the flush instead
    // delayed every other node's commits by a lock wait and a flush on a busy conversation.
    if (update !== null && seq === this.durableSeq + 1 && !this.locked && this.uncommitted === null && !this.stalled) {
      this.applyRemote({ snapshot: null, snapshotSeq: 0, updates: [update], lastSeq: seq })
      this.forwardRemote()
      return
    }
    this.requestCatchUp()
  }

  /** Reads what the store holds past this copy (a gap, a lost bus message, the periodic check). */
  requestCatchUp (): void {
    if (this.closed) return
    this.wantCatchUp = true
    this.scheduleFlush()
  }

  /**
   * Resolves once a read of the store that started after this call has been applied (or the
   * room closed): the copy then holds everything committed before the call, on any node. Only
   * that read is waited for, not the end of the flushes that keep coming in a busy room (every
   * joiner of a join storm waited for a quiet moment before).
   *
   * Not `strict` (a sync connection joining): no read while the node hears the bus and this copy
   * knows of no gap. The copy then holds every commit announced to this node; one made on
   * another node a moment ago, still on its way, reaches the connection right after its first
   * sync, as any live update does (docs/cluster.md). Every joiner of a storm waited for a read
   * of its own before (p50 60 ms, p99 200 ms at 1,000 joiners per node).
   */
  override caughtUp (strict = true): Promise<void> | undefined {
    if (this.closed) return Promise.resolve()
    if (!strict && !this.wantCatchUp && !this.stalled && this.link.hearing()) return undefined
    const after = this.readsStarted
    const done = new Promise<void>(resolve => { this.readWaiters.push({ after, resolve }) })
    this.requestCatchUp()
    return done
  }

  /** A sync answer waits only for judged changes that are not committed (see `uncommitted`). */
  protected override get holdsUnwritten (): boolean {
    return this.uncommitted !== null
  }

  protected override async untilAnswerable (): Promise<void> {
    while (this.uncommitted !== null) await this.uncommitted.settled
    if (this.closedWith !== null) throw this.closedWith
    if (this.stalled) throw this.storageRefusal()
  }

  override close (error: ChatError): void {
    super.close(error)
    this.readDone(this.readsDone, true)
  }

  /**
   * Read number `n` was applied: wakes the `caughtUp` waiters that asked before it started (all
   * of them when `all`: the room closed or stalled, and they find out why from the room).
   */
  private readDone (n: number, all = false): void {
    this.readsDone = Math.max(this.readsDone, n)
    if (this.readWaiters.length === 0) return
    const waiting = this.readWaiters
    this.readWaiters = []
    for (const w of waiting) {
      if (all || w.after < this.readsDone) w.resolve()
      else this.readWaiters.push(w)
    }
  }

  protected override onDocUpdate (update: Uint8Array, origin: unknown): void {
    if (origin !== REMOTE_ORIGIN) {
      super.onDocUpdate(update, origin)
      return
    }
    // Committed elsewhere: forwarded, never stored again; its events were reported by its node.
    this.remoteOut.push(update)
    this.txEvents = []
    this.txByServer = false
  }

  protected override hasWork (): boolean {
    return super.hasWork() || this.waiting.length > 0 || this.wantCatchUp
  }

  protected override async acceptUpdate (conn: RoomConnection, update: Uint8Array, opts: AcceptOptions): Promise<void> {
    this.waiting.push({ kind: 'peer', conn, update, opts })
    this.scheduleFlush()
  }

  /**
   * A server change (REST) is not applied to this copy at once, which may lag: it waits for the
   * flush and runs inside the conversation's lock, on the document caught up with everything
   * committed before, like a peer's update. So an edit of a message another node deleted a
   * moment ago finds it gone (and refuses), instead of bringing it back. Resolves once durable.
   */
  override async transact (fn: ServerChange, actor: string | null = null): Promise<void> {
    if (this.closedWith !== null) throw this.closedWith
    this.assertWritable()
    const write: ServerWrite = { kind: 'server', fn, actor, applied: false, error: null }
    this.waiting.push(write)
    this.scheduleFlush()
    try {
      await this.whenDurable()
    } catch (e) {
      // Refused before it ran (storage failing): it must never run later, unacknowledged.
      this.waiting = this.waiting.filter(w => w !== write)
      throw e
    }
    if (write.error !== null) throw write.error
  }

  protected override maybeArchive (): void {
    if (this.locked) super.maybeArchive()
  }

  protected override committed (seq: number, update: Uint8Array): void {
    this.link.announce(this.id, seq, update)
  }

  protected override async flushOnce (): Promise<Batch | null> {
    const read = ++this.readsStarted
    try {
      return await this.flushOrRead()
    } finally {
      this.readDone(read, this.stalled)
    }
  }

  private async flushOrRead (): Promise<Batch | null> {
    this.wantCatchUp = false
    if (this.waiting.length === 0 && !super.hasWork()) {
      await this.catchUpUnlocked()
      return null
    }
    const waiting = this.waiting
    this.waiting = []
    const raw = waiting.filter((w): w is RawUpdate => w.kind === 'peer')
    const refusals: Array<[RoomConnection, ChatError]> = []
    const stale: Array<[RoomConnection, StalePeer]> = []
    let batch: Batch | null = null
    const endTimer = this.deps.metrics.storageWriteSeconds.startTimer()
    let seq: number
    try {
      seq = await this.link.log.appendExclusive(this.id, this.durableSeq, async caught => {
        this.locked = true
        try {
          this.applyRemote(caught.stored)
          const writers = [...new Set(raw.flatMap(r => writersOf(r.update)))].filter(id => !this.clientOwners.has(id))
          for (const [id, owner] of await caught.ownersOf(writers)) this.clientOwners.set(id, owner)
          // One archive read for the whole batch instead of one per new message (the lock is
          // held): every id the waiting updates mention, read from their bytes (judging them now,
          // before the batch's earlier updates are applied, would cost a second judging each).
          const candidates = this.archivedCount === 0 ? [] : [...new Set(raw.flatMap(r => this.conns.has(r.conn) ? mentionedMessageIds(r.update) : []))]
          const archived = await caught.archivePositionsOf(candidates)
          const asked = new Set(candidates)
          const archivePosOf = async (id: string): Promise<number | undefined> => asked.has(id) ? archived.get(id) : await caught.archivePosOf(id)
          const refused = new Set<RoomConnection>()
          let settle = (): void => {}
          this.uncommitted = { settled: new Promise<void>(resolve => { settle = resolve }), settle: () => settle() }
          for (const r of waiting) {
            if (this.closed) break
            if (r.kind === 'server') {
              try {
                this.assertWritable()
                this.applyServerChange(r.fn, r.actor)
                r.applied = true
              } catch (e) {
                r.error = e
              }
              continue
            }
            // Gone meanwhile, or refused already: as on one node, nothing after a refusal is taken.
            if (!this.conns.has(r.conn) || refused.has(r.conn)) continue
            try {
              await this.judgeAndApply(r.conn, r.update, r.opts, archivePosOf, async peer => { stale.push([r.conn, peer]) })
            } catch (e) {
              refused.add(r.conn)
              refusals.push([r.conn, isChatError(e) ? e : new ChatError('INTERNAL')])
            }
          }
          this.maybeArchive()
          batch = this.takeBatch()
          return { update: batch.merged, with_: batch.with_ }
        } finally {
          this.locked = false
        }
      })
    } catch (e) {
      this.forwardRemote()
      this.commitSettled()
      if (isChatError(e) && e.code === 'CONVERSATION_DELETED') {
        // Deleted on another node, whose message about it may still be on its way: this copy
        // ends as it would on hearing that message (its writes were never acknowledged).
        this.close(e)
        return null
      }
      if (!isChatError(e) || e.code !== 'STORAGE_UNAVAILABLE') throw e
      const refusal = this.storageRefusal()
      const built = batch as Batch | null
      if (built !== null && (built.queued.length > 0 || built.records.length > 0)) {
        // The transaction failed after this copy took changes that may not be stored (or were,
        // its answer lost). They were judged against a state that other nodes go on changing
        // while this node cannot write: writing them on resume, unjudged, could store a message
        // id another node took meanwhile, a client id bound to another user, or the write of a
        // user whose rights were revoked. So the copy is dropped: every connection is closed
        // with 1013 (retry), the next use reloads what the store holds, and the writers send
        // their changes again, judged then against everything committed before. Nothing here
        // was acknowledged or forwarded.
        this.deps.logger.warn({ conversation: this.id, updates: built.queued.length }, 'a flush failed after judging: the copy is dropped and reloaded once storage is back; its writers retry')
        for (const [conn, error] of refusals) conn.close(error)
        this.close(refusal)
        return null
      }
      // Nothing of this flush was applied: the writers retry later; nothing runs unacknowledged.
      this.stalled = true
      for (const [conn, error] of refusals) conn.close(error)
      for (const r of raw) r.conn.close(refusal)
      for (const w of waiting) if (w.kind === 'server' && w.error === null) w.error = refusal
      return null
    }
    endTimer()
    this.forwardRemote()
    this.commitSettled()
    for (const [conn, error] of refusals) conn.close(error)
    for (const [conn, peer] of stale) {
      this.recover(conn, peer).catch(e => conn.close(isChatError(e) ? e : new ChatError('INTERNAL')))
    }
    const done = batch as Batch | null
    if (done !== null && done.merged !== null) done.seq = seq
    return done
  }

  /** The flush's transaction ended (committed, or failed and its copy dropped): sync answers go on. */
  private commitSettled (): void {
    const u = this.uncommitted
    this.uncommitted = null
    u?.settle()
  }

  /** Applies and forwards what the store holds past this copy, without the lock (nothing to write). */
  private async catchUpUnlocked (): Promise<void> {
    let stored: StoredDoc
    try {
      stored = await this.deps.store.loadDocAfter(this.id, this.durableSeq)
    } catch (err) {
      // Storage trouble is the storage guard's business; the next check retries.
      this.deps.logger.debug({ err, conversation: this.id }, 'catch-up read failed')
      return
    }
    this.applyRemote(stored)
    this.forwardRemote()
  }

  /**
   * Applies entries other nodes committed and moves this copy's head past them: each entry in a
   * transaction of its own (a snapshot, covering entries compacted away, in one). Never several
   * in one: a message added by one entry and moved to the archive by a later one would reach
   * this node's peers as deleted content only, and they would never see it arrive.
   */
  private applyRemote (stored: StoredDoc): void {
    if (stored.lastSeq <= this.durableSeq) return
    if (stored.snapshot !== null) Y.transact(this.doc, () => { Y.applyUpdate(this.doc, stored.snapshot as Uint8Array) }, REMOTE_ORIGIN)
    for (const u of stored.updates) Y.transact(this.doc, () => { Y.applyUpdate(this.doc, u) }, REMOTE_ORIGIN)
    this.lastSeq = stored.lastSeq
  }

  /**
   * Sends what other nodes committed to every local peer (it is durable: it came from the store
   * or after its commit), one frame per applied entry, in order: merging them would hide, as
   * above, a message added by one and archived by the next.
   */
  private forwardRemote (): void {
    if (this.remoteOut.length === 0) return
    const frames = this.remoteOut.map(encodeSyncUpdate)
    this.remoteOut = []
    for (const conn of this.connections()) for (const frame of frames) conn.send(frame)
  }
}
