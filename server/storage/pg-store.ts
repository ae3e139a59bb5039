/**
 * The DocStore on PostgreSQL (`postgres` 3), for `--postgres URL`. Layout and migrations in
 * `pg-schema.ts`; tables live in one schema (the URL's `?schema=NAME`, default `public`).
 *
 * Every write is one transaction, committed with `synchronous_commit = on` before it resolves,
 * so an acknowledged write survives a crash of PostgreSQL's machine. Transactions run
 * concurrently on a pool; the appends of one conversation are serialized by the row lock of its
 * `doc_heads` row, which also makes them conditional (see `DocStore.appendUpdates`): a second
 * node appending an entry that another already stored gets SeqConflictError.
 *
 * Fail-stop as LevelStore: the first failure of the engine (connection lost or refused,
 * PostgreSQL shutting down, out of disk or memory), on a write, a read or the heartbeat, stops
 * all writing (STORAGE_UNAVAILABLE) until `reopen()` has connected again and proven the store
 * writable, and `resumeWrites()` was called. A refusal of one statement that is not the engine's
 * failure (a bug) is rethrown as it is and stops nothing.
 */
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { ChatError } from '../../shared/errors.ts'
import type { Message } from '../../shared/schema.ts'
import { FailStop, type WriteFailure } from './fail-stop.ts'
import { DATA_TABLES, MIGRATIONS, type Migration } from './pg-schema.ts'
import { parsePgUrl, type PgTarget } from './pg-url.ts'
import { checkSectionValue, SeqConflictError, type AppendWith, type ArchivedMessage, type CaughtUp, type DocStore, type ExclusiveLog, type KvSection, type LockedSection, type LockedWrite, type OutboxClaim, type OutboxQueue, type SectionPut, type StoredDoc, type UserRecord } from './port.ts'

export interface PgStoreOptions {
  /** postgres://user:password@host:port/database, optionally with `?schema=NAME` (default public). */
  url: string
  /** The schema holding the tables; wins over the URL's `?schema=`. */
  schema?: string
  /** Connections in the pool (default 10). */
  max?: number
  /** How often the store checks that PostgreSQL answers, so a lost server shows before the next write (ms, default 2000; 0: never). */
  heartbeatMs?: number
}

const SECTION_NAME = /^[a-z][a-z0-9-]*$/
/** Rows read per query when a section's entries are listed. */
const PAGE = 500
/** Rows written per statement by an import. */
const IMPORT_CHUNK = 2000
/** A meta row written and deleted to prove a reconnected store writable. */
const PROBE = '~probe'

/** SQLSTATE classes that mean the engine itself failed: connection, resources, shutdown, system. */
const ENGINE_CLASSES = new Set(['08', '53', '57', '58', 'XX'])

/** True when `e` is a failure of PostgreSQL or of the way to it, not a refusal of one statement. */
export const isEngineFailure = (e: unknown): boolean => {
  if (e instanceof SeqConflictError) return false
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  if (e instanceof postgres.PostgresError) return ENGINE_CLASSES.has(code.slice(0, 2)) || code === '25006'
  // Errors of the connection: the client's own and the socket's (ECONNREFUSED, ECONNRESET...).
  return /^(CONNECTION_[A-Z]+|CONNECT_TIMEOUT|E[A-Z]+)$/.test(code)
}

const describe = (target: PgTarget) => (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code
  const message = e instanceof Error ? e.message.split('\n')[0] : String(e)
  if (e instanceof postgres.PostgresError) return `PostgreSQL at ${target.address} failed: ${message} (${String(code)})`
  return `PostgreSQL unreachable at ${target.address} (${typeof code === 'string' ? code : message})`
}

const connect = (target: PgTarget, max: number) => postgres(target.url, {
  max,
  connect_timeout: 5,
  onnotice: () => {},
  transform: { undefined: null },
  connection: { application_name: `parley ${target.schema}`.slice(0, 63), search_path: target.schema, synchronous_commit: 'on' },
  types: {
    // bigint columns hold sequence numbers, positions, client ids and times: all safe integers.
    bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) }
  }
})

type Sql = ReturnType<typeof connect>
type Tx = postgres.TransactionSql<{ bigint: number }>
type Query = Sql | Tx

/** A Uint8Array view of bytes the client returned (a Buffer), so stored bytes compare as plain arrays. */
const bytesOf = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
const bufferOf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)
const json = (value: unknown): string => JSON.stringify(value) ?? 'null'

/** The last of several writes to one key wins, as in a LevelDB batch. */
const lastByKey = <T>(items: readonly T[], key: (t: T) => string): T[] => [...new Map(items.map(t => [key(t), t])).values()]

