/**
 * Message order (contract §4.1): a message is never placed before messages that were committed
 * before its sender first synced.
 *
 * Yjs places an array insert after its left origin. A push made before the first sync (the
 * stock provider lets an app do that) has no left origin; once merged, Yjs orders it among the
 * other origin-less inserts by client id, so it can land in front of the whole history. The
 * client library never does this (it waits for a sync before it writes), but any peer may.
 *
 * The server fixes such an insert in the transaction that integrates it: a message that the
 * transaction added in front of every message the array already held (nothing older to its
 * left, something older to its right) is deleted there and the same message object is appended
 * at the end, in the order the peer wrote them. Edits (a new object under an id that was live
 * before, written in place of the old one) stay where they are. Appends of synced peers always
 * have an older message to their left (their left origin), so they are never moved, and
 * concurrent appends are all kept in the order Yjs gives them everywhere.
 *
 * Pure: works on the document inside the caller's transaction and keeps no state.
 */
import * as Y from 'yjs'
import { messagesOf } from './doc.ts'
import { isMessage, type Message } from './schema.ts'
import { findStructIndex } from './update-judge/simulate.ts'

/**
 * Whether `tr` added a live element to `arr` with no live element to its left. Looks only at
 * what the transaction added under `clients`, and from each such item only across the deleted
 * items to its left, so an ordinary append costs a step or two however long the history is.
 */
const addedAtStart = (doc: Y.Doc, tr: Y.Transaction, clients: Iterable<number>, arr: Y.Array<Message>): boolean => {
  for (const client of clients) {
    const structs = doc.store.clients.get(client) ?? []
    const before = tr.beforeState.get(client) ?? 0
    for (let i = Math.max(0, findStructIndex(structs, before)); i < structs.length; i++) {
      const s = structs[i]
      if (s.id.clock < before || !(s instanceof Y.Item) || s.parent !== arr || s.deleted || !s.countable) continue
      let left = s.left
      while (left !== null && (left.deleted || !left.countable)) left = left.left
      if (left === null) return true
    }
  }
  return false
}

/** What `moveEarlyMessages` needs to know about the transaction's update. */
export interface AddedBy {
  /** The client ids the update added structs under (`tr.afterState` is only known at its end). */
  clients: Iterable<number>
  /** Whether a message id was live before the transaction: a new object under it is an edit. */
  wasLive: (id: string) => boolean
}

/**
 * Moves the messages that `tr` inserted in front of the older history to the end of
 * `messages`, keeping their relative order and their objects (same id, sender, text, createdAt).
 * Must run inside `tr` (a remote one, after the peer's update was applied), before it ends; when
 * it moves something, it marks `tr` local. Edits stay. Returns the moved messages' ids.
 */
export const moveEarlyMessages = (doc: Y.Doc, tr: Y.Transaction, { clients, wasLive }: AddedBy): string[] => {
  const arr = messagesOf(doc)
  const isNew = (item: Y.Item): boolean => item.id.clock >= (tr.beforeState.get(item.id.client) ?? 0)
  if (!addedAtStart(doc, tr, clients, arr)) return []
  const early: Array<{ index: number, message: Message }> = []
  let index = 0
  let olderFound = false
  for (let item = arr._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue
    if (!isNew(item)) { olderFound = true; break }
    for (const value of item.content.getContent()) {
      if (isMessage(value, Number.MAX_SAFE_INTEGER) && !wasLive(value.id)) early.push({ index, message: value })
      index++
    }
  }
  if (!olderFound || early.length === 0) return []
  // Remote integration does not maintain the array's index cache (Yjs drops it when a remote
  // transaction ends); it is stale now, and index operations would hit the wrong elements.
  if (arr._searchMarker !== null) arr._searchMarker.length = 0
  // This document writes under its own client id now: a transaction that stayed marked remote
  // would make Yjs believe another peer uses that id and change it.
  tr.local = true
  for (let i = early.length - 1; i >= 0; i--) arr.delete(early[i].index, 1)
  arr.push(early.map(e => structuredClone(e.message)))
  return early.map(e => e.message.id)
}
