/**
 * The gate for document updates from peers (contract §3, §4, §7): decides, before anything is
 * applied, whether a Yjs V1 update from one connection may be applied to the conversation
 * document, and whether applying it would change anything at all.
 *
 * Pure: it reads the document (and keeps an index of live message ids from its transactions)
 * but never writes to it, never creates a root type, and never calls a Yjs decoder. It reads
 * the update with its own strict V1 reader (`update-judge/read-update.ts`), replays how Yjs
 * would integrate it (`update-judge/simulate.ts`), then judges each new part and each deletion
 * that would take effect against the writer's rights:
 *
 *   messages  array elements, each one plain message object of the pinned shape, written by the
 *             writer as itself; deletes only of its own messages (a moderator: of any message,
 *             but it never writes one of the same id in the same update, which would edit
 *             another's message); an edit deletes the old object and inserts one with the same
 *             id and an `editedAt`;
 *   reads     the writer's own key only (participants only, also with access Read), a finite number;
 *   reactions and replies: see update-judge/reactions.ts;
 *   anything else (participants, meta, other roots, nested types, map keys on the array): refused.
 *
 * Updates that would leave structs or deletions pending, or make Yjs throw mid-transaction, are
 * refused, so `applyUpdate` of an accepted update leaves `pendingStructs` and `pendingDs` null.
 */
import * as Y from 'yjs'
import { ChatError, type ErrorCode } from './errors.ts'
import {
  messageShapeProblem, ROOT_MESSAGES, ROOT_META, ROOT_PARTICIPANTS, ROOT_REACTIONS, ROOT_READS, type Message, type Role
} from './schema.ts'
import { MessageIndex, messageIdOf } from './update-judge/message-index.ts'
import { claimOf, type AttachmentClaim } from './update-judge/attachments.ts'
import { CONTENT, MalformedUpdate, readUpdateV1, type ParsedUpdate } from './update-judge/read-update.ts'
import {
  findPartIndex, findStructIndex, ForbiddenPlacement, MissingDependencies, placeOfStored, simulateIntegration,
  type NewPart, type Place, type Simulation
} from './update-judge/simulate.ts'
import { checkTargets, judgeReactionDelete, judgeReactionPart, type ArchiveChecks } from './update-judge/reactions.ts'

export interface Writer {
  userId: string
  role: Role
  canWrite: boolean
  /** A moderator (v1.1) may delete others' messages (never edit them). */
  moderator?: boolean
}

export interface JudgeOptions {
  /** Maximum message text length, in UTF-16 code units (`string.length`). */
  maxTextLength: number
  /** Current owner (user id) of a Yjs client id, if it is bound; the server persists bindings. */
  clientOwner: (clientId: number) => string | undefined
  /** Client ids never accepted from peers (the server's own doc.clientID). */
  reservedClientIds: ReadonlySet<number>
}

export type Verdict =
  /**
   * `changes` is false when applying would change nothing (then the caller need not apply it);
   * `newClientIds` are the unbound client ids this update writes with, to bind to the writer;
   * `writtenClientIds` every client id it adds structs under (bound or not); `messages` how many
   * message objects it writes (new messages and edits, for rate limits).
   * `freshIds` the ids of the messages it adds that are not live now (not edits): the judge
   * knows only the live document, so the caller checks them against the archive.
   * `archiveChecks` the reaction targets and reply references that are not live: the caller
   * refuses the update unless each is an archived message.
   * `attachments` the attachments of the messages it adds or edits, for the caller to check
   * against the uploads (`update-judge/attachments.ts`).
   */
  | { ok: true; changes: boolean; newClientIds: number[]; writtenClientIds: number[]; messages: number; freshIds: string[]; archiveChecks: ArchiveChecks; attachments: AttachmentClaim[] }
  | { ok: false; error: ChatError }

/** Root names an update may name; naming any other makes `applyUpdate` create that root. */
const KNOWN_ROOTS: ReadonlySet<string> = new Set([ROOT_MESSAGES, ROOT_PARTICIPANTS, ROOT_META, ROOT_READS, ROOT_REACTIONS])

/** A refusal raised inside the judge and turned into a verdict at its edge. */
class Refusal extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

const refuse = (code: ErrorCode, message: string): never => { throw new Refusal(code, message) }

/** A new message element of the update. */
interface NewMessage {
  id: string
  message: Message
  edited: boolean
  part: NewPart
  index: number
  attachment: AttachmentClaim | null
}

/**
 * Judges updates from peers against one document. Create one per document and keep it for the
 * document's life: it indexes message ids from every transaction, including the server's own.
 */
export class UpdateJudge {
  private readonly doc: Y.Doc
  private readonly options: JudgeOptions
  private readonly index: MessageIndex

  constructor (doc: Y.Doc, options: JudgeOptions) {
    this.doc = doc
    this.options = options
    this.index = new MessageIndex(doc)
  }

