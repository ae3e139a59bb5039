import type { Message } from '../../shared/schema.ts'
import type { WriteFailure } from './fail-stop.ts'

/**
 * The storage port: what the server needs from a store, and nothing about how it is kept.
 * `level-store.ts` implements it on LevelDB (the embedded default), `pg-store.ts` on PostgreSQL
 * (`--postgres`). Both pass one conformance suite, `test/server/storage/store-conformance.ts`,
 * which pins every promise below, and `outbox-queue-conformance.ts` for the outbox claims; a
 * new store must pass them too.
 */

/**
 * An append refused because the conversation's log already holds an entry at one of its
 * sequence numbers (or a snapshot covering one): someone else wrote there first (another node
 * sharing the store, or a bug on a single node). Nothing of the append was written. The writer
 * must catch up (reload what is stored) and judge its changes again; it is not a storage failure
 * and does not stop writes. Not a ChatError: it never reaches a client.
 */
export class SeqConflictError extends Error {
  readonly code = 'SEQ_CONFLICT'
  readonly conversation: string
  readonly firstSeq: number
  /** The last sequence number stored when the append was refused. */
  readonly storedSeq: number

  constructor (conversation: string, firstSeq: number, storedSeq: number) {
    super(`conversation ${conversation}: entry ${firstSeq} is already stored (stored up to ${storedSeq})`)
    this.name = 'SeqConflictError'
    this.conversation = conversation
    this.firstSeq = firstSeq
    this.storedSeq = storedSeq
  }
}

/** True when `e` is a conditional append's conflict. */
export const isSeqConflict = (e: unknown): e is SeqConflictError => e instanceof SeqConflictError

/** A conversation's document as stored: load = snapshot, then the log in order. */
export interface StoredDoc {
  snapshot: Uint8Array | null
  /** Sequence number the snapshot covers (0 when there is none). */
  snapshotSeq: number
  /** Updates after the snapshot, oldest first. */
  updates: Uint8Array[]
  /** Sequence number of the last stored update (or of the snapshot). */
  lastSeq: number
}

/**
 * What a locked append sees (`ExclusiveLog.appendExclusive`): everything committed after the
 * caller's copy, and reads inside the same transaction.
 */
export interface CaughtUp {
  /** Stored after `afterSeq` (see `DocStore.loadDocAfter`). */
  stored: StoredDoc
  /** The owners of these client ids as stored now (another node may have bound one). */
  ownersOf (clientIds: readonly number[]): Promise<Map<number, string>>
  /** Where an archived message is, if it is archived (read in the transaction). */
  archivePosOf (messageId: string): Promise<number | undefined>
  /** The same for many ids in one read: the archived ones among them, with their positions. */
  archivePositionsOf (messageIds: readonly string[]): Promise<Map<string, number>>
}

/**
 * A store several nodes share (PostgreSQL): appends that hold the conversation's lock from the
 * read of what others committed to the insert of what the caller made of it. `build` runs once,
 * inside the transaction: it applies `stored`, judges its writes against the result and returns
 * the entry to append (or none); it must not touch the store otherwise. Resolves with the
 * sequence number of the last stored entry once committed; rejects (and writes nothing) on
 * failure, like `appendUpdates`, and with CONVERSATION_DELETED when the conversation has no
 * entries any more though the caller's copy had some (another node deleted it).
 */
export interface ExclusiveLog {
  appendExclusive (conv: string, afterSeq: number, build: (caught: CaughtUp) => Promise<{ update: Uint8Array | null, with_: AppendWith }>): Promise<number>
}

/** A message moved out of the live document, at its position in the whole history. */
export interface ArchivedMessage {
  pos: number
  message: Message
}

export interface UserRecord {
  id: string
  name: string
  email?: string[]
  phone?: string[]
  photoUrl?: string | null
  custom?: Record<string, string>
  createdAt: number
}

/** What an append carries in the same batch as its updates. */
export interface AppendWith {
  /** Messages these updates move out of the live document. */
  archive?: readonly ArchivedMessage[]
  /** Archived messages deleted (record and id) together with these updates (their reactions). */
  archiveDeletes?: readonly ArchivedMessage[]
  /** Yjs client ids first used in these updates, bound to their users. */
  bindings?: ReadonlyArray<{ userId: string, clientIds: readonly number[] }>
  /** Puts into named sections (the webhook outbox). */
  sections?: readonly SectionPut[]
  /** The conversation's record (what `createConversation` writes), with its document's first update. */
  conversation?: { createdAt: number }
  /** Membership changes (what `setMember` writes), in order; a null `joinedAt` removes one. */
  members?: ReadonlyArray<{ userId: string, joinedAt: number | null }>
}

