/**
 * Recovery for a peer that holds changes the server no longer has.
 *
 * The server can lose what a peer already holds: a restore from an older backup, or a power cut
 * with `--fsync off`. Such a peer's catch-up (its sync step 2) then carries structs that depend
 * on, or belong to, history the server lost: a system message, another user's message, its own
 * messages written after them. Judged as usual, that is a forbidden write, and a 4403 would lock
 * the peer out for good (the stock provider never retries a 44xx), with its own messages stuck.
 *
 * Instead the connection goes on in recovery mode. The server keeps a shadow of the peer's
 * document (its own document plus what the peer holds beyond it) and never integrates the
 * peer's structs. After every update of the peer, the server re-issues what the peer may do as
 * the server: its new messages (same id, sender, text, createdAt, appended at the end), edits and
 * deletes of its own messages, its own reactions, and its read marker, each checked like any write. Everything the
 * peer holds beyond the server's document is then deleted at the peer (a delete set sent to it
 * alone), so it converges on what everybody else sees, without duplicates.
 *
 * Pure: Yjs documents in, intents and frames out; the room applies them.
 */
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import { messagesOf, reactionsOf, readsOf } from '../../shared/doc.ts'
import { isMessage, type Message } from '../../shared/schema.ts'
import { parseReactionKey, reactionValueProblem } from '../../shared/reactions.ts'

/** What the peer did, re-expressed for the server to write. */
export interface RecoveredIntents {
  /** New messages of the peer, in the peer's order. */
  added: Message[]
  /** Own messages the peer changed (same id, new content). */
  edited: Message[]
  /** Ids of own messages the peer deleted. */
  deleted: string[]
  /** The peer's read marker, when it moved past the server's. */
  readUpTo: number | null
  /** Own reaction keys the peer changed: the new value, or null when it deleted the key. */
  reactions: Array<{ key: string, messageId: string, value: string[] | null }>
}

const sameMessage = (a: Message, b: Message): boolean => JSON.stringify(a) === JSON.stringify(b)

/** Live messages of `doc` by id (the first of an id wins). */
const messagesById = (doc: Y.Doc): Map<string, Message> => {
  const out = new Map<string, Message>()
  for (const m of messagesOf(doc).toArray()) if (typeof m?.id === 'string' && !out.has(m.id)) out.set(m.id, m)
  return out
}

/** A V1 update carrying no struct and a delete set of whole clock ranges. */
const encodeDeleteRanges = (ranges: ReadonlyArray<[client: number, clock: number, len: number]>): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  encoding.writeVarUint(e, ranges.length)
  for (const [client, clock, len] of ranges) {
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, 1)
    encoding.writeVarUint(e, clock)
    encoding.writeVarUint(e, len)
  }
  return encoding.toUint8Array(e)
}

export class StalePeer {
  /** The peer's document as far as the server can tell. */
  private readonly shadow: Y.Doc
  /** Per client id, the clock up to which the peer was already told to delete. */
  private readonly deletedUpTo = new Map<number, number>()

  private constructor (shadow: Y.Doc) {
    this.shadow = shadow
  }

  /**
   * The peer's shadow when `update` (refused by the judge) shows that it holds history the
   * server lost: structs beyond the server's state under a client id the server knows
   * (`isKnownClient`: bound in the store, or tagged as one of the server's own; or present in the
   * server's document). Null otherwise (new structs under fresh client ids): that update is
   * refused as usual.
   */
  static detect (server: Y.Doc, update: Uint8Array, isKnownClient: (client: number) => boolean): StalePeer | null {
    const shadow = new Y.Doc({ gc: true })
    try {
      Y.applyUpdate(shadow, Y.encodeStateAsUpdate(server))
      Y.applyUpdate(shadow, update)
    } catch {
      shadow.destroy()
      return null
    }
    const serverState = Y.decodeStateVector(Y.encodeStateVector(server))
    for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(shadow))) {
      const known = serverState.get(client)
      if (clock > (known ?? 0) && (known !== undefined || isKnownClient(client))) return new StalePeer(shadow)
    }
    shadow.destroy()
    return null
  }

  /** Applies a later update of the peer to its shadow. */
  absorb (update: Uint8Array): void {
    Y.applyUpdate(this.shadow, update)
  }

  /** Keeps the shadow in step with what the server document gained (it reaches the peer too). */
  follow (update: Uint8Array): void {
    Y.applyUpdate(this.shadow, update)
  }

  /**
   * What the peer changed relative to the server's document, limited to what `userId` may do:
   * its own well-formed messages (texts up to `maxTextLength`) and its read marker.
   */
  intents (server: Y.Doc, userId: string, maxTextLength: number): RecoveredIntents {
    const live = messagesById(server)
    const held = messagesById(this.shadow)
    const added: Message[] = []
    const edited: Message[] = []
    for (const m of held.values()) {
      if (m.senderId !== userId || m.type !== 'UserMessage' || !isMessage(m, maxTextLength)) continue
      const current = live.get(m.id)
      if (current === undefined) added.push(m)
      else if (current.senderId === userId && !sameMessage(current, m)) edited.push(m)
    }
    const deleted = [...live.values()].filter(m => m.senderId === userId && !held.has(m.id)).map(m => m.id)
    const mine = readsOf(this.shadow).get(userId)
    const theirs = readsOf(server).get(userId)
    const readUpTo = typeof mine === 'number' && (typeof theirs !== 'number' || mine > theirs) ? mine : null
    return { added, edited, deleted, readUpTo, reactions: this.reactionIntents(server, userId) }
  }

  /** The peer's own reaction keys that differ from the server's (well-formed values only). */
  private reactionIntents (server: Y.Doc, userId: string): RecoveredIntents['reactions'] {
    const held = reactionsOf(this.shadow)
    const live = reactionsOf(server)
    const out: RecoveredIntents['reactions'] = []
    for (const [key, value] of held.entries()) {
      const target = parseReactionKey(key)
      if (target?.userId !== userId || reactionValueProblem(value) !== null) continue
      if (JSON.stringify(live.get(key)) !== JSON.stringify(value)) out.push({ key, messageId: target.messageId, value })
    }
    for (const key of live.keys()) {
      const target = parseReactionKey(key)
      if (target?.userId === userId && !held.has(key)) out.push({ key, messageId: target.messageId, value: null })
    }
    return out
  }

  /**
   * The frame body (a V1 update) that deletes at the peer everything it holds beyond the
   * server's document; applied to the shadow too. Null when there is nothing.
   */
  takeStale (server: Y.Doc): Uint8Array | null {
    const serverState = Y.decodeStateVector(Y.encodeStateVector(server))
    const ranges: Array<[number, number, number]> = []
    for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(this.shadow))) {
      const from = Math.max(serverState.get(client) ?? 0, this.deletedUpTo.get(client) ?? 0)
      if (clock > from) ranges.push([client, from, clock - from])
      this.deletedUpTo.set(client, Math.max(clock, this.deletedUpTo.get(client) ?? 0))
    }
    if (ranges.length === 0) return null
    const update = encodeDeleteRanges(ranges)
    Y.applyUpdate(this.shadow, update)
    return update
  }

  destroy (): void {
    this.shadow.destroy()
  }
}
