/**
 * The OutboxQueue of a store one process owns (LevelStore): records stay in their section as
 * they are; claims live in memory, since no other process can claim from this store. The costs
 * are those of the outbox before claims existed: one read per claim, one batch per settle.
 */
import { randomBytes } from 'node:crypto'
import { isPlainObject } from '../../shared/schema.ts'
import type { KvSection, OutboxClaim, OutboxQueue } from './port.ts'

const isDueAt = (v: unknown, now: number): boolean => isPlainObject(v) && typeof v.nextAt === 'number' && v.nextAt <= now

export class KvOutboxQueue implements OutboxQueue {
  readonly shared = false
  readonly #kv: KvSection
  /** Key to the claim holding it and when its lease ends. */
  readonly #claims = new Map<string, { token: string, until: number }>()

  constructor (kv: KvSection) {
    this.#kv = kv
  }

  /** Takes the key's claim if nobody holds it (synchronously: two callers never both get it). */
  #take (key: string, now: number, leaseMs: number): string | null {
    const held = this.#claims.get(key)
    if (held !== undefined && held.until > now) return null
    const token = randomBytes(8).toString('hex')
    this.#claims.set(key, { token, until: now + leaseMs })
    return token
  }

  #drop (key: string, token: string): void {
    if (this.#claims.get(key)?.token === token) this.#claims.delete(key)
  }

  async claim (keys: readonly string[], now: number, leaseMs: number): Promise<OutboxClaim[]> {
    const out: OutboxClaim[] = []
    for (const key of keys) {
      const token = this.#take(key, now, leaseMs)
      if (token === null) continue
      let value: unknown
      try {
        value = await this.#kv.get(key)
      } catch (e) {
        this.#drop(key, token)
        throw e
      }
      if (isDueAt(value, now)) out.push({ key, value, token })
      else this.#drop(key, token)
    }
    return out
  }

  async claimDue (prefix: string, now: number, limit: number, leaseMs: number): Promise<OutboxClaim[]> {
    const out: OutboxClaim[] = []
    if (limit <= 0) return out
    for await (const [key, value] of this.#kv.entries({ gte: prefix, lt: `${prefix}\xff` })) {
      if (!isDueAt(value, now)) continue
      const token = this.#take(key, now, leaseMs)
      if (token === null) continue
      out.push({ key, value, token })
      if (out.length >= limit) break
    }
    return out
  }

  async settle (claim: OutboxClaim, ops: ReadonlyArray<{ type: 'put', key: string, value: unknown } | { type: 'del', key: string }>): Promise<boolean> {
    if (this.#claims.get(claim.key)?.token !== claim.token) return false
    try {
      await this.#kv.batch(ops)
    } finally {
      this.#drop(claim.key, claim.token)
    }
    return true
  }

  async release (claim: OutboxClaim): Promise<void> {
    // The stored record is still due (a claim changes nothing on disk here).
    this.#drop(claim.key, claim.token)
  }
}
