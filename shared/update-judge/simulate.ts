/**
 * Replays, without touching the document, what yjs 13.6 `integrateStructs` would do with the
 * structs of a parsed update: the order it integrates them in, which of them (or which part of
 * them) are new, under which parent each new part lands, and whether anything would stay
 * pending or make Yjs throw half-way through the transaction.
 *
 * It mirrors `integrateStructs` (utils/encoding.js) and `Item.getMissing` / `Item.integrate`
 * (structs/Item.js): a struct whose clock is beyond the client's state, or that depends on a
 * struct neither the document nor the update has, would be kept pending; a struct whose origin,
 * right origin or parent is of its own client and not yet there makes Yjs throw. Both are refused.
 */
import type * as Y from 'yjs'
import { MalformedUpdate, type IdRef, type ParsedStruct, type ParsedUpdate, type StructContent } from './read-update.ts'

/** Where a struct sits: a GC (no parent) or an item under a root (null: a nested type). */
export type Place =
  | { kind: 'gc' }
  | { kind: 'item'; root: string | null; parentSub: string | null }

/** The new part of a struct, as Yjs would integrate it. */
export interface NewPart {
  client: number
  /** First new clock. */
  clock: number
  length: number
  place: Place
  /** The struct's content cut to the new part; null for GC. */
  content: StructContent | null
  /** The struct it comes from (its content is the whole struct's). */
  struct: ParsedStruct
}

/** Thrown when the update would leave structs pending. */
export class MissingDependencies extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MissingDependencies'
  }
}

/** Thrown when a struct would be placed somewhere no honest Yjs client puts one. */
export class ForbiddenPlacement extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ForbiddenPlacement'
  }
}

export interface Simulation {
  /** New parts in integration order. */
  parts: NewPart[]
  /** New parts per client, by clock. */
  partsByClient: Map<number, NewPart[]>
  /** A client's state after integration. */
  stateAfter: (client: number) => number
}

/** Index of the struct holding `clock`, or -1 (yjs `findIndexSS` without the throw). */
export const findStructIndex = (structs: ReadonlyArray<{ id: { clock: number }, length: number }>, clock: number): number => {
  let lo = 0
  let hi = structs.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const s = structs[mid]
    if (clock < s.id.clock) hi = mid - 1
    else if (clock >= s.id.clock + s.length) lo = mid + 1
    else return mid
  }
  return -1
}

/** Index of the new part holding `clock`, or -1. */
export const findPartIndex = (parts: readonly NewPart[], clock: number): number => {
  let lo = 0
  let hi = parts.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const p = parts[mid]
    if (clock < p.clock) hi = mid - 1
    else if (clock >= p.clock + p.length) lo = mid + 1
    else return mid
  }
  return -1
}

/** The root name of a type, or null when it is nested (or not a root of this doc). */
export const rootNameOf = (doc: Y.Doc, type: unknown): string | null => {
  for (const [name, root] of doc.share) {
    if (root === type) return name
  }
  return null
}

/** Where a struct of the document sits. */
export const placeOfStored = (doc: Y.Doc, struct: Y.Item | Y.GC): Place => {
  if (!('parent' in struct)) return { kind: 'gc' }
  return { kind: 'item', root: rootNameOf(doc, struct.parent), parentSub: struct.parentSub }
}

const stateOf = (store: Y.Doc['store'], client: number): number => {
  const structs = store.clients.get(client)
  if (structs === undefined || structs.length === 0) return 0
  const last = structs[structs.length - 1]
  return last.id.clock + last.length
}

const cutContent = (content: StructContent | null, offset: number): StructContent | null => {
  if (offset === 0 || content === null || content.kind !== 'any') return content
  return {
    kind: 'any',
    values: content.values.slice(offset),
    tainted: content.tainted === null ? null : content.tainted.slice(offset)
  }
}

const samePlace = (a: Place, b: Place): boolean =>
  a.kind === 'item' && b.kind === 'item' && a.root === b.root && a.parentSub === b.parentSub

