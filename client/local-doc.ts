/**
 * Binds a conversation's Y.Doc to its claimed local state (`storage.ts`): replays the saved
 * log, restores the user's Yjs client id, appends every later update, compacts the log, and
 * keeps the server-acknowledged state vector. All writes go through one promise chain, in order.
 */
import * as Y from 'yjs'
import type { Message } from '../shared/schema.ts'
import { COMPACT_AFTER, type ClientStore, type LocalDoc, type LocalMeta } from './storage.ts'

/** The origin of updates replayed from the local log (they are not saved again). */
export const STORAGE_ORIGIN = Symbol('parley-local-storage')

export class LocalBinding {
  private readonly doc: Y.Doc
  private readonly local: LocalDoc
  private chain: Promise<void> = Promise.resolve()
  private logLength = 0
  private meta: LocalMeta
  private failed: unknown = null
  private closed = false

  private constructor (doc: Y.Doc, local: LocalDoc, meta: LocalMeta) {
    this.doc = doc
    this.local = local
    this.meta = meta
  }

  /**
   * Claims `key` and replays what it holds into `doc`, then restores the saved client id (after
   * the replay: Yjs picks a new client id when a remote transaction adds structs under its
   * own). Returns null when another live document holds the key.
   * @param early updates `doc` emitted before the claim, saved first.
   * @param beforeReplay told the saved metadata before the log is replayed into `doc`.
   */
  static async open (store: ClientStore, key: string, doc: Y.Doc, early: Uint8Array[], beforeReplay: (meta: LocalMeta | null) => void): Promise<LocalBinding | null> {
    const local = await store.claim(key)
    if (local === null) return null
    const saved = await local.load()
    beforeReplay(saved.meta)
    Y.transact(doc, () => { for (const u of saved.updates) Y.applyUpdate(doc, u, STORAGE_ORIGIN) }, STORAGE_ORIGIN)
    if (saved.meta !== null) doc.clientID = saved.meta.clientId
    const binding = new LocalBinding(doc, local, saved.meta ?? { clientId: doc.clientID, acked: [] })
    binding.logLength = saved.updates.length
    for (const u of early) binding.append(u)
    if (saved.meta === null) binding.enqueue(async () => { await local.saveMeta(binding.meta) })
    return binding
  }

  /** The error of the last failed write, if any (the app may show it; sync goes on). */
  get error (): unknown { return this.failed }

  private enqueue (fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch(e => { this.failed = e })
  }

  append (update: Uint8Array): void {
    if (this.closed) return
    this.logLength++
    if (this.logLength > COMPACT_AFTER) {
      this.logLength = 1
      const snapshot = Y.encodeStateAsUpdate(this.doc)
      this.enqueue(async () => { await this.local.compact(snapshot) })
    } else {
      this.enqueue(async () => { await this.local.append(update) })
    }
  }

  saveAcked (acked: Map<number, number>): void {
    this.saveMeta({ acked: [...acked] })
  }

  /** Keeps the messages sent before the first sync (written after the updates queued so far). */
  saveQueued (queued: readonly Message[]): void {
    this.saveMeta({ queued: [...queued] })
  }

  private saveMeta (change: Partial<LocalMeta>): void {
    if (this.closed) return
    this.meta = { ...this.meta, ...change, clientId: this.doc.clientID }
    const meta = this.meta
    this.enqueue(async () => { await this.local.saveMeta(meta) })
  }

  /** Forgets the local state: the server refused what it holds, so replaying it would fail again. */
  clear (): void {
    this.enqueue(async () => { await this.local.clear() })
  }

  /** Waits for pending writes, then releases the claim. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.chain
    await this.local.release()
  }
}