  /**
   * The verdict on `update` (Yjs V1) from `writer`. Never throws and never changes the document;
   * bytes that are not a well-formed V1 update give MALFORMED_MESSAGE.
   */
  judge (update: Uint8Array, writer: Writer): Verdict {
    try {
      return this.judgeOrThrow(update, writer)
    } catch (e) {
      if (e instanceof Refusal) return { ok: false, error: new ChatError(e.code, e.message) }
      if (e instanceof MissingDependencies) return { ok: false, error: new ChatError('MISSING_DEPENDENCIES', e.message) }
      if (e instanceof ForbiddenPlacement) return { ok: false, error: new ChatError('WRITE_FORBIDDEN', e.message) }
      if (e instanceof MalformedUpdate) return { ok: false, error: new ChatError('MALFORMED_MESSAGE', e.message) }
      // Anything else (a stack overflow, a bug) fails closed.
      return { ok: false, error: new ChatError('MALFORMED_MESSAGE') }
    }
  }

  /**
   * Whether a message with this id is live in `messages`. Inside a transaction it still answers
   * for the state before it (the index follows transactions once they end).
   */
  isLive (id: string): boolean {
    return this.index.liveCount(id) > 0
  }

  /** Stops indexing the document. */
  destroy (): void {
    this.index.destroy()
  }

  private judgeOrThrow (update: Uint8Array, writer: Writer): Verdict {
    const parsed = readUpdateV1(update)
    checkNamedRoots(parsed)
    const sim = simulateIntegration(this.doc, parsed)
    const newClientIds = this.judgeNewParts(sim, writer)
    const messages = this.collectNewMessages(sim, writer)
    const { deletedIds, effective, othersDeleted } = this.judgeDeletes(parsed, sim, writer, messages)
    const freshIds = this.checkUniqueIds(messages, deletedIds)
    for (const m of messages) {
      if (m.index >= 0 && othersDeleted.has(m.id)) refuse('SENDER_MISMATCH', 'a moderator deletes others\' messages but never edits them')
    }
    const archiveChecks = this.checkReactionsAndReplies(sim, writer, messages, deletedIds)
    const attachments = messages.flatMap(m => m.index >= 0 && m.attachment !== null ? [m.attachment] : [])
    return { ok: true, changes: sim.parts.length > 0 || effective, newClientIds, writtenClientIds: [...sim.partsByClient.keys()], messages: messages.length, freshIds, archiveChecks, attachments }
  }

  /** Reaction keys and values, and whether reaction targets and reply references exist (update-judge/reactions.ts). */
  private checkReactionsAndReplies (sim: Simulation, writer: Writer, messages: NewMessage[], deletedIds: Map<string, number>): ArchiveChecks {
    const targets: string[] = []
    for (const part of sim.parts) {
      if (part.place.kind !== 'item' || part.place.root !== ROOT_REACTIONS) continue
      const target = judgeReactionPart(part.place, part, writer, refuse)
      if (target !== null) targets.push(target)
    }
    const kept = messages.filter(m => m.index >= 0)
    if (targets.length === 0 && !kept.some(m => m.message.referencedMessageId !== undefined)) return { reactionTargets: [], references: [] }
    const added = new Set(kept.map(m => m.id))
    const before = (id: string): boolean => this.index.liveCount(id) > 0
    return checkTargets(targets, kept, {
      before,
      after: id => added.has(id) || this.index.liveCount(id) > (deletedIds.get(id) ?? 0),
      current: id => before(id) ? liveMessage(this.doc, id) : undefined
    }, refuse)
  }

  /** Client binding and placement of every new part; returns the client ids to bind. */
  private judgeNewParts (sim: Simulation, writer: Writer): number[] {
    // Read markers are not content: a participant with access Read still moves its own (v1.1 §3).
    if (!writer.canWrite && sim.parts.some(p => !isReadMarkerPlace(p.place))) refuse('READ_ONLY', 'a read-only connection sent changes')
    const newClientIds: number[] = []
    for (const client of sim.partsByClient.keys()) {
      if (this.options.reservedClientIds.has(client)) refuse('CLIENT_ID_TAKEN', `client id ${client} is reserved`)
      const owner = this.options.clientOwner(client)
      if (owner === undefined) newClientIds.push(client)
      else if (owner !== writer.userId) refuse('CLIENT_ID_TAKEN', `client id ${client} belongs to another user`)
    }
    for (const part of sim.parts) judgePlacement(part.place, part, writer)
    return newClientIds
  }