const chunks = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** One batch of a migration into an empty store (`importAll`). */
export interface ImportBatch {
  conversations?: ReadonlyArray<{ conv: string, createdAt: number }>
  log?: ReadonlyArray<{ conv: string, seq: number, bytes: Uint8Array }>
  snapshots?: ReadonlyArray<{ conv: string, seq: number, bytes: Uint8Array }>
  archive?: ReadonlyArray<{ conv: string, pos: number, message: Message }>
  clients?: ReadonlyArray<{ conv: string, clientId: number, userId: string }>
  users?: readonly UserRecord[]
  members?: ReadonlyArray<{ user: string, conv: string, joinedAt: number }>
  meta?: ReadonlyArray<{ name: string, value: unknown }>
  sections?: readonly SectionPut[]
}

export class PgStore implements DocStore, ExclusiveLog {
  private sql: Sql
  private readonly target: PgTarget
  private readonly max: number
  private readonly stop: FailStop
  private readonly heartbeat: NodeJS.Timeout | null

  private constructor (sql: Sql, target: PgTarget, options: PgStoreOptions) {
    this.sql = sql
    this.target = target
    this.max = options.max ?? 10
    this.stop = new FailStop(describe(target))
    const every = options.heartbeatMs ?? 2000
    this.heartbeat = every > 0 ? setInterval(() => { void this.read(async sql => await sql`SELECT 1`).catch(() => {}) }, every) : null
    this.heartbeat?.unref()
  }

  /**
   * Connects, creates the schema and its tables or upgrades them (see pg-schema.ts), and
   * returns the store. Rejects when PostgreSQL cannot be reached or the schema is newer than
   * this code.
   */
  static async open (options: PgStoreOptions): Promise<PgStore> {
    const target = parsePgUrl(options.url, options.schema)
    const sql = connect(target, options.max ?? 10)
    try {
      await migrate(sql, target.schema)
    } catch (e) {
      await sql.end({ timeout: 0 })
      if (isEngineFailure(e)) throw new Error(describe(target)(e), { cause: e })
      throw e
    }
    return new PgStore(sql, target, options)
  }

  /** The database, without its password. */
  get location (): string { return this.target.redacted }

  get writeFailure (): WriteFailure | null { return this.stop.failure }

  onWriteFailure (fn: (failure: WriteFailure) => void): void { this.stop.onFailure(fn) }

  /**
   * After a failure: connects anew (a fresh pool) and proves the store writable with a probe
   * transaction; only then drops the old pool. Writes stay refused until `resumeWrites()`.
   */
  async reopen (): Promise<void> {
    const fresh = connect(this.target, this.max)
    try {
      await fresh.begin(async tx => {
        await tx`INSERT INTO meta (name, value) VALUES (${PROBE}, ${json(Date.now())}::text::json) ON CONFLICT (name) DO UPDATE SET value = excluded.value`
        await tx`DELETE FROM meta WHERE name = ${PROBE}`
      })
    } catch (e) {
      await fresh.end({ timeout: 0 })
      throw e
    }
    const old = this.sql
    this.sql = fresh
    await old.end({ timeout: 0 }).catch(() => {})
  }

  resumeWrites (): void { this.stop.resume() }