/** A put into (or, with `del`, a delete from) a named section, made in the same batch as other writes. */
export interface SectionPut {
  section: string
  key: string
  value: unknown
  /** Deletes the key instead (`value` is ignored). */
  del?: boolean
}

/**
 * Refuses a section value no store can keep (LevelDB refuses null and undefined), before any
 * write starts: a mistake of the caller must not look like a storage failure.
 */
export const checkSectionValue = (value: unknown): void => {
  if (value === null || value === undefined) throw new TypeError('a section value must not be null or undefined')
}

/** A JSON key-value section of the store that one module owns (webhook outbox, inbox index...). Values are JSON, never null. */
export interface KvSection {
  get (key: string): Promise<unknown>
  put (key: string, value: unknown): Promise<void>
  del (key: string): Promise<void>
  /**
   * Applies puts and deletes atomically, together with `with_`: puts into other sections made in
   * the same batch (the webhook outbox entries of the change). With `durable: false` the batch
   * may resolve before it is flushed to the disk (a crash of the machine may lose it whole, never
   * part of it): for writes that a durable record can redo, such as the search index expanding
   * its log.
   */
  batch (ops: ReadonlyArray<{ type: 'put', key: string, value: unknown } | { type: 'del', key: string }>, with_?: readonly SectionPut[], opts?: { durable?: boolean }): Promise<void>
  /** Entries in key order (or reversed), within the range. */
  entries (range: { gt?: string, gte?: string, lt?: string, lte?: string, limit?: number, reverse?: boolean }): AsyncIterable<[string, unknown]>
}

/**
 * A record of an outbox section as claimed by one deliverer (`OutboxQueue`). `value` is the
 * record as it was stored before the claim; `token` fences the claim: settling with a token that
 * is no longer the record's (its lease ran out and another deliverer claimed it) writes nothing.
 */
export interface OutboxClaim {
  key: string
  value: unknown
  token: string
}

/**
 * Who may attempt which record of an outbox section now (the webhook and email outbox, see
 * server/webhooks/outbox.ts). Records are JSON objects whose numeric field `nextAt` (ms since the
 * epoch) says when they are due; they are written through the section as usual (often in the
 * same batch as the change they report). A claim takes a due record for `leaseMs`: nobody else
 * can claim it meanwhile, and once the lease is over (its holder died, or hangs) it is due again
 * and anyone may claim it, under a new token. LevelStore keeps claims in memory (one process);
 * PgStore keeps them in the row (`FOR UPDATE SKIP LOCKED`), so the nodes sharing a database
 * never claim one record twice at once.
 */
export interface OutboxQueue {
  /** True when other processes claim from this queue too (PostgreSQL): deliverers must sweep for due records, not only their own. */
  readonly shared: boolean
  /** Claims the records at these keys that exist, are due at `now` and are not claimed. */
  claim (keys: readonly string[], now: number, leaseMs: number): Promise<OutboxClaim[]>
  /** Claims up to `limit` due, unclaimed records whose keys start with `prefix`, in key order. */
  claimDue (prefix: string, now: number, limit: number, leaseMs: number): Promise<OutboxClaim[]>
  /**
   * Ends a claim by writing `ops` (delete the delivered record; or put it back with its next
   * attempt; or move it to the dead letters) atomically, only while the claim is still held
   * (the token is still the record's). Resolves false, writing nothing, when it is not.
   */
  settle (claim: OutboxClaim, ops: ReadonlyArray<{ type: 'put', key: string, value: unknown } | { type: 'del', key: string }>): Promise<boolean>
  /** Gives a claim up (a deliverer stopping): the record is due again at once for anyone. */
  release (claim: OutboxClaim, now: number): Promise<void>
}

/** What `LockedSection.change` writes: a new value (`put`), a deletion (`del`), or nothing; and section puts in the same transaction. */
export interface LockedWrite<R> {
  put?: unknown
  del?: boolean
  sections?: readonly SectionPut[]
  result: R
}

/**
 * Keys of a section that several nodes read, change and write back (pending notification
 * batches in a cluster): each change holds the key's lock from its read to its commit, so two
 * nodes never both change one key from the same value, whether the key exists or not.
 * PostgreSQL only (one node on LevelDB keeps such state in memory).
 */
export interface LockedSection {
  /**
   * Runs `fn` on the stored value (undefined when absent) under the key's lock, and writes what
   * it returns in the same transaction. `fn` may read the store meanwhile (it holds one
   * connection); it must be short. Rejects, writing nothing, when `fn` throws.
   */
  change<R> (key: string, fn: (current: unknown) => Promise<LockedWrite<R>>): Promise<R>
  /** Keys starting with `prefix` whose value's numeric field `nextAt` is at most `upTo`, in key order. */
  dueKeys (prefix: string, upTo: number, limit: number): Promise<string[]>
}

