/**
 * How many live (not deleted) elements of the `messages` root carry each message id, kept up to
 * date from every transaction on the document (peers' updates and the server's own writes).
 *
 * It listens to `beforeObserverCalls`, which Yjs emits after a transaction's changes and before
 * garbage collection, so deleted items still hold their content. It only looks at what the
 * transaction added (clocks between its before and after state) and deleted (its delete set),
 * never at the whole array, and it never creates a root.
 */
import * as Y from 'yjs'
import { ROOT_MESSAGES } from '../schema.ts'
import { findStructIndex } from './simulate.ts'

/** The `id` of a message object, when it has one of its own. */
export const messageIdOf = (v: unknown): string | undefined => {
  if (typeof v !== 'object' || v === null || !Object.prototype.hasOwnProperty.call(v, 'id')) return undefined
  const id: unknown = (v as { id: unknown }).id
  return typeof id === 'string' ? id : undefined
}

export class MessageIndex {
  private readonly live = new Map<string, number>()
  private readonly doc: Y.Doc
  private readonly onTransaction = (tr: Y.Transaction): void => { this.update(tr) }

  constructor (doc: Y.Doc) {
    this.doc = doc
    const messages = doc.share.get(ROOT_MESSAGES)
    if (messages !== undefined) {
      for (let item = messages._start; item !== null; item = item.right) {
        if (!item.deleted) this.countItem(item, 1)
      }
    }
    doc.on('beforeObserverCalls', this.onTransaction)
  }

  /** Live elements of `messages` with this id. */
  liveCount (id: string): number {
    return this.live.get(id) ?? 0
  }

  destroy (): void {
    this.doc.off('beforeObserverCalls', this.onTransaction)
    this.live.clear()
  }

  private countItem (item: Y.Item, delta: 1 | -1): void {
    if (item.parentSub !== null || !(item.content instanceof Y.ContentAny)) return
    for (const v of item.content.arr) {
      const id = messageIdOf(v)
      if (id === undefined) continue
      const n = (this.live.get(id) ?? 0) + delta
      if (n > 0) this.live.set(id, n)
      else this.live.delete(id)
    }
  }

  private update (tr: Y.Transaction): void {
    const messages = this.doc.share.get(ROOT_MESSAGES)
    if (messages === undefined) return
    const store = this.doc.store
    for (const [client, after] of tr.afterState) {
      const before = tr.beforeState.get(client) ?? 0
      if (after <= before) continue
      const structs = store.clients.get(client)
      if (structs === undefined) continue
      for (let i = Math.max(0, findStructIndex(structs, before)); i < structs.length; i++) {
        const s = structs[i]
        if (s.id.clock >= before && s instanceof Y.Item && s.parent === messages && !s.deleted) this.countItem(s, 1)
      }
    }
    for (const [client, ranges] of tr.deleteSet.clients) {
      const structs = store.clients.get(client)
      if (structs === undefined) continue
      const before = tr.beforeState.get(client) ?? 0
      for (const { clock, len } of ranges) {
        const end = Math.min(clock + len, before) // items added in this transaction were never counted
        for (let i = Math.max(0, findStructIndex(structs, clock)); i < structs.length; i++) {
          const s = structs[i]
          if (s.id.clock >= end) break
          if (s.id.clock >= clock && s instanceof Y.Item && s.parent === messages) this.countItem(s, -1)
        }
      }
    }
  }
}