  /** Shape and sender of every new message element; reads values. */
  private collectNewMessages (sim: Simulation, writer: Writer): NewMessage[] {
    const out: NewMessage[] = []
    const max = this.options.maxTextLength
    for (const part of sim.parts) {
      const { place, content } = part
      if (place.kind !== 'item' || content === null || content.kind !== 'any') continue
      if (place.root === ROOT_REACTIONS) continue // checkReactionsAndReplies
      if (place.root === ROOT_READS) {
        for (const v of content.values) {
          if (typeof v !== 'number' || !Number.isFinite(v)) refuse('WRITE_FORBIDDEN', 'a read marker must be a finite number')
        }
        continue
      }
      content.values.forEach((v, index) => {
        if (content.tainted?.[index] === true) refuse('INVALID_MESSAGE', 'a message must not hold a __proto__ key')
        const problem = messageShapeProblem(v, Number.POSITIVE_INFINITY)
        if (problem !== null) refuse('INVALID_MESSAGE', problem)
        const m = v as Message
        if (m.text.length > max) refuse('TEXT_TOO_LONG', `text is over ${max} characters`)
        if (m.type !== 'UserMessage') refuse('WRITE_FORBIDDEN', 'peers write only UserMessage')
        if (m.senderId !== writer.userId) refuse('SENDER_MISMATCH', 'a message must be sent as its writer')
        out.push({ id: m.id, message: v as Message, edited: Object.prototype.hasOwnProperty.call(v, 'editedAt'), part, index, attachment: claimOf(m) })
      })
    }
    return out
  }

  /**
   * Judges each deletion that would take effect (of something not deleted yet). Marks new
   * messages that the update itself deletes, and counts deleted live messages per id.
   */
  private judgeDeletes (parsed: ParsedUpdate, sim: Simulation, writer: Writer, messages: NewMessage[]): { deletedIds: Map<string, number>, effective: boolean, othersDeleted: Set<string> } {
    const deletedIds = new Map<string, number>()
    const othersDeleted = new Set<string>()
    const deletedNew = new Map<NewPart, Array<[number, number]>>() // clock ranges of new parts deleted
    let effective = false
    const byClient = new Map<number, Array<[number, number]>>()
    for (const { client, clock, len } of parsed.deletes) {
      // readAndApplyDeleteSet keeps anything at or beyond the state pending, even an empty range.
      if (clock >= sim.stateAfter(client) || clock + len > sim.stateAfter(client)) {
        refuse('MISSING_DEPENDENCIES', `a deletion refers to client ${client} beyond what exists`)
      }
      if (len === 0) continue
      let ranges = byClient.get(client)
      if (ranges === undefined) byClient.set(client, ranges = [])
      ranges.push([clock, clock + len])
    }
    const store = this.doc.store
    for (const [client, ranges] of byClient) {
      const structs = store.clients.get(client) ?? []
      const parts = sim.partsByClient.get(client) ?? []
      for (const [from, to] of mergeRanges(ranges)) {
        const first = findStructIndex(structs, from)
        for (let i = first; i >= 0 && i < structs.length; i++) {
          const s = structs[i]
          if (s.id.clock >= to) break
          if (s.deleted || !(s instanceof Y.Item)) continue // fact 3: only what is not yet deleted
          effective = true
          const a = Math.max(from, s.id.clock) - s.id.clock
          const b = Math.min(to, s.id.clock + s.length) - s.id.clock
          this.judgeStoredDelete(s, a, b, writer, deletedIds, othersDeleted)
        }
        for (let i = Math.max(0, findPartIndex(parts, from)); i < parts.length; i++) {
          const p = parts[i]
          if (p.clock >= to) break
          if (p.clock + p.length <= from) continue
          effective = true
          let list = deletedNew.get(p)
          if (list === undefined) deletedNew.set(p, list = [])
          list.push([from, to])
        }
      }
    }
    for (const m of messages) {
      const clock = m.part.clock + m.index
      const list = deletedNew.get(m.part)
      if (list !== undefined && inRanges(list, clock)) m.index = -1
    }
    return { deletedIds, effective, othersDeleted }
  }

  /** Deleting elements [a, b) of a stored, not yet deleted item. */
  private judgeStoredDelete (item: Y.Item, a: number, b: number, writer: Writer, deletedIds: Map<string, number>, othersDeleted: Set<string>): void {
    const place = placeOfStored(this.doc, item)
    if (place.kind === 'item' && place.root === ROOT_READS && place.parentSub !== null) {
      if (writer.role !== 'participant') refuse('WRITE_FORBIDDEN', 'guests do not write reads')
      if (place.parentSub !== writer.userId) refuse('WRITE_FORBIDDEN', 'a read marker of another user')
      return
    }
    if (!writer.canWrite) refuse('READ_ONLY', 'a read-only connection sent deletions')
    if (place.kind !== 'item') return
    if (place.root === ROOT_REACTIONS) return judgeReactionDelete(place, writer, refuse)
    if (place.root !== ROOT_MESSAGES || place.parentSub !== null || !(item.content instanceof Y.ContentAny)) {
      refuse('WRITE_FORBIDDEN', `a deletion in ${place.root ?? 'a nested type'}`)
    }
    const arr = (item.content as Y.ContentAny).arr
    for (let i = a; i < b; i++) {
      const v: unknown = arr[i]
      const own = typeof v === 'object' && v !== null && Object.prototype.hasOwnProperty.call(v, 'senderId') &&
        (v as { senderId: unknown }).senderId === writer.userId
      if (!own && writer.moderator !== true) refuse('SENDER_MISMATCH', 'a peer deletes only its own messages')
      const id = messageIdOf(v)
      if (id !== undefined) deletedIds.set(id, (deletedIds.get(id) ?? 0) + 1)
      if (!own && id !== undefined) othersDeleted.add(id)
    }
  }