  async close (): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat)
    await this.sql.end({ timeout: 5 })
  }

  /** Trips the store on an engine failure (then the refusal replaces the error). */
  private failed (e: unknown): unknown {
    if (!isEngineFailure(e)) return e
    this.stop.trip(e)
    return this.stop.refusal()
  }

  /** Runs `fn` in one transaction, refused while the store is failing. */
  private async write<T> (fn: (tx: Tx) => Promise<T>): Promise<T> {
    this.stop.assertWritable()
    try {
      return await this.sql.begin(fn) as T
    } catch (e) {
      throw this.failed(e)
    }
  }

  private async read<T> (fn: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      return await fn(this.sql)
    } catch (e) {
      throw this.failed(e)
    }
  }

  section (name: string): KvSection {
    if (!SECTION_NAME.test(name)) throw new Error(`invalid section name ${name}`)
    return {
      get: async key => await this.read(async sql => {
        const rows = await sql`SELECT value FROM sections WHERE section = ${name} AND key = ${key}`
        return rows.length === 0 ? undefined : rows[0].value as unknown
      }),
      put: async (key, value) => { await this.write(async tx => { await putSections(tx, [{ section: name, key, value }]) }) },
      del: async key => { await this.write(async tx => { await tx`DELETE FROM sections WHERE section = ${name} AND key = ${key}` }) },
      batch: async (ops, with_ = []) => {
        const last = lastByKey(ops, o => o.key)
        const puts = last.flatMap(o => o.type === 'put' ? [{ section: name, key: o.key, value: o.value }] : [])
        const dels = last.flatMap(o => o.type === 'del' ? [o.key] : [])
        if (last.length === 0 && with_.length === 0) return
        await this.write(async tx => {
          if (dels.length > 0) await tx`DELETE FROM sections WHERE section = ${name} AND key = ANY(${dels}::text[])`
          await putSections(tx, [...puts, ...with_])
        })
      },
      entries: range => this.sectionEntries(name, range)
    }
  }

  /**
   * The claims of an outbox section, kept in its rows (columns `next_at` and `claim`, see
   * pg-schema.ts) so that every node sharing the database sees them. A claim sets `claim` to a
   * fresh token and moves `next_at` to the end of the lease, in one transaction that locks the
   * rows it takes and skips those another node is claiming at the same instant (`FOR UPDATE SKIP
   * LOCKED`): two nodes never take one record. A claimant that dies leaves a record that is due
   * again when its lease ends. Settling locks the row and writes only if it still holds this
   * claim's token (fencing): a claimant whose lease ran out while another took the record over
   * writes nothing. A claim does not rewrite the record's value.
   */
  outboxQueue (name: string): OutboxQueue {
    if (!SECTION_NAME.test(name)) throw new Error(`invalid section name ${name}`)
    const take = async (tx: Tx, rows: postgres.RowList<postgres.Row[]>, now: number, leaseMs: number): Promise<OutboxClaim[]> => {
      const claims = rows.map(r => ({ key: r.key as string, value: r.value as unknown, token: randomBytes(8).toString('hex') }))
      if (claims.length === 0) return claims
      await tx`
        UPDATE sections AS s SET next_at = ${now + leaseMs}, claim = t.token FROM unnest(${claims.map(c => c.key)}::text[], ${claims.map(c => c.token)}::text[]) AS t(k, token)
        WHERE s.section = ${name} AND s.key = t.k`
      return claims
    }
    return {
      shared: true,
      claim: async (keys, now, leaseMs) => {
        if (keys.length === 0) return []
        return await this.write(async tx => await take(tx, await tx`
          SELECT key, value FROM sections
          WHERE section = ${name} AND key = ANY(${[...keys]}::text[]) AND next_at <= ${now}
          ORDER BY key FOR UPDATE SKIP LOCKED`, now, leaseMs))
      },
      claimDue: async (prefix, now, limit, leaseMs) => {
        if (limit <= 0) return []
        return await this.write(async tx => await take(tx, await tx`
          SELECT key, value FROM sections
          WHERE section = ${name} AND key >= ${prefix} AND key < ${prefixEnd(prefix)} AND next_at <= ${now}
          ORDER BY key LIMIT ${limit} FOR UPDATE SKIP LOCKED`, now, leaseMs))
      },
      settle: async (claim, ops) => await this.write(async tx => {
        const [row] = await tx`SELECT claim FROM sections WHERE section = ${name} AND key = ${claim.key} FOR UPDATE`
        if (row === undefined || row.claim !== claim.token) return false
        // A put clears the claim and takes its `next_at` from the new value.
        await putSections(tx, ops.map(o => o.type === 'del' ? { section: name, key: o.key, value: null, del: true } : { section: name, key: o.key, value: o.value }))
        return true
      }),
      release: async (claim, now) => {
        await this.write(async tx => {
          await tx`UPDATE sections SET next_at = ${now}, claim = NULL WHERE section = ${name} AND key = ${claim.key} AND claim = ${claim.token}`
        })
      }
    }
  }

  /**
   * Locked changes of a section's keys (pending notification batches of a cluster). The lock is
   * a transaction-level advisory lock on the section and key, so it also serializes changes of a
   * key that does not exist yet (two nodes creating one batch); it is released at commit or
   * rollback, and by PostgreSQL when the node's connection dies.
   */
  lockedSection (name: string): LockedSection {
    if (!SECTION_NAME.test(name)) throw new Error(`invalid section name ${name}`)
    return {
      change: async <R>(key: string, fn: (current: unknown) => Promise<LockedWrite<R>>): Promise<R> => await this.write(async tx => {
        await tx`SELECT pg_advisory_xact_lock(hashtextextended(${`${name}:${key}`}, 0))`
        const rows = await tx`SELECT value FROM sections WHERE section = ${name} AND key = ${key}`
        const w = await fn(rows.length === 0 ? undefined : rows[0].value as unknown)
        const own: SectionPut[] = w.del === true ? [{ section: name, key, value: null, del: true }] : w.put !== undefined ? [{ section: name, key, value: w.put }] : []
        await putSections(tx, [...(w.sections ?? []), ...own])
        return w.result
      }),
      dueKeys: async (prefix, upTo, limit) => await this.read(async sql => {
        const rows = await sql`
          SELECT key FROM sections
          WHERE section = ${name} AND key >= ${prefix} AND key < ${prefixEnd(prefix)} AND next_at <= ${upTo}
          ORDER BY key LIMIT ${limit}`
        return rows.map(r => r.key as string)
      })
    }
  }

  /** A section's entries, read a page at a time (no connection is held between pages). */
  private async * sectionEntries (name: string, range: Parameters<KvSection['entries']>[0]): AsyncIterable<[string, unknown]> {
    let { gt, gte, lt, lte } = range
    const reverse = range.reverse === true
    let left = range.limit ?? Infinity
    while (left > 0) {
      const take = Math.min(PAGE, left)
      const sql = this.sql
      const rows = await this.read(async () => await sql`
        SELECT key, value FROM sections WHERE section = ${name}
        ${gt === undefined ? sql`` : sql`AND key > ${gt}`}
        ${gte === undefined ? sql`` : sql`AND key >= ${gte}`}
        ${lt === undefined ? sql`` : sql`AND key < ${lt}`}
        ${lte === undefined ? sql`` : sql`AND key <= ${lte}`}
        ORDER BY key ${reverse ? sql`DESC` : sql`ASC`} LIMIT ${take}`)
      for (const r of rows) yield [r.key as string, r.value as unknown]
      if (rows.length < take) return
      left -= rows.length
      const lastKey = rows[rows.length - 1].key as string
      if (reverse) { lt = lastKey; lte = undefined } else { gt = lastKey; gte = undefined }
    }
  }

  async loadDoc (conv: string): Promise<StoredDoc> {
    // One statement: one consistent view, even while another node compacts.
    return await this.read(async sql => await readAfter(sql, conv, 0))
  }

  async appendUpdates (conv: string, firstSeq: number, updates: readonly Uint8Array[], with_: AppendWith = {}): Promise<void> {
    const lastSeq = firstSeq + updates.length - 1
    const claimed = await this.write(async tx => {
      if (updates.length > 0) {
        // Takes the conversation's row lock until commit; an append that waited for it sees the
        // new head and is refused.
        const head = await tx`
          INSERT INTO doc_heads (conv, last_seq) VALUES (${conv}, ${lastSeq})
          ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq WHERE doc_heads.last_seq < ${firstSeq}
          RETURNING last_seq`
        if (head.length === 0) return false
        await Promise.all(updates.map(async (u, i) => await tx`INSERT INTO doc_log (conv, seq, bytes) VALUES (${conv}, ${firstSeq + i}, ${bufferOf(u)})`))
      }
      await writeWith(tx, conv, with_)
      return true
    })
    if (claimed) return
    const stored = await this.read(async sql => await sql`
      SELECT seq, bytes FROM doc_log WHERE conv = ${conv} AND seq >= ${firstSeq} AND seq <= ${lastSeq} ORDER BY seq`)
    const same = stored.length === updates.length && stored.every((r, i) => Buffer.compare(r.bytes as Buffer, updates[i]) === 0)
    if (same) return
    const [head] = await this.read(async sql => await sql`SELECT last_seq FROM doc_heads WHERE conv = ${conv}`)
    throw new SeqConflictError(conv, firstSeq, (head?.last_seq as number | undefined) ?? 0)
  }

  async loadDocAfter (conv: string, afterSeq: number): Promise<StoredDoc> {
    return await this.read(async sql => await readAfter(sql, conv, afterSeq))
  }

  async appendExclusive (conv: string, afterSeq: number, build: (caught: CaughtUp) => Promise<{ update: Uint8Array | null, with_: AppendWith }>): Promise<number> {
    return await this.write(async tx => {
      // The conversation's row lock, held until commit: one writer at a time per conversation.
      const created = await tx`INSERT INTO doc_heads (conv, last_seq) VALUES (${conv}, 0) ON CONFLICT (conv) DO NOTHING RETURNING conv`
      // No head, but the caller's copy has entries: another node deleted the conversation (the
      // rollback removes the head made here).
      if (created.length > 0 && afterSeq > 0) throw new ChatError('CONVERSATION_DELETED')
      const [head] = await tx`SELECT last_seq FROM doc_heads WHERE conv = ${conv} FOR UPDATE`
      const headSeq = head.last_seq as number
      if (headSeq < afterSeq) throw new SeqConflictError(conv, afterSeq + 1, headSeq)
      const stored = await readAfter(tx, conv, afterSeq)
      const { update, with_ } = await build({
        stored,
        ownersOf: async ids => {
          if (ids.length === 0) return new Map()
          const rows = await tx`SELECT client_id, user_id FROM client_owners WHERE conv = ${conv} AND client_id = ANY(${[...ids]}::int8[])`
          return new Map(rows.map(r => [r.client_id as number, r.user_id as string]))
        },
        archivePosOf: async messageId => {
          const rows = await tx`SELECT pos FROM archive WHERE conv = ${conv} AND message_id = ${messageId} ORDER BY pos DESC LIMIT 1`
          return rows.length === 0 ? undefined : rows[0].pos as number
        },
        archivePositionsOf: async messageIds => {
          if (messageIds.length === 0) return new Map()
          const rows = await tx`SELECT message_id, max(pos) AS pos FROM archive WHERE conv = ${conv} AND message_id = ANY(${[...messageIds]}::text[]) GROUP BY message_id`
          return new Map(rows.map(r => [r.message_id as string, Number(r.pos)]))
        }
      })
      let last = headSeq
      if (update !== null) {
        last = headSeq + 1
        await tx`UPDATE doc_heads SET last_seq = ${last} WHERE conv = ${conv}`
        await tx`INSERT INTO doc_log (conv, seq, bytes) VALUES (${conv}, ${last}, ${bufferOf(update)})`
      }
      await writeWith(tx, conv, with_)
      return last
    })
  }

  async readArchive (conv: string, beforePos: number | null, limit: number): Promise<{ messages: ArchivedMessage[], hasMore: boolean }> {
    const rows = await this.read(async sql => await sql`
      SELECT pos, message FROM archive WHERE conv = ${conv} AND pos < ${beforePos ?? Number.MAX_SAFE_INTEGER}
      ORDER BY pos DESC LIMIT ${limit + 1}`)
    const out = rows.map(r => ({ pos: r.pos as number, message: r.message as Message }))
    return { messages: out.slice(0, limit).reverse(), hasMore: out.length > limit }
  }

  async archivePosOf (conv: string, messageId: string): Promise<number | undefined> {
    const rows = await this.read(async sql => await sql`SELECT pos FROM archive WHERE conv = ${conv} AND message_id = ${messageId} ORDER BY pos DESC LIMIT 1`)
    return rows.length === 0 ? undefined : rows[0].pos as number
  }

  async updateArchived (conv: string, pos: number, message: Message | null, sections: readonly SectionPut[] = []): Promise<void> {
    await this.write(async tx => {
      const found = message === null
        ? await tx`DELETE FROM archive WHERE conv = ${conv} AND pos = ${pos} RETURNING pos`
        : await tx`UPDATE archive SET message = ${json(message)}::text::json, message_id = ${message.id} WHERE conv = ${conv} AND pos = ${pos} RETURNING pos`
      // Like LevelStore: nothing happens (no webhook either) for a position that is not archived.
      if (found.length > 0) await putSections(tx, sections)
    })
  }

  async compact (conv: string, seq: number, snapshot: Uint8Array): Promise<void> {
    await this.write(async tx => {
      // A snapshot never replaces a newer one (another node may have compacted further).
      await tx`
        INSERT INTO doc_snapshots (conv, seq, bytes) VALUES (${conv}, ${seq}, ${bufferOf(snapshot)})
        ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes WHERE doc_snapshots.seq <= excluded.seq`
      await tx`DELETE FROM doc_log WHERE conv = ${conv} AND seq <= ${seq}`
      await tx`
        INSERT INTO doc_heads (conv, last_seq) VALUES (${conv}, ${seq})
        ON CONFLICT (conv) DO UPDATE SET last_seq = GREATEST(doc_heads.last_seq, excluded.last_seq)`
    })
  }

  async loadClientOwners (conv: string): Promise<Map<number, string>> {
    const rows = await this.read(async sql => await sql`SELECT client_id, user_id FROM client_owners WHERE conv = ${conv}`)
    return new Map(rows.map(r => [r.client_id as number, r.user_id as string]))
  }

  async bindClients (conv: string, userId: string, clientIds: readonly number[]): Promise<void> {
    if (clientIds.length === 0) return
    await this.write(async tx => { await putClients(tx, clientIds.map(clientId => ({ conv, clientId, userId }))) })
  }

  async conversationExists (conv: string): Promise<boolean> {
    const rows = await this.read(async sql => await sql`SELECT 1 FROM conversations WHERE conv = ${conv}`)
    return rows.length > 0
  }

  async createConversation (conv: string, createdAt: number): Promise<void> {
    await this.write(async tx => {
      await tx`INSERT INTO conversations (conv, created_at) VALUES (${conv}, ${createdAt}) ON CONFLICT (conv) DO UPDATE SET created_at = excluded.created_at`
    })
  }

  async deleteConversation (conv: string, members: readonly string[], sections: readonly SectionPut[] = []): Promise<void> {
    await this.write(async tx => {
      await tx`DELETE FROM doc_log WHERE conv = ${conv}`
      await tx`DELETE FROM doc_snapshots WHERE conv = ${conv}`
      await tx`DELETE FROM doc_heads WHERE conv = ${conv}`
      await tx`DELETE FROM archive WHERE conv = ${conv}`
      await tx`DELETE FROM client_owners WHERE conv = ${conv}`
      if (members.length > 0) await tx`DELETE FROM memberships WHERE conv = ${conv} AND user_id = ANY(${[...members]}::text[])`
      await tx`DELETE FROM conversations WHERE conv = ${conv}`
      await putSections(tx, sections)
    })
  }

  async getUser (user: string): Promise<UserRecord | undefined> {
    const rows = await this.read(async sql => await sql`SELECT record FROM users WHERE id = ${user}`)
    return rows.length === 0 ? undefined : rows[0].record as UserRecord
  }

  async putUser (record: UserRecord, sections: readonly SectionPut[] = []): Promise<void> {
    await this.write(async tx => {
      await putUsers(tx, [record])
      await putSections(tx, sections)
    })
  }

  async setMember (user: string, conv: string, joinedAt: number | null): Promise<void> {
    await this.write(async tx => {
      if (joinedAt === null) await tx`DELETE FROM memberships WHERE user_id = ${user} AND conv = ${conv}`
      else await putMembers(tx, [{ user, conv, joinedAt }])
    })
  }

  async listMemberships (user: string): Promise<Array<{ conv: string, joinedAt: number }>> {
    const rows = await this.read(async sql => await sql`SELECT conv, joined_at FROM memberships WHERE user_id = ${user} ORDER BY conv`)
    return rows.map(r => ({ conv: r.conv as string, joinedAt: r.joined_at as number }))
  }

  async getSettings (): Promise<Record<string, unknown> | undefined> {
    return await this.getMeta('settings') as Record<string, unknown> | undefined
  }

  async putSettings (settings: Record<string, unknown>): Promise<void> {
    await this.write(async tx => { await putMeta(tx, [{ name: 'settings', value: settings }]) })
  }

  private async getMeta (name: string): Promise<unknown> {
    const rows = await this.read(async sql => await sql`SELECT value FROM meta WHERE name = ${name}`)
    return rows.length === 0 ? undefined : rows[0].value as unknown
  }

  /**
   * The app secret kept in the database: the one stored, or `fresh` stored now. Nodes starting
   * together agree (the first insert wins).
   */
  async loadOrCreateSecret (fresh: string): Promise<string> {
    return await this.loadOrCreateMeta('secret', fresh)
  }

  /**
   * The cluster's id (meta row `cluster`), made once by the first node: it names the cluster's
   * channels on Redis, so clusters (or test runs) sharing a Redis never hear each other.
   */
  async loadOrCreateClusterId (fresh: string): Promise<string> {
    return await this.loadOrCreateMeta('cluster', fresh)
  }

  /** A meta row's text, written with `fresh` when it is missing (the first writer wins). */
  private async loadOrCreateMeta (name: string, fresh: string): Promise<string> {
    await this.write(async tx => { await tx`INSERT INTO meta (name, value) VALUES (${name}, ${json(fresh)}::text::json) ON CONFLICT (name) DO NOTHING` })
    const stored = await this.getMeta(name)
    if (typeof stored !== 'string') throw new Error(`the ${name} stored in PostgreSQL is not a string`)
    return stored
  }

  /** The data tables that hold rows (empty when the store is empty), for migrations. */
  async nonEmptyTables (): Promise<string[]> {
    const out: string[] = []
    for (const table of DATA_TABLES) {
      const rows = await this.read(async sql => await sql`SELECT 1 FROM ${sql(table)} LIMIT 1`)
      if (rows.length > 0) out.push(table)
    }
    return out
  }

  /**
   * Writes a migration (into an empty store), all batches in one transaction: it is all there
   * or none of it is. Then sets each document's head and drops log entries a snapshot covers.
   */
  async importAll (batches: AsyncIterable<ImportBatch>): Promise<void> {
    await this.write(async tx => {
      for await (const batch of batches) await importBatch(tx, batch)
      await tx`DELETE FROM doc_log l USING doc_snapshots s WHERE l.conv = s.conv AND l.seq <= s.seq`
      await tx`
        INSERT INTO doc_heads (conv, last_seq)
        SELECT conv, max(seq) FROM (SELECT conv, seq FROM doc_log UNION ALL SELECT conv, seq FROM doc_snapshots) AS entries GROUP BY conv
        ON CONFLICT (conv) DO UPDATE SET last_seq = GREATEST(doc_heads.last_seq, excluded.last_seq)`
    })
  }
}