/** Replays the integration of `update` into `doc`; throws MissingDependencies or MalformedUpdate. */
export const simulateIntegration = (doc: Y.Doc, update: ParsedUpdate): Simulation => {
  const store = doc.store
  const storeState = new Map<number, number>()
  const storedStateOf = (client: number): number => {
    let s = storeState.get(client)
    if (s === undefined) {
      s = stateOf(store, client)
      storeState.set(client, s)
    }
    return s
  }
  const state = new Map<number, number>()
  const stateAfter = (client: number): number => state.get(client) ?? storedStateOf(client)
  const parts: NewPart[] = []
  const partsByClient = new Map<number, NewPart[]>()

  /** yjs getItemCleanEnd / getItemCleanStart / getItem: the struct holding `id`, or a throw. */
  const lookup = (id: IdRef): Place => {
    if (id.clock < storedStateOf(id.client)) {
      const structs = store.clients.get(id.client) ?? []
      const i = findStructIndex(structs, id.clock)
      if (i < 0) throw new MalformedUpdate('reference into a hole of the store')
      return placeOfStored(doc, structs[i])
    }
    if (id.clock < stateAfter(id.client)) {
      const own = partsByClient.get(id.client) ?? []
      const i = findPartIndex(own, id.clock)
      if (i >= 0) return own[i].place
    }
    // Yjs would throw here, in the middle of the transaction.
    throw new MalformedUpdate('a struct refers to its own client beyond what exists')
  }

  /** Item.getMissing: the client of a missing dependency, or null with the resolved place. */
  const getMissing = (s: ParsedStruct): number | Place => {
    if (s.kind !== 'item') return { kind: 'gc' }
    const deps = [s.origin, s.rightOrigin, s.parentId]
    for (const d of deps) {
      if (d !== null && d.client !== s.client && d.clock >= stateAfter(d.client)) return d.client
    }
    const left = s.origin === null ? null : lookup(s.origin)
    const right = s.rightOrigin === null ? null : lookup(s.rightOrigin)
    if (left?.kind === 'gc' || right?.kind === 'gc') return { kind: 'gc' }
    if (s.parentName !== null) return { kind: 'item', root: s.parentName, parentSub: s.parentSub }
    if (s.parentId !== null) {
      const parent = lookup(s.parentId)
      // A GC parent makes it a GC; an item parent is a nested type (or content without a type).
      return parent.kind === 'gc' ? parent : { kind: 'item', root: null, parentSub: s.parentSub }
    }
    const from = left ?? right
    if (from === null) throw new MalformedUpdate('an item without parent and origins')
    if (left !== null && right !== null && !samePlace(left, right)) {
      throw new ForbiddenPlacement('the origins of an item lie in different parents')
    }
    return from
  }

  const integrate = (s: ParsedStruct, offset: number, place: Place): void => {
    if (offset > 0 && place.kind === 'item') {
      // Item.integrate puts the new part right after the known part of the same struct.
      const before = lookup({ client: s.client, clock: s.clock + offset - 1 })
      if (before.kind === 'gc') throw new MalformedUpdate('a partly known item continues a GC')
      if (!samePlace(before, place)) throw new ForbiddenPlacement('a partly known item changes parent')
    }
    const part: NewPart = {
      client: s.client,
      clock: s.clock + offset,
      length: s.length - offset,
      place,
      content: place.kind === 'gc' ? null : cutContent(s.content, offset),
      struct: s
    }
    parts.push(part)
    let own = partsByClient.get(s.client)
    if (own === undefined) partsByClient.set(s.client, own = [])
    own.push(part)
    state.set(s.client, s.clock + s.length)
  }

  // The loop below is integrateStructs, step for step, on parsed structs.
  const refs = new Map<number, { i: number, refs: ParsedStruct[] }>()
  for (const block of update.clients) refs.set(block.client, { i: 0, refs: block.structs })
  const ids = [...refs.keys()].sort((a, b) => a - b)
  const nextTarget = (): { i: number, refs: ParsedStruct[] } | null => {
    while (ids.length > 0) {
      const t = refs.get(ids[ids.length - 1])
      if (t !== undefined && t.i < t.refs.length) return t
      ids.pop()
    }
    return null
  }
  let target = nextTarget()
  if (target === null) return { parts, partsByClient, stateAfter }
  const stack: ParsedStruct[] = []
  let head: ParsedStruct = target.refs[target.i++]
  for (;;) {
    if (head.kind !== 'skip') {
      const offset = stateAfter(head.client) - head.clock
      if (offset < 0) throw new MissingDependencies(`client ${head.client} misses clocks before ${head.clock}`)
      const missing = getMissing(head)
      if (typeof missing === 'number') {
        stack.push(head)
        const dep = refs.get(missing)
        if (dep === undefined || dep.i === dep.refs.length) {
          throw new MissingDependencies(`a struct depends on client ${missing} beyond what exists`)
        }
        head = dep.refs[dep.i++]
        continue
      }
      if (offset < head.length) integrate(head, offset, missing)
    }
    const popped = stack.pop()
    if (popped !== undefined) {
      head = popped
    } else if (target !== null && target.i < target.refs.length) {
      head = target.refs[target.i++]
    } else {
      target = nextTarget()
      if (target === null) break
      head = target.refs[target.i++]
    }
  }
  return { parts, partsByClient, stateAfter }
}
