/**
 * The DocStore on LevelDB (`level` 10). Layout in `keys.ts`.
 *
 * Every write goes through one WriteQueue: a serial group commit (writes that queue up while one
 * batch is in flight become the next batch) with `sync: true` by default, so a resolved write is
 * on disk, not only in the page cache. The first failed write stops all writing (fail-stop) until
 * `reopen()` has closed and reopened the database and `resumeWrites()` was called; reads go on.
 */
import { readdir, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import * as keys from './keys.ts'
import { ChatError } from '../../shared/errors.ts'
import { verifyLevelLogs } from './log-integrity.ts'
import type { Message } from '../../shared/schema.ts'
import { checkSectionValue, SeqConflictError, type AppendWith, type ArchivedMessage, type DocStore, type KvSection, type OutboxQueue, type SectionPut, type StoredDoc, type UserRecord } from './port.ts'
import { KvOutboxQueue } from './kv-outbox-queue.ts'
import { describeStorageError, WriteQueue, type WriteFailure } from './write-queue.ts'
import { ensureReserve, isNoSpace, releaseReserve } from './space-reserve.ts'

type BinLevel = ReturnType<LevelStore['makeBin']>
type JsonLevel = ReturnType<LevelStore['makeJson']>

/** One put or delete of a write batch, on any sublevel. */
type Op =
  | { type: 'put', sublevel: BinLevel | JsonLevel, key: string, value: unknown }
  | { type: 'del', sublevel: BinLevel | JsonLevel, key: string }

export interface LevelStoreOptions {
  /**
   * fsync every batch before it resolves (default true): an acknowledged write survives a power
   * cut. False leaves flushing to the OS (survives a crash of the process, not of the machine).
   */
  sync?: boolean
  /**
   * Bytes of disk kept in reserve in the folder (default 0: none), released when LevelDB cannot
   * open for lack of space (see space-reserve.ts).
   */
  reserveBytes?: number
}

/** Deletes of a large range are written in batches of this many keys. */
const CLEAR_CHUNK = 5000
/** A key no other key can be: written and deleted to prove a reopened store writable. */
const PROBE_KEY = '~probe'
/** Conversations whose last sequence number is kept in memory (then the memory starts over). */
const HEADS_KEPT = 10_000

/** True when two byte arrays hold the same bytes. */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && Buffer.compare(a, b) === 0

export class LevelStore implements DocStore {
  private readonly db: Level<string, string>
  private readonly bin: BinLevel
  private readonly json: JsonLevel
  private readonly path: string
  private readonly sync: boolean
  private readonly reserveBytes: number
  private readonly writes: WriteQueue<Op>
  /**
   * The last sequence number stored per conversation (log or snapshot), for the conditional
   * append. Exact because this handle is the only writer of the folder (LevelDB's lock holds
   * out any other process); read from the disk on first use, moved forward by each append when
   * it starts (so a second append of the same entry in flight is refused too), and forgotten
   * when an append fails (the disk is the truth then).
   */
  private readonly heads = new Map<string, number>()

  private constructor (db: Level<string, string>, path: string, options: LevelStoreOptions) {
    this.db = db
    this.path = path
    this.sync = options.sync ?? true
    this.reserveBytes = options.reserveBytes ?? 0
    this.bin = this.makeBin()
    this.json = this.makeJson()
    // An array batch whose operations name their sublevel writes to several sublevels atomically.
    const batch = db.batch.bind(db) as unknown as (ops: Op[], options: { sync: boolean }) => Promise<void>
    this.writes = new WriteQueue<Op>(
      async (ops, durable) => { await batch(ops, { sync: this.sync && durable }) },
      error => describeStorageError(error, path)
    )
  }

  private makeBin () {
    return this.db.sublevel<string, Uint8Array>('bin', { valueEncoding: 'view' })
  }

  private makeJson () {
    return this.db.sublevel<string, unknown>('json', { valueEncoding: 'json' })
  }

  /**
   * Opens (creating if needed) the LevelDB folder at `path`. Rejects when it is unusable, and
   * with STORAGE_CORRUPT (before LevelDB could drop anything) when a log file is damaged.
   */
  static async open (path: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
    await refuseCorruptLogs(path)
    const db = new Level<string, string>(path)
    try {
      await db.open()
    } catch (e) {
      if ((e as { cause?: { code?: unknown } }).cause?.code === 'LEVEL_LOCKED') {
        throw new Error('another Parley process is using it (its LevelDB lock is held); stop that process or choose another folder with --data', { cause: e })
      }
      // Replaying the log needs free space: give it the reserve, once.
      if (!isNoSpace(e) || !(await releaseReserve(path))) throw e
      await db.open()
    }
    const store = new LevelStore(db, path, options)
    await store.keepReserve()
    return store
  }

  /** Makes the space reserve (space-reserve.ts) when there is room for it; never fails. */
  async keepReserve (): Promise<void> {
    await ensureReserve(this.path, this.reserveBytes)
  }

  /** The folder this store lives in. */
  get location (): string { return this.path }

  /** Free bytes for an unprivileged writer in the folder, and what LevelDB writes to reopen it. */
  async freeSpace (): Promise<{ free: number, needed: number }> {
    const fs = await statfs(this.path)
    let logs = 0
    for (const name of await readdir(this.path)) {
      if (name.endsWith('.log')) logs += (await stat(join(this.path, name))).size
    }
    // Reopening replays the log into a table file of about the same size.
    return { free: fs.bavail * fs.bsize, needed: logs }
  }

  get writeFailure (): WriteFailure | null { return this.writes.failure }

  onWriteFailure (fn: (failure: WriteFailure) => void): void { this.writes.onFailure(fn) }

  /**
   * After a write failure: closes the database (dropping the handle whose log may be misaligned),
   * opens it again (LevelDB replays its log; a torn last record is discarded) and proves it
   * writable with a synced probe write. Writes stay refused until `resumeWrites()`. Rejects when
   * the folder still cannot be opened or written; reads fail while it is closed.
   */
  async reopen (): Promise<void> {
    if (this.db.status === 'open') await this.db.close()
    await refuseCorruptLogs(this.path)
    await this.db.open()
    // Sublevels closed with their parent and do not reopen with it.
    await Promise.all([this.bin, this.json, ...this.sections.values()].map(async sub => { await sub.open() }))
    await this.db.batch([
      { type: 'put', key: PROBE_KEY, value: String(Date.now()) },
      { type: 'del', key: PROBE_KEY }
    ], { sync: this.sync })
    await this.keepReserve()
  }

  resumeWrites (): void { this.writes.resume() }

  /** Writes `ops` atomically, after every write queued before them. */
  private async commit (ops: Op[], durable = true): Promise<void> {
    await this.writes.enqueue(ops, durable)
  }

  /** Every key of `sublevel` in `range`, deleted in chunks (each chunk atomic). */
  private async clearRange (sublevel: BinLevel | JsonLevel, range: { gte: string, lt: string }): Promise<void> {
    let chunk: Op[] = []
    const keysOf = sublevel.keys.bind(sublevel) as (r: { gte: string, lt: string }) => AsyncIterable<string>
    for await (const key of keysOf(range)) {
      chunk.push({ type: 'del', sublevel, key })
      if (chunk.length >= CLEAR_CHUNK) {
        await this.commit(chunk)
        chunk = []
      }
    }
    await this.commit(chunk)
  }

  private readonly sections = new Map<string, ReturnType<LevelStore['makeSection']>>()

  private makeSection (name: string) {
    return this.db.sublevel<string, unknown>(`s-${name}`, { valueEncoding: 'json' })
  }

  private sectionLevel (name: string): ReturnType<LevelStore['makeSection']> {
    if (!/^[a-z][a-z0-9-]*$/.test(name) || name === 'bin' || name === 'json') throw new Error(`invalid section name ${name}`)
    let sub = this.sections.get(name)
    if (sub === undefined) {
      sub = this.makeSection(name)
      this.sections.set(name, sub)
    }
    return sub
  }

  section (name: string): KvSection {
    const sub = this.sectionLevel(name)
    return {
      get: async key => await sub.get(key),
      put: async (key, value) => {
        checkSectionValue(value)
        await this.commit([{ type: 'put', sublevel: sub, key, value }])
      },
      del: async key => { await this.commit([{ type: 'del', sublevel: sub, key }]) },
      batch: async (ops, with_ = [], opts) => {
        for (const o of ops) if (o.type === 'put') checkSectionValue(o.value)
        await this.commit([...ops.map(o => ({ ...o, sublevel: sub })), ...this.sectionOps(with_)], opts?.durable ?? true)
      },
      entries: range => sub.iterator(range)
    }
  }

  private readonly queues = new Map<string, OutboxQueue>()

  outboxQueue (name: string): OutboxQueue {
    let q = this.queues.get(name)
    if (q === undefined) {
      q = new KvOutboxQueue(this.section(name))
      this.queues.set(name, q)
    }
    return q
  }

  async loadDoc (conv: string): Promise<StoredDoc> {
    let snapshot: Uint8Array | null = null
    let snapshotSeq = 0
    for await (const [key, value] of this.bin.iterator({ ...keys.prefixRange(keys.snapPrefix(conv)), reverse: true, limit: 1 })) {
      snapshot = value
      snapshotSeq = keys.parseSeq(key.slice(keys.snapPrefix(conv).length))
    }
    const updates: Uint8Array[] = []
    let lastSeq = snapshotSeq
    const range = { gt: keys.logKey(conv, snapshotSeq), lt: keys.prefixRange(keys.logPrefix(conv)).lt }
    for await (const [key, value] of this.bin.iterator(range)) {
      updates.push(value)
      lastSeq = keys.parseSeq(key.slice(keys.logPrefix(conv).length))
    }
    return { snapshot, snapshotSeq, updates, lastSeq }
  }

  async loadDocAfter (conv: string, afterSeq: number): Promise<StoredDoc> {
    let snapshot: Uint8Array | null = null
    let snapshotSeq = 0
    for await (const [key, value] of this.bin.iterator({ ...keys.prefixRange(keys.snapPrefix(conv)), reverse: true, limit: 1 })) {
      snapshotSeq = keys.parseSeq(key.slice(keys.snapPrefix(conv).length))
      if (snapshotSeq > afterSeq) snapshot = value
    }
    const from = Math.max(afterSeq, snapshotSeq)
    const updates: Uint8Array[] = []
    let lastSeq = from
    const range = { gt: keys.logKey(conv, from), lt: keys.prefixRange(keys.logPrefix(conv)).lt }
    for await (const [key, value] of this.bin.iterator(range)) {
      updates.push(value)
      lastSeq = keys.parseSeq(key.slice(keys.logPrefix(conv).length))
    }
    return { snapshot, snapshotSeq: snapshot === null ? 0 : snapshotSeq, updates, lastSeq }
  }

  /** Reads the last sequence number stored for `conv` (0 when none) from the disk, see `heads`. */
  private async readHead (conv: string): Promise<number> {
    let head = 0
    for (const prefix of [keys.logPrefix(conv), keys.snapPrefix(conv)]) {
      for await (const key of this.bin.keys({ ...keys.prefixRange(prefix), reverse: true, limit: 1 })) {
        head = Math.max(head, keys.parseSeq(key.slice(prefix.length)))
      }
    }
    return head
  }

  private setHead (conv: string, seq: number): void {
    if (this.heads.size >= HEADS_KEPT && !this.heads.has(conv)) this.heads.clear()
    this.heads.set(conv, seq)
  }

  /** True when the log holds exactly `updates` from `firstSeq` on (a retried write that was stored). */
  private async holds (conv: string, firstSeq: number, updates: readonly Uint8Array[]): Promise<boolean> {
    const stored = await this.bin.getMany(updates.map((_, i) => keys.logKey(conv, firstSeq + i)))
    return stored.every((value, i) => value !== undefined && sameBytes(value, updates[i]))
  }

  async appendUpdates (conv: string, firstSeq: number, updates: readonly Uint8Array[], with_: AppendWith = {}): Promise<void> {
    const { archive = [], archiveDeletes = [], bindings = [], sections = [], conversation, members = [] } = with_
    if (updates.length > 0) {
      this.writes.assertWritable()
      const read = this.heads.has(conv) ? 0 : await this.readHead(conv)
      // Checked and moved in one synchronous step: an append that started meanwhile is seen.
      const head = this.heads.get(conv) ?? read
      if (firstSeq <= head) {
        if (await this.holds(conv, firstSeq, updates)) return
        throw new SeqConflictError(conv, firstSeq, head)
      }
      this.setHead(conv, firstSeq + updates.length - 1)
    }
    const ops: Op[] = updates.map((value, i) => ({ type: 'put', sublevel: this.bin, key: keys.logKey(conv, firstSeq + i), value }))
    for (const a of archive) {
      ops.push({ type: 'put', sublevel: this.json, key: keys.archiveKey(conv, a.pos), value: a.message })
      ops.push({ type: 'put', sublevel: this.json, key: keys.archiveIdKey(conv, a.message.id), value: a.pos })
    }
    for (const a of archiveDeletes) {
      ops.push({ type: 'del', sublevel: this.json, key: keys.archiveKey(conv, a.pos) }, { type: 'del', sublevel: this.json, key: keys.archiveIdKey(conv, a.message.id) })
    }
    for (const b of bindings) for (const id of b.clientIds) ops.push({ type: 'put', sublevel: this.json, key: keys.clientKey(conv, id), value: b.userId })
    if (conversation !== undefined) ops.push({ type: 'put', sublevel: this.json, key: keys.convKey(conv), value: { createdAt: conversation.createdAt } })
    for (const m of members) {
      const key = keys.memberKey(m.userId, conv)
      ops.push(m.joinedAt === null ? { type: 'del', sublevel: this.json, key } : { type: 'put', sublevel: this.json, key, value: { joinedAt: m.joinedAt } })
    }
    ops.push(...this.sectionOps(sections))
    try {
      await this.commit(ops)
    } catch (e) {
      this.heads.delete(conv)
      throw e
    }
  }

  async readArchive (conv: string, beforePos: number | null, limit: number): Promise<{ messages: ArchivedMessage[], hasMore: boolean }> {
    const prefix = keys.archivePrefix(conv)
    const range = { gte: prefix, lt: beforePos === null ? keys.prefixRange(prefix).lt : keys.archiveKey(conv, beforePos), reverse: true, limit: limit + 1 }
    const out: ArchivedMessage[] = []
    for await (const [key, value] of this.json.iterator(range)) {
      out.push({ pos: keys.parseSeq(key.slice(prefix.length)), message: value as Message })
    }
    const hasMore = out.length > limit
    return { messages: out.slice(0, limit).reverse(), hasMore }
  }

  async archivePosOf (conv: string, messageId: string): Promise<number | undefined> {
    const pos = await this.json.get(keys.archiveIdKey(conv, messageId))
    return typeof pos === 'number' ? pos : undefined
  }

  async updateArchived (conv: string, pos: number, message: Message | null, sections: readonly SectionPut[] = []): Promise<void> {
    const old = (await this.json.get(keys.archiveKey(conv, pos))) as Message | undefined
    if (old === undefined) return
    const ops: Op[] = []
    if (message === null) {
      ops.push({ type: 'del', sublevel: this.json, key: keys.archiveKey(conv, pos) }, { type: 'del', sublevel: this.json, key: keys.archiveIdKey(conv, old.id) })
    } else {
      ops.push({ type: 'put', sublevel: this.json, key: keys.archiveKey(conv, pos), value: message })
    }
    await this.commit([...ops, ...this.sectionOps(sections)])
  }

  async compact (conv: string, seq: number, snapshot: Uint8Array): Promise<void> {
    const stale: string[] = []
    for await (const key of this.bin.keys(keys.prefixRange(keys.snapPrefix(conv)))) stale.push(key)
    for await (const key of this.bin.keys({ gte: keys.logPrefix(conv), lte: keys.logKey(conv, seq) })) stale.push(key)
    await this.commit([
      ...stale.filter(k => k !== keys.snapKey(conv, seq)).map(key => ({ type: 'del' as const, sublevel: this.bin, key })),
      { type: 'put', sublevel: this.bin, key: keys.snapKey(conv, seq), value: snapshot }
    ])
    const head = this.heads.get(conv)
    if (head !== undefined && seq > head) this.heads.set(conv, seq)
  }

  async loadClientOwners (conv: string): Promise<Map<number, string>> {
    const owners = new Map<number, string>()
    const prefix = keys.clientPrefix(conv)
    for await (const [key, value] of this.json.iterator(keys.prefixRange(prefix))) {
      if (typeof value === 'string') owners.set(Number(key.slice(prefix.length)), value)
    }
    return owners
  }

  async bindClients (conv: string, userId: string, clientIds: readonly number[]): Promise<void> {
    await this.commit(clientIds.map(id => ({ type: 'put', sublevel: this.json, key: keys.clientKey(conv, id), value: userId })))
  }

  async conversationExists (conv: string): Promise<boolean> {
    return (await this.json.get(keys.convKey(conv))) !== undefined
  }

  async createConversation (conv: string, createdAt: number): Promise<void> {
    await this.commit([{ type: 'put', sublevel: this.json, key: keys.convKey(conv), value: { createdAt } }])
  }

  async deleteConversation (conv: string, members: readonly string[], sections: readonly SectionPut[] = []): Promise<void> {
    // The document first and the record last: a crash half-way leaves a conversation that
    // exists with less data, never data that outlives its conversation.
    this.heads.delete(conv)
    await this.clearRange(this.bin, keys.prefixRange(keys.docPrefix(conv)))
    await this.clearRange(this.json, keys.prefixRange(keys.clientPrefix(conv)))
    await this.clearRange(this.json, keys.prefixRange(keys.archivePrefix(conv)))
    await this.clearRange(this.json, keys.prefixRange(keys.archiveIdPrefix(conv)))
    await this.commit([
      ...members.map(user => ({ type: 'del' as const, sublevel: this.json, key: keys.memberKey(user, conv) })),
      { type: 'del', sublevel: this.json, key: keys.convKey(conv) },
      ...this.sectionOps(sections)
    ])
    this.heads.delete(conv)
  }

  private sectionOps (sections: readonly SectionPut[]): Op[] {
    for (const p of sections) if (p.del !== true) checkSectionValue(p.value)
    return sections.map(p => p.del === true
      ? { type: 'del', sublevel: this.sectionLevel(p.section), key: p.key }
      : { type: 'put', sublevel: this.sectionLevel(p.section), key: p.key, value: p.value })
  }

  async getUser (user: string): Promise<UserRecord | undefined> {
    return (await this.json.get(keys.userKey(user))) as UserRecord | undefined
  }

  async putUser (record: UserRecord, sections: readonly SectionPut[] = []): Promise<void> {
    await this.commit([{ type: 'put', sublevel: this.json, key: keys.userKey(record.id), value: record }, ...this.sectionOps(sections)])
  }

  async setMember (user: string, conv: string, joinedAt: number | null): Promise<void> {
    const key = keys.memberKey(user, conv)
    await this.commit([joinedAt === null ? { type: 'del', sublevel: this.json, key } : { type: 'put', sublevel: this.json, key, value: { joinedAt } }])
  }

  async listMemberships (user: string): Promise<Array<{ conv: string, joinedAt: number }>> {
    const out: Array<{ conv: string, joinedAt: number }> = []
    const prefix = keys.memberPrefix(user)
    for await (const [key, value] of this.json.iterator(keys.prefixRange(prefix))) {
      const joinedAt = (value as { joinedAt?: unknown }).joinedAt
      out.push({ conv: key.slice(prefix.length), joinedAt: typeof joinedAt === 'number' ? joinedAt : 0 })
    }
    return out
  }

  async getSettings (): Promise<Record<string, unknown> | undefined> {
    return (await this.json.get(keys.settingsKey())) as Record<string, unknown> | undefined
  }

  async putSettings (settings: Record<string, unknown>): Promise<void> {
    await this.commit([{ type: 'put', sublevel: this.json, key: keys.settingsKey(), value: settings }])
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  /**
   * Every raw entry of the database (all sublevels, keys with their sublevel prefix), as bytes,
   * in key order, from one iterator: LevelDB gives it an implicit snapshot when it is created,
   * so the entries are one consistent point in time while writes go on. For backups. The
   * iterator closes when a `for await` over it ends or breaks.
   */
  rawEntries (): AsyncIterable<[Uint8Array, Uint8Array]> {
    // Created here, not on first read: the snapshot is the moment of this call.
    return this.db.iterator<Uint8Array, Uint8Array>({ keyEncoding: 'view', valueEncoding: 'view' })
  }
}

const refuseCorruptLogs = async (path: string): Promise<void> => {
  const verdict = await verifyLevelLogs(path)
  if (verdict.ok) return
  const more = verdict.problems.length > 1 ? ` (and ${verdict.problems.length - 1} more)` : ''
  throw new ChatError('STORAGE_CORRUPT', `corrupted LevelDB log in ${path}: ${verdict.problems[0]}${more}; nothing was opened. Run: npm run repair -- --data ${path} (see docs/operations.md)`)
}
