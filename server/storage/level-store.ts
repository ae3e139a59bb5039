/**
 * The DocStore on LevelDB (`level` 10). Layout in `keys.ts`. Every write either completes or
 * rejects: no error is swallowed, so the server never forwards an update that is not on disk.
 * Writes of different conversations go straight to LevelDB; there is no global queue.
 */
import { Level } from 'level'
import * as keys from './keys.ts'
import type { Message } from '../../shared/schema.ts'
import type { AppendWith, ArchivedMessage, DocStore, KvSection, SectionPut, StoredDoc, UserRecord } from './port.ts'

type BinLevel = ReturnType<LevelStore['makeBin']>
type JsonLevel = ReturnType<LevelStore['makeJson']>

export class LevelStore implements DocStore {
  private readonly db: Level<string, string>
  private readonly bin: BinLevel
  private readonly json: JsonLevel

  private constructor (db: Level<string, string>) {
    this.db = db
    this.bin = this.makeBin()
    this.json = this.makeJson()
  }

  private makeBin () {
    return this.db.sublevel<string, Uint8Array>('bin', { valueEncoding: 'view' })
  }

  private makeJson () {
    return this.db.sublevel<string, unknown>('json', { valueEncoding: 'json' })
  }

  /** Opens (creating if needed) the LevelDB folder at `path`. Rejects when it is unusable. */
  static async open (path: string): Promise<LevelStore> {
    const db = new Level<string, string>(path)
    await db.open()
    return new LevelStore(db)
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
      put: async (key, value) => { await sub.put(key, value) },
      del: async key => { await sub.del(key) },
      batch: async ops => { await sub.batch(ops.map(o => ({ ...o }))) },
      entries: range => sub.iterator(range)
    }
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

  async appendUpdates (conv: string, firstSeq: number, updates: readonly Uint8Array[], with_: AppendWith = {}): Promise<void> {
    const { archive = [], bindings = [], sections = [], conversation, members = [] } = with_
    if (archive.length === 0 && bindings.length === 0 && sections.length === 0 && conversation === undefined && members.length === 0) {
      // The common case: a plain batch on one sublevel is markedly cheaper than a chained one.
      if (updates.length > 0) await this.bin.batch(updates.map((value, i) => ({ type: 'put' as const, key: keys.logKey(conv, firstSeq + i), value })))
      return
    }
    const batch = this.db.batch()
    updates.forEach((value, i) => batch.put(keys.logKey(conv, firstSeq + i), value, { sublevel: this.bin }))
    for (const a of archive) {
      batch.put(keys.archiveKey(conv, a.pos), a.message, { sublevel: this.json })
      batch.put(keys.archiveIdKey(conv, a.message.id), a.pos, { sublevel: this.json })
    }
    for (const b of bindings) for (const id of b.clientIds) batch.put(keys.clientKey(conv, id), b.userId, { sublevel: this.json })
    if (conversation !== undefined) batch.put(keys.convKey(conv), { createdAt: conversation.createdAt }, { sublevel: this.json })
    for (const m of members) {
      if (m.joinedAt === null) batch.del(keys.memberKey(m.userId, conv), { sublevel: this.json })
      else batch.put(keys.memberKey(m.userId, conv), { joinedAt: m.joinedAt }, { sublevel: this.json })
    }
    this.putSections(batch, sections)
    if (batch.length === 0) {
      await batch.close()
      return
    }
    await batch.write()
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
    const batch = this.db.batch()
    if (message === null) {
      batch.del(keys.archiveKey(conv, pos), { sublevel: this.json })
      batch.del(keys.archiveIdKey(conv, old.id), { sublevel: this.json })
    } else {
      batch.put(keys.archiveKey(conv, pos), message, { sublevel: this.json })
    }
    this.putSections(batch, sections)
    await batch.write()
  }

  async compact (conv: string, seq: number, snapshot: Uint8Array): Promise<void> {
    const stale: string[] = []
    for await (const key of this.bin.keys(keys.prefixRange(keys.snapPrefix(conv)))) stale.push(key)
    for await (const key of this.bin.keys({ gte: keys.logPrefix(conv), lte: keys.logKey(conv, seq) })) stale.push(key)
    await this.bin.batch([
      ...stale.filter(k => k !== keys.snapKey(conv, seq)).map(key => ({ type: 'del' as const, key })),
      { type: 'put' as const, key: keys.snapKey(conv, seq), value: snapshot }
    ])
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
    if (clientIds.length === 0) return
    await this.json.batch(clientIds.map(id => ({ type: 'put' as const, key: keys.clientKey(conv, id), value: userId })))
  }

  async conversationExists (conv: string): Promise<boolean> {
    return (await this.json.get(keys.convKey(conv))) !== undefined
  }

  async createConversation (conv: string, createdAt: number): Promise<void> {
    await this.json.put(keys.convKey(conv), { createdAt })
  }

  async deleteConversation (conv: string, members: readonly string[], sections: readonly SectionPut[] = []): Promise<void> {
    // The document first and the record last: a crash half-way leaves a conversation that
    // exists with less data, never data that outlives its conversation.
    await this.bin.clear(keys.prefixRange(keys.docPrefix(conv)))
    await this.json.clear(keys.prefixRange(keys.clientPrefix(conv)))
    await this.json.clear(keys.prefixRange(keys.archivePrefix(conv)))
    await this.json.clear(keys.prefixRange(keys.archiveIdPrefix(conv)))
    const batch = this.db.batch()
    for (const user of members) batch.del(keys.memberKey(user, conv), { sublevel: this.json })
    batch.del(keys.convKey(conv), { sublevel: this.json })
    this.putSections(batch, sections)
    await batch.write()
  }

  private putSections (batch: ReturnType<Level<string, string>['batch']>, sections: readonly SectionPut[]): void {
    for (const p of sections) batch.put(p.key, p.value, { sublevel: this.sectionLevel(p.section) })
  }

  async getUser (user: string): Promise<UserRecord | undefined> {
    return (await this.json.get(keys.userKey(user))) as UserRecord | undefined
  }

  async putUser (record: UserRecord, sections: readonly SectionPut[] = []): Promise<void> {
    if (sections.length === 0) {
      await this.json.put(keys.userKey(record.id), record)
      return
    }
    const batch = this.db.batch()
    batch.put(keys.userKey(record.id), record, { sublevel: this.json })
    this.putSections(batch, sections)
    await batch.write()
  }

  async setMember (user: string, conv: string, joinedAt: number | null): Promise<void> {
    if (joinedAt === null) await this.json.del(keys.memberKey(user, conv))
    else await this.json.put(keys.memberKey(user, conv), { joinedAt })
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
    await this.json.put(keys.settingsKey(), settings)
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