export interface DocStore {
  /** The named section; its keys never collide with the store's own or another section's. */
  section (name: string): KvSection
  /** The claims of an outbox section (see OutboxQueue); every call for one name shares its claims. */
  outboxQueue (section: string): OutboxQueue
  /** Locked read-change-write of a section's keys, for a store several nodes share (PostgreSQL); absent on LevelDB. */
  lockedSection? (section: string): LockedSection

  /** Reads a conversation's document. An unknown conversation reads as empty. */
  loadDoc (conv: string): Promise<StoredDoc>
  /**
   * Appends updates with consecutive sequence numbers starting at `firstSeq`, and in the same
   * atomic write everything that must not outlive or predate them (`with`). Resolves only once
   * it is written (durably committed); rejects (and writes nothing) on failure.
   *
   * Conditional: when the log already holds an entry at `firstSeq` or later, or a snapshot
   * covers it, rejects with SeqConflictError and writes nothing. One exception makes a retry
   * safe: when the stored entries from `firstSeq` on are byte for byte these updates (a write
   * whose acknowledgement was lost to a failure did reach the store), it resolves, writing
   * nothing more. Gaps are not checked: `firstSeq` past the last stored entry is accepted.
   */
  appendUpdates (conv: string, firstSeq: number, updates: readonly Uint8Array[], with_?: AppendWith): Promise<void>
  /**
   * What is stored after entry `afterSeq` (a node catching up): the log entries after it, oldest
   * first, and the snapshot only when one covers entries after `afterSeq` (they were compacted
   * away; then `updates` are those after the snapshot). `lastSeq`: the last entry returned, or
   * `afterSeq` when nothing newer is stored.
   */
  loadDocAfter (conv: string, afterSeq: number): Promise<StoredDoc>

  /** Up to `limit` archived messages before position `beforePos` (or the newest), oldest first. */
  readArchive (conv: string, beforePos: number | null, limit: number): Promise<{ messages: ArchivedMessage[], hasMore: boolean }>
  /** Where an archived message is, if it is archived. */
  archivePosOf (conv: string, messageId: string): Promise<number | undefined>
  /** Replaces (edit) or removes (null: delete) an archived message, with the section puts (its webhook) in the same batch. */
  updateArchived (conv: string, pos: number, message: Message | null, sections?: readonly SectionPut[]): Promise<void>
  /** Replaces the snapshot and every log entry up to `seq` with `snapshot`, atomically. */
  compact (conv: string, seq: number, snapshot: Uint8Array): Promise<void>

  /** The owners of the conversation's Yjs client ids. */
  loadClientOwners (conv: string): Promise<Map<number, string>>
  /** Binds client ids to a user, durably (outside an append; appends carry their own). */
  bindClients (conv: string, userId: string, clientIds: readonly number[]): Promise<void>

  conversationExists (conv: string): Promise<boolean>
  createConversation (conv: string, createdAt: number): Promise<void>
  /**
   * Deletes the conversation, its document, its client bindings and the given members' index
   * entries; the last batch (the one removing the conversation's record) carries `sections`.
   */
  deleteConversation (conv: string, members: readonly string[], sections?: readonly SectionPut[]): Promise<void>

  getUser (user: string): Promise<UserRecord | undefined>
  /** Writes the user record and, in the same batch, the section puts (its webhook). */
  putUser (record: UserRecord, sections?: readonly SectionPut[]): Promise<void>

  /** Records (or removes) that `user` is a participant of `conv`, for the user's conversation list. */
  setMember (user: string, conv: string, joinedAt: number | null): Promise<void>
  /** The conversations `user` is a participant of. */
  listMemberships (user: string): Promise<Array<{ conv: string, joinedAt: number }>>

  getSettings (): Promise<Record<string, unknown> | undefined>
  putSettings (settings: Record<string, unknown>): Promise<void>

  /**
   * Where the data lives, for messages to people ("disk full at ./data"): a folder, or for a
   * database its URL without the password.
   */
  readonly location: string
  /**
   * For a store in a folder: the free bytes there, and what reopening needs (LevelDB replays
   * its log). The storage guard waits for enough before reopening. Absent for a database.
   */
  freeSpace? (): Promise<{ free: number, needed: number }>
  /**
   * Null while writes are accepted. After the first failed write, the failure: every write is
   * refused with STORAGE_UNAVAILABLE (fail-stop) until `reopen()` and `resumeWrites()`.
   */
  readonly writeFailure: WriteFailure | null
  /** Called once per failure, when writes stop. */
  onWriteFailure (fn: (failure: WriteFailure) => void): void
  /** Closes and reopens the storage and proves it writable; writes stay refused. Rejects if it cannot. */
  reopen (): Promise<void>
  /** Accepts writes again, once the reopened store was proven consistent. */
  resumeWrites (): void

  /** Flushes and closes the store. */
  close (): Promise<void>
}