const importBatch = async (tx: Tx, batch: ImportBatch): Promise<void> => {
  for (const part of chunks(batch.conversations ?? [], IMPORT_CHUNK)) {
    await tx`
      INSERT INTO conversations (conv, created_at) SELECT * FROM unnest(${part.map(c => c.conv)}::text[], ${part.map(c => c.createdAt)}::int8[])
      ON CONFLICT (conv) DO UPDATE SET created_at = excluded.created_at`
  }
  // Pipelined on the transaction's connection.
  await Promise.all((batch.log ?? []).map(async r => await tx`
    INSERT INTO doc_log (conv, seq, bytes) VALUES (${r.conv}, ${r.seq}, ${bufferOf(r.bytes)}) ON CONFLICT (conv, seq) DO UPDATE SET bytes = excluded.bytes`))
  for (const r of batch.snapshots ?? []) {
    // Of several snapshots (an interrupted compaction), the newest counts, as in LevelStore.
    await tx`
      INSERT INTO doc_snapshots (conv, seq, bytes) VALUES (${r.conv}, ${r.seq}, ${bufferOf(r.bytes)})
      ON CONFLICT (conv) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes WHERE doc_snapshots.seq <= excluded.seq`
  }
  await putArchive(tx, batch.archive ?? [])
  await putClients(tx, batch.clients ?? [])
  await putUsers(tx, batch.users ?? [])
  await putMembers(tx, batch.members ?? [])
  await putMeta(tx, batch.meta ?? [])
  await putSections(tx, batch.sections ?? [])
}