  /** After the update, each id is live at most once; reusing a live id is an edit. Returns the ids not live before. */
  private checkUniqueIds (messages: NewMessage[], deletedIds: Map<string, number>): string[] {
    const added = new Map<string, number>()
    const fresh: string[] = []
    for (const m of messages) {
      if (m.index < 0) continue // deleted by the same update
      const before = this.index.liveCount(m.id)
      const kept = Math.max(0, before - (deletedIds.get(m.id) ?? 0))
      const n = (added.get(m.id) ?? 0) + 1
      added.set(m.id, n)
      if (kept + n > 1) refuse('DUPLICATE_MESSAGE_ID', `message id ${m.id} is taken`)
      if (before > 0 && !m.edited) refuse('DUPLICATE_MESSAGE_ID', `message id ${m.id} is reused without editedAt`)
      if (before === 0) fresh.push(m.id)
    }
    return fresh
  }
}

/** Every root an item names, known or not, would be created by applyUpdate: only ours pass. */
const checkNamedRoots = (parsed: ParsedUpdate): void => {
  for (const block of parsed.clients) {
    for (const s of block.structs) {
      if (s.parentName !== null && !KNOWN_ROOTS.has(s.parentName)) {
        refuse('WRITE_FORBIDDEN', `unknown root ${JSON.stringify(s.parentName.slice(0, 40))}`)
      }
      if (s.content?.kind === 'other' && s.content.ref === CONTENT.doc) refuse('WRITE_FORBIDDEN', 'subdocuments are not allowed')
    }
  }
}

/** A part in `reads` (whose key and value `judgePlacement` checks). */
const isReadMarkerPlace = (place: Place): boolean => place.kind === 'item' && place.root === ROOT_READS

/** Where a new part may go, and with what content kind. */
const judgePlacement = (place: Place, part: NewPart, writer: Writer): void => {
  if (place.kind === 'gc') return // no content, no parent: only the client's clock advances
  const kind = part.content?.kind
  if (place.root === ROOT_MESSAGES) {
    if (place.parentSub !== null) refuse('WRITE_FORBIDDEN', 'messages is an array: no map keys')
    if (kind !== 'any' && kind !== 'deleted') refuse('INVALID_MESSAGE', 'messages hold only plain JSON objects')
    return
  }
  if (place.root === ROOT_READS) {
    if (writer.role !== 'participant') refuse('WRITE_FORBIDDEN', 'guests do not write reads')
    if (place.parentSub !== writer.userId) refuse('WRITE_FORBIDDEN', 'a participant writes only its own read marker')
    if (kind !== 'any' && kind !== 'deleted') refuse('WRITE_FORBIDDEN', 'a read marker is a number')
    return
  }
  if (place.root === ROOT_REACTIONS) return // judged with its target in checkReactionsAndReplies
  refuse('WRITE_FORBIDDEN', `peers do not write ${place.root ?? 'nested types'}`)
}

/** The live message with `id` (walks the array without creating it). */
const liveMessage = (doc: Y.Doc, id: string): Message | undefined => {
  const messages = doc.share.get(ROOT_MESSAGES)
  for (let item = messages?._start ?? null; item !== null; item = item.right) {
    if (item.deleted || !(item.content instanceof Y.ContentAny)) continue
    for (const v of item.content.arr) if (messageIdOf(v) === id) return v as Message
  }
  return undefined
}

/** Whether `x` lies in one of the sorted, disjoint half-open `ranges`. */
const inRanges = (ranges: ReadonlyArray<[number, number]>, x: number): boolean => {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (x < ranges[mid][0]) hi = mid - 1
    else if (x >= ranges[mid][1]) lo = mid + 1
    else return true
  }
  return false
}

/** Sorted union of half-open ranges. */
const mergeRanges = (ranges: Array<[number, number]>): Array<[number, number]> => {
  ranges.sort((x, y) => x[0] - y[0])
  const out: Array<[number, number]> = []
  for (const [a, b] of ranges) {
    const last = out[out.length - 1]
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b)
    else out.push([a, b])
  }
  return out
}
