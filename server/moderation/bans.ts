/**
 * Bans per conversation (contract §6, v1.1), kept durably in the store section `bans` under
 * `<conversationId>/<userId>` (a guest never appears in the document, so bans cannot live
 * there). Ids never contain `/`, so one conversation's bans are the key range
 * `<conv>/` .. `<conv>0`.
 *
 * A conversation's bans are read once into memory on first use and then answered
 * synchronously, so the sync endpoint can decide admission and attach the connection in one
 * step: a ban written meanwhile is either seen by that check or closes the attached connection.
 * A ban whose `until` has passed no longer counts and is no longer listed. Conversations with
 * bans stay in memory; those without are forgotten past `MAX_EMPTY_CACHED` (any user token can
 * name any conversation id), which is safe: forgotten means "no bans", and a ban written later
 * puts its conversation back.
 */
import type { KvSection, SectionPut } from '../storage/port.ts'

export interface Ban {
  userId: string
  reason: string | null
  /** Milliseconds since the epoch when the ban ends by itself; null: until lifted. */
  until: number | null
  createdAt: number
  /** Who banned: a moderator's user id, or null for admin credentials. */
  by: string | null
}

export const BANS_SECTION = 'bans'

/** Conversations without bans kept in memory at most (oldest forgotten first). */
const MAX_EMPTY_CACHED = 10_000

const isBan = (v: unknown): v is Ban =>
  typeof v === 'object' && v !== null && typeof (v as Ban).userId === 'string' && typeof (v as Ban).createdAt === 'number'

export class BanList {
  private readonly section: KvSection
  private readonly now: () => number
  /** Conversations known to have bans (or to have had some since they were read). */
  private readonly withBans = new Map<string, Map<string, Ban>>()
  /** Conversations read and found without bans, oldest first, at most MAX_EMPTY_CACHED. */
  private readonly withoutBans = new Set<string>()
  private readonly loading = new Map<string, Promise<void>>()

  private readonly onChanged: (conv: string) => void

  /** `onChanged`: after a conversation's bans changed (the other nodes of a cluster forget theirs). */
  constructor (section: KvSection, now: () => number, onChanged: (conv: string) => void = () => {}) {
    this.section = section
    this.now = now
    this.onChanged = onChanged
  }

  /** Drops what memory holds of a conversation's bans (another node changed them): the next check reads them again. */
  forget (conv: string): void {
    this.withBans.delete(conv)
    this.withoutBans.delete(conv)
  }

  /** Drops what memory holds of every conversation's bans (a cluster node checking the store after lost messages). */
  forgetAll (): void {
    this.withBans.clear()
    this.withoutBans.clear()
  }

  /** Reads a conversation's bans into memory (once); `activeBan` answers from there. */
  async load (conv: string): Promise<void> {
    if (this.withBans.has(conv) || this.withoutBans.has(conv)) return
    let p = this.loading.get(conv)
    if (p === undefined) {
      p = this.read(conv).finally(() => this.loading.delete(conv))
      this.loading.set(conv, p)
    }
    await p
  }

  /**
   * The ban in force for `userId`, answered from memory: call `load(conv)` first (otherwise a
   * conversation not read yet answers as having no bans).
   */
  activeBan (conv: string, userId: string): Ban | undefined {
    const ban = this.withBans.get(conv)?.get(userId)
    return ban !== undefined && this.inForce(ban) ? ban : undefined
  }

  /** Loads, then answers `activeBan`. */
  async find (conv: string, userId: string): Promise<Ban | undefined> {
    await this.load(conv)
    return this.activeBan(conv, userId)
  }

  /** The bans in force, oldest first. */
  async list (conv: string): Promise<Ban[]> {
    await this.load(conv)
    const bans = this.withBans.get(conv)
    return bans === undefined ? [] : [...bans.values()].filter(b => this.inForce(b)).sort((a, b) => a.createdAt - b.createdAt)
  }

  /**
   * Writes (or replaces) a ban, with `with_` (its webhook outbox entries) in the same batch; in
   * memory once it is durable.
   */
  async put (conv: string, ban: Ban, with_: readonly SectionPut[] = []): Promise<void> {
    await this.load(conv)
    await this.section.batch([{ type: 'put', key: `${conv}/${ban.userId}`, value: ban }], with_)
    let bans = this.withBans.get(conv)
    if (bans === undefined) this.withBans.set(conv, bans = new Map())
    this.withoutBans.delete(conv)
    bans.set(ban.userId, ban)
    this.onChanged(conv)
  }

  /** Lifts a ban, with `with_` in the same batch. */
  async lift (conv: string, userId: string, with_: readonly SectionPut[] = []): Promise<void> {
    await this.section.batch([{ type: 'del', key: `${conv}/${userId}` }], with_)
    this.withBans.get(conv)?.delete(userId)
    this.onChanged(conv)
  }

  /** Removes every ban of a conversation (it was deleted). */
  async deleteAll (conv: string): Promise<void> {
    const ops: Array<{ type: 'del', key: string }> = []
    for await (const [key] of this.section.entries({ gte: `${conv}/`, lt: `${conv}0` })) ops.push({ type: 'del', key })
    if (ops.length > 0) await this.section.batch(ops)
    this.withBans.delete(conv)
    this.withoutBans.delete(conv)
  }

  private async read (conv: string): Promise<void> {
    const bans = new Map<string, Ban>()
    for await (const [, value] of this.section.entries({ gte: `${conv}/`, lt: `${conv}0` })) {
      if (isBan(value)) bans.set(value.userId, value)
    }
    if (this.withBans.has(conv)) return // a ban was written meanwhile: memory already has it
    if (bans.size > 0) {
      this.withBans.set(conv, bans)
      return
    }
    this.withoutBans.add(conv)
    if (this.withoutBans.size > MAX_EMPTY_CACHED) {
      for (const old of this.withoutBans) { this.withoutBans.delete(old); break }
    }
  }

  private inForce (ban: Ban): boolean {
    return ban.until === null || ban.until > this.now()
  }
}