/**
 * Creates the schema if needed and applies the missing migrations of one set of tables (its
 * versions kept in `versionTable`), once, under the schema's advisory lock: nodes, and the
 * stores of one node, starting together migrate one at a time. `check` runs last, in the same
 * transaction. Refuses tables a newer Parley wrote (`what`: their name and verb, for the message).
 */
export const migrateSchema = async (
  sql: postgres.Sql<{ bigint: number }>, schema: string,
  set: { versionTable: string, migrations: readonly Migration[], what: string },
  check: (tx: Tx) => Promise<void> = async () => {}
): Promise<void> => {
  const latest = set.migrations[set.migrations.length - 1].version
  await sql.begin(async tx => {
    await tx`SELECT pg_advisory_xact_lock(hashtext(${`parley-migrate:${schema}`}))`
    // Created only when missing: a user may own a schema made for it without the right to create one.
    const present = await tx`SELECT 1 FROM pg_namespace WHERE nspname = ${schema}`
    if (present.length === 0) await tx`CREATE SCHEMA ${tx(schema)}`
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${set.versionTable} (version integer PRIMARY KEY, applied_at bigint NOT NULL)`)
    const [{ version }] = await tx.unsafe(`SELECT COALESCE(MAX(version), 0) AS version FROM ${set.versionTable}`)
    if ((version as number) > latest) {
      throw new Error(`${set.what} at version ${String(version)}, written by a newer Parley; this one knows up to ${latest}`)
    }
    for (const m of set.migrations) {
      if (m.version <= (version as number)) continue
      for (const statement of m.statements) await tx.unsafe(statement)
      await tx.unsafe(`INSERT INTO ${set.versionTable} (version, applied_at) VALUES ($1, $2)`, [m.version, Date.now()])
    }
    await check(tx)
  })
}

/** Creates the schema and applies the missing migrations of the store's tables. */
const migrate = async (sql: Sql, schema: string): Promise<void> => {
  await migrateSchema(sql, schema, { versionTable: 'schema_version', migrations: MIGRATIONS, what: `the PostgreSQL schema ${schema} is` }, async tx => {
    // Set for every connection at its start (see connect); a commit must be durable when it returns.
    const [{ synchronous_commit: sync }] = await tx`SHOW synchronous_commit`
    if (sync === 'off') throw new Error('synchronous_commit is off for Parley\'s connections; it must be on')
  })
}

/** Writes what an append carries besides its entries (`AppendWith`), in the append's transaction. */
const writeWith = async (tx: Tx, conv: string, with_: AppendWith): Promise<void> => {
  const { archive = [], archiveDeletes = [], bindings = [], sections = [], conversation, members = [] } = with_
  await putArchive(tx, archive.map(a => ({ conv, ...a })))
  if (archiveDeletes.length > 0) await tx`DELETE FROM archive WHERE conv = ${conv} AND pos = ANY(${archiveDeletes.map(a => a.pos)}::int8[])`
  await putClients(tx, bindings.flatMap(b => b.clientIds.map(clientId => ({ conv, clientId, userId: b.userId }))))
  if (conversation !== undefined) {
    await tx`INSERT INTO conversations (conv, created_at) VALUES (${conv}, ${conversation.createdAt}) ON CONFLICT (conv) DO UPDATE SET created_at = excluded.created_at`
  }
  const leaving = members.filter(m => m.joinedAt === null).map(m => m.userId)
  if (leaving.length > 0) await tx`DELETE FROM memberships WHERE conv = ${conv} AND user_id = ANY(${leaving}::text[])`
  await putMembers(tx, members.flatMap(m => m.joinedAt === null ? [] : [{ user: m.userId, conv, joinedAt: m.joinedAt }]))
  await putSections(tx, sections)
}

/** Stored after entry `afterSeq` (see `DocStore.loadDocAfter`), in one statement. */
const readAfter = async (q: Query, conv: string, afterSeq: number): Promise<StoredDoc> => {
  const rows = await q`
    SELECT 0 AS kind, seq, bytes FROM doc_snapshots WHERE conv = ${conv} AND seq > ${afterSeq}
    UNION ALL
    SELECT 1 AS kind, seq, bytes FROM doc_log
      WHERE conv = ${conv} AND seq > GREATEST(${afterSeq}::int8, COALESCE((SELECT seq FROM doc_snapshots WHERE conv = ${conv}), 0))
    ORDER BY kind, seq`
  let snapshot: Uint8Array | null = null
  let snapshotSeq = 0
  const updates: Uint8Array[] = []
  let lastSeq = afterSeq
  for (const r of rows) {
    if (r.kind === 0) {
      snapshot = bytesOf(r.bytes as Buffer)
      snapshotSeq = r.seq as number
    } else {
      updates.push(bytesOf(r.bytes as Buffer))
    }
    lastSeq = r.seq as number
  }
  return { snapshot, snapshotSeq, updates, lastSeq }
}

const putArchive = async (tx: Query, rows: ReadonlyArray<{ conv: string, pos: number, message: Message }>): Promise<void> => {
  for (const part of chunks(lastByKey(rows, r => `${r.conv}\n${r.pos}`), IMPORT_CHUNK)) {
    await tx`
      INSERT INTO archive (conv, pos, message_id, message)
      SELECT c, p, i, m::json FROM unnest(${part.map(r => r.conv)}::text[], ${part.map(r => r.pos)}::int8[], ${part.map(r => r.message.id)}::text[], ${part.map(r => json(r.message))}::text[]) AS t(c, p, i, m)
      ON CONFLICT (conv, pos) DO UPDATE SET message_id = excluded.message_id, message = excluded.message`
  }
}

const putClients = async (tx: Query, rows: ReadonlyArray<{ conv: string, clientId: number, userId: string }>): Promise<void> => {
  for (const part of chunks(lastByKey(rows, r => `${r.conv}\n${r.clientId}`), IMPORT_CHUNK)) {
    await tx`
      INSERT INTO client_owners (conv, client_id, user_id)
      SELECT * FROM unnest(${part.map(r => r.conv)}::text[], ${part.map(r => r.clientId)}::int8[], ${part.map(r => r.userId)}::text[])
      ON CONFLICT (conv, client_id) DO UPDATE SET user_id = excluded.user_id`
  }
}

const putUsers = async (tx: Query, rows: readonly UserRecord[]): Promise<void> => {
  for (const part of chunks(lastByKey(rows, r => r.id), IMPORT_CHUNK)) {
    await tx`
      INSERT INTO users (id, record) SELECT i, r::json FROM unnest(${part.map(r => r.id)}::text[], ${part.map(r => json(r))}::text[]) AS t(i, r)
      ON CONFLICT (id) DO UPDATE SET record = excluded.record`
  }
}

const putMembers = async (tx: Query, rows: ReadonlyArray<{ user: string, conv: string, joinedAt: number }>): Promise<void> => {
  for (const part of chunks(lastByKey(rows, r => `${r.user}\n${r.conv}`), IMPORT_CHUNK)) {
    await tx`
      INSERT INTO memberships (user_id, conv, joined_at)
      SELECT * FROM unnest(${part.map(r => r.user)}::text[], ${part.map(r => r.conv)}::text[], ${part.map(r => r.joinedAt)}::int8[])
      ON CONFLICT (user_id, conv) DO UPDATE SET joined_at = excluded.joined_at`
  }
}

const putMeta = async (tx: Query, rows: ReadonlyArray<{ name: string, value: unknown }>): Promise<void> => {
  for (const r of lastByKey(rows, r => r.name)) {
    await tx`INSERT INTO meta (name, value) VALUES (${r.name}, ${json(r.value)}::text::json) ON CONFLICT (name) DO UPDATE SET value = excluded.value`
  }
}

/** The first key after every key starting with `prefix` (its last character is ASCII, as in every prefix the server uses). */
const prefixEnd = (prefix: string): string => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)

/** A section value's `nextAt` (when an outbox record or a notification batch is due), kept in the column `next_at`. */
const nextAtOf = (value: unknown): number | null => {
  const n = (value as { nextAt?: unknown } | null)?.nextAt
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof n === 'number' && Number.isFinite(n) ? n : null
}

const putSections = async (tx: Query, writes: readonly SectionPut[]): Promise<void> => {
  // The last write of a key wins, whether it puts or deletes it.
  const last = lastByKey(writes, p => `${p.section}\n${p.key}`)
  for (const p of last) if (!SECTION_NAME.test(p.section)) throw new Error(`invalid section name ${p.section}`)
  const dels = last.filter(p => p.del === true)
  for (const part of chunks(dels, IMPORT_CHUNK)) {
    await tx`
      DELETE FROM sections AS s USING unnest(${part.map(p => p.section)}::text[], ${part.map(p => p.key)}::text[]) AS t(sec, k)
      WHERE s.section = t.sec AND s.key = t.k`
  }
  const puts = last.filter(p => p.del !== true)
  for (const p of puts) checkSectionValue(p.value)
  for (const part of chunks(puts, IMPORT_CHUNK)) {
    await tx`
      INSERT INTO sections (section, key, value, next_at, claim)
      SELECT s, k, v::json, n, NULL FROM unnest(${part.map(p => p.section)}::text[], ${part.map(p => p.key)}::text[], ${part.map(p => json(p.value))}::text[], ${part.map(p => nextAtOf(p.value))}::float8[]) AS t(s, k, v, n)
      ON CONFLICT (section, key) DO UPDATE SET value = excluded.value, next_at = excluded.next_at, claim = NULL`
  }
}
