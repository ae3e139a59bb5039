/**
 * Bans per conversation (contract §6, v1.1), kept durably in the store section `bans` under
 * `<conversationId>/<userId>` (a guest never appears in the document, so bans cannot live
 * there). Ids never contain `/`, so one conversation's bans are the key range
 * `<conv>/` .. `<conv>0`.
 *
 * A conversation's bans are read once into memory on first use and then answered
 * synchronously, so the sync endpoint can decide admission and attach the connection in one
 * step: a ban written meanwhile is either seen by that check or closes the attached connection.
 * A ban whose `until` has passed no longer counts and is no longer listed.
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

const isBan = (v: unknown): v is Ban =>
  typeof v === 'object' && v !== null && typeof (v as Ban).userId === 'string' && typeof (v as Ban).createdAt === 'number'

export class BanList {
  private readonly section: KvSection
  private readonly now: () => number
  private readonly loaded = new Map<string, Map<string, Ban>>()
  private readonly loading = new Map<string, Promise<Map<string, Ban>>>()

  constructor (section: KvSection, now: () => number) {
    this.section = section
    this.now = now
  }

  /** Reads a conversation's bans into memory (once); `activeBan` answers from there. */
  async load (conv: string): Promise<void> {
    await this.bansOf(conv)
  }

  /**
   * The ban in force for `userId`, answered from memory: call `load(conv)` first (otherwise a
   * conversation not loaded yet answers as having no bans).
   */
  activeBan (conv: string, userId: string): Ban | undefined {
    const ban = this.loaded.get(conv)?.get(userId)
    return ban !== undefined && this.inForce(ban) ? ban : undefined
  }

  /** Loads, then answers `activeBan`. */
  async find (conv: string, userId: string): Promise<Ban | undefined> {
    await this.load(conv)
    return this.activeBan(conv, userId)
  }

  /** The bans in force, oldest first. */
  async list (conv: string): Promise<Ban[]> {
    const bans = await this.bansOf(conv)
    return [...bans.values()].filter(b => this.inForce(b)).sort((a, b) => a.createdAt - b.createdAt)
  }

  /**
   * Writes (or replaces) a ban, with `with_` (its webhook outbox entries) in the same batch; in
   * memory once it is durable.
   */
  async put (conv: string, ban: Ban, with_: readonly SectionPut[] = []): Promise<void> {
    const bans = await this.bansOf(conv)
    await this.section.batch([{ type: 'put', key: `${conv}/${ban.userId}`, value: ban }], with_)
    bans.set(ban.userId, ban)
  }

  /** Lifts a ban, with `with_` in the same batch. */
  async lift (conv: string, userId: string, with_: readonly SectionPut[] = []): Promise<void> {
    const bans = await this.bansOf(conv)
    await this.section.batch([{ type: 'del', key: `${conv}/${userId}` }], with_)
    bans.delete(userId)
  }

  /** Removes every ban of a conversation (it was deleted). */
  async deleteAll (conv: string): Promise<void> {
    const ops: Array<{ type: 'del', key: string }> = []
    for await (const [key] of this.section.entries({ gte: `${conv}/`, lt: `${conv}0` })) ops.push({ type: 'del', key })
    if (ops.length > 0) await this.section.batch(ops)
    this.loaded.delete(conv)
  }

  private inForce (ban: Ban): boolean {
    return ban.until === null || ban.until > this.now()
  }

  private async bansOf (conv: string): Promise<Map<string, Ban>> {
    const done = this.loaded.get(conv)
    if (done !== undefined) return done
    let p = this.loading.get(conv)
    if (p === undefined) {
      p = (async () => {
        const out = new Map<string, Ban>()
        for await (const [, value] of this.section.entries({ gte: `${conv}/`, lt: `${conv}0` })) {
          if (isBan(value)) out.set(value.userId, value)
        }
        return out
      })()
      this.loading.set(conv, p)
      p.then(m => { this.loaded.set(conv, m) }, () => {}).finally(() => this.loading.delete(conv))
    }
    return await p
  }
}
