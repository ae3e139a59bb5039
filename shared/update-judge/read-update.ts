/**
 * A strict, side-effect-free reader of Yjs V1 updates, for judging an update before it is applied.
 *
 * Wire format (yjs 13.6 `writeClientsStructs` + `writeDeleteSet`, V1 codec, all ints varuint):
 *
 *   update  := numClients { numStructs client clock struct* }  deleteSet
 *   struct  := info:uint8 ...
 *     info & 31 = 0   GC      len
 *     info & 31 = 10  Skip    len
 *     otherwise       Item    [origin: client clock if info & 128] [rightOrigin if info & 64]
 *                             [if neither: parentInfo (1: root name string | else parent id),
 *                              parentSub string if info & 32]  content (kind = info & 31)
 *   deleteSet := numClients { client numRanges { clock len }* }
 *
 * Unlike `Y.decodeUpdate` and `applyUpdate`, this reader creates no Y.Doc, no root type and no
 * shared type, checks every length against the bytes left (so nothing is allocated or looped over
 * beyond the input's size), refuses integers beyond 2^53, nesting deeper than MAX_ANY_DEPTH,
 * trailing bytes and zero-length structs, and flags `__proto__` keys in JSON values instead of
 * assigning them. It accepts exactly what Yjs could decode without throwing, or less.
 */
import * as string from 'lib0/string'

/** An id of a struct: the Yjs client id and the clock of one of its elements. */
export interface IdRef { client: number; clock: number }

/** Content kinds by `info & 31` (yjs `contentRefs`). */
export const CONTENT = {
  deleted: 1, json: 2, binary: 3, string: 4, embed: 5, format: 6, type: 7, any: 8, doc: 9
} as const

export type StructContent =
  | { kind: 'deleted' }
  /** `tainted[i]` is true when element i held a `__proto__` key at any depth. */
  | { kind: 'any'; values: unknown[]; tainted: boolean[] | null }
  /** Any other content kind (`ref` from CONTENT); its value is validated, then dropped. */
  | { kind: 'other'; ref: number }

export interface ParsedStruct {
  kind: 'gc' | 'skip' | 'item'
  client: number
  clock: number
  /** Number of clock ticks the struct covers (always > 0). */
  length: number
  origin: IdRef | null
  rightOrigin: IdRef | null
  /** Root type name, when the item names its parent as a root. */
  parentName: string | null
  /** Parent item id, when the item names a nested type as its parent. */
  parentId: IdRef | null
  parentSub: string | null
  /** Null for GC and Skip. */
  content: StructContent | null
}

export interface ParsedUpdate {
  /** One block per client, in wire order; a client appears at most once. */
  clients: Array<{ client: number; structs: ParsedStruct[] }>
  /** Delete ranges [clock, clock + len) in wire order. */
  deletes: Array<{ client: number; clock: number; len: number }>
}

/** Thrown for bytes that are not a well-formed V1 update. */
export class MalformedUpdate extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MalformedUpdate'
  }
}

/** JSON values nested deeper than this are refused (Parley's documents hold depth 2). */
export const MAX_ANY_DEPTH = 32

const BIT6 = 32
const BIT7 = 64
const BIT8 = 128

interface Reader { arr: Uint8Array; pos: number }

const fail = (what: string): never => { throw new MalformedUpdate(what) }

const remaining = (r: Reader): number => r.arr.length - r.pos

const readUint8 = (r: Reader): number => {
  if (r.pos >= r.arr.length) fail('unexpected end of update')
  return r.arr[r.pos++]
}

/** lib0 `readVarUint`, refusing ends, NaN and values beyond Number.MAX_SAFE_INTEGER. */
const readVarUint = (r: Reader): number => {
  const arr = r.arr
  let num = 0
  let mult = 1
  while (r.pos < arr.length) {
    const b = arr[r.pos++]
    num += (b & 0x7f) * mult
    if (b < 0x80) {
      if (!Number.isSafeInteger(num)) fail('integer out of range')
      return num
    }
    mult *= 128
    if (num > Number.MAX_SAFE_INTEGER) fail('integer out of range')
  }
  return fail('unexpected end of update')
}

/** lib0 `readVarInt` (sign in bit 7 of the first byte), with the same refusals. */
const readVarInt = (r: Reader): number => {
  let b = readUint8(r)
  let num = b & 0x3f
  let mult = 64
  const sign = (b & 0x40) > 0 ? -1 : 1
  if ((b & 0x80) === 0) return sign * num
  while (r.pos < r.arr.length) {
    b = r.arr[r.pos++]
    num += (b & 0x7f) * mult
    mult *= 128
    if (b < 0x80) {
      if (!Number.isSafeInteger(num)) fail('integer out of range')
      return sign * num
    }
    if (num > Number.MAX_SAFE_INTEGER) fail('integer out of range')
  }
  return fail('unexpected end of update')
}

/** A count of things each at least one byte long: more than the bytes left is malformed. */
const readCount = (r: Reader): number => {
  const n = readVarUint(r)
  if (n > remaining(r)) fail('count beyond the end of the update')
  return n
}

const readBytes = (r: Reader, len: number): Uint8Array => {
  if (len > remaining(r)) fail('length beyond the end of the update')
  const bytes = r.arr.subarray(r.pos, r.pos + len)
  r.pos += len
  return bytes
}

/** Short ASCII (keys, ids, most values) decodes the same without a TextDecoder call. */
const decodeShortAscii = (bytes: Uint8Array): string | null => {
  let s = ''
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]
    if (b >= 0x80) return null
    s += String.fromCharCode(b)
  }
  return s
}

/** lib0 `readVarString`: the same fatal UTF-8 decoder, so invalid UTF-8 is refused as Yjs does. */
const readString = (r: Reader): string => {
  const bytes = readBytes(r, readVarUint(r))
  if (bytes.length <= 32) {
    const ascii = decodeShortAscii(bytes)
    if (ascii !== null) return ascii
  }
  try {
    return string.decodeUtf8(bytes)
  } catch {
    return fail('invalid UTF-8')
  }
}

const readJSONString = (r: Reader): void => {
  const s = readString(r)
  try {
    JSON.parse(s)
  } catch {
    fail('invalid JSON content')
  }
}

const readDataView = (r: Reader, len: number): DataView => {
  const bytes = readBytes(r, len)
  return new DataView(bytes.buffer, bytes.byteOffset, len)
}

interface Taint { hit: boolean }

/**
 * lib0 `readAny`, except that objects never get a `__proto__` key assigned (which would set
 * their prototype): such a key is skipped and recorded in `taint`.
 */
const readAny = (r: Reader, depth: number, taint: Taint): unknown => {
  const tag = readUint8(r)
  switch (tag) {
    case 127: return undefined
    case 126: return null
    case 125: return readVarInt(r)
    case 124: return readDataView(r, 4).getFloat32(0, false)
    case 123: return readDataView(r, 8).getFloat64(0, false)
    case 122: return readDataView(r, 8).getBigInt64(0, false)
    case 121: return false
    case 120: return true
    case 119: return readString(r)
    case 118: {
      if (depth >= MAX_ANY_DEPTH) fail('value nested too deeply')
      const len = readCount(r)
      const obj: Record<string, unknown> = {}
      for (let i = 0; i < len; i++) {
        const key = readString(r)
        const value = readAny(r, depth + 1, taint)
        if (key === '__proto__') taint.hit = true
        else obj[key] = value
      }
      return obj
    }
    case 117: {
      if (depth >= MAX_ANY_DEPTH) fail('value nested too deeply')
      const len = readCount(r)
      const arr: unknown[] = []
      for (let i = 0; i < len; i++) arr.push(readAny(r, depth + 1, taint))
      return arr
    }
    case 116: return readBytes(r, readVarUint(r)).slice()
    default: return fail(`unknown value tag ${tag}`)
  }
}

const readId = (r: Reader): IdRef => {
  const client = readVarUint(r)
  const clock = readVarUint(r)
  return { client, clock }
}

/** Reads item content; returns it with its length in clock ticks. */
const readContent = (r: Reader, ref: number): { content: StructContent, length: number } => {
  switch (ref) {
    case CONTENT.deleted:
      return { content: { kind: 'deleted' }, length: readVarUint(r) }
    case CONTENT.any: {
      const len = readCount(r)
      const values: unknown[] = []
      let tainted: boolean[] | null = null
      for (let i = 0; i < len; i++) {
        const taint: Taint = { hit: false }
        values.push(readAny(r, 0, taint))
        if (taint.hit) {
          tainted ??= new Array<boolean>(len).fill(false)
          tainted[i] = true
        }
      }
      return { content: { kind: 'any', values, tainted }, length: len }
    }
    case CONTENT.json: {
      const len = readCount(r)
      for (let i = 0; i < len; i++) {
        const s = readString(r)
        if (s === 'undefined') continue
        try {
          JSON.parse(s)
        } catch {
          fail('invalid JSON content')
        }
      }
      return { content: { kind: 'other', ref }, length: len }
    }
    case CONTENT.binary:
      readBytes(r, readVarUint(r))
      return { content: { kind: 'other', ref }, length: 1 }
    case CONTENT.string:
      return { content: { kind: 'other', ref }, length: readString(r).length }
    case CONTENT.embed:
      readJSONString(r)
      return { content: { kind: 'other', ref }, length: 1 }
    case CONTENT.format:
      readString(r)
      readJSONString(r)
      return { content: { kind: 'other', ref }, length: 1 }
    case CONTENT.type: {
      const typeRef = readVarUint(r)
      if (typeRef > 6) fail('unknown type ref')
      if (typeRef === 3 || typeRef === 5) readString(r) // YXmlElement and YXmlHook carry a name
      return { content: { kind: 'other', ref }, length: 1 }
    }
    case CONTENT.doc: {
      readString(r)
      const opts = readAny(r, 0, { hit: false })
      if (opts === null || opts === undefined) fail('subdocument options must be an object')
      return { content: { kind: 'other', ref }, length: 1 }
    }
    default:
      return fail(`unknown content ref ${ref}`)
  }
}

const readStruct = (r: Reader, client: number, clock: number): ParsedStruct => {
  const info = readUint8(r)
  const ref = info & 31
  const base = {
    client, clock, origin: null, rightOrigin: null, parentName: null, parentId: null, parentSub: null, content: null
  }
  if (ref === 0 || ref === 10) {
    return { ...base, kind: ref === 0 ? 'gc' : 'skip', length: readVarUint(r) }
  }
  const origin = (info & BIT8) !== 0 ? readId(r) : null
  const rightOrigin = (info & BIT7) !== 0 ? readId(r) : null
  let parentName: string | null = null
  let parentId: IdRef | null = null
  let parentSub: string | null = null
  if ((info & (BIT7 | BIT8)) === 0) {
    if (readVarUint(r) === 1) parentName = readString(r)
    else parentId = readId(r)
    if ((info & BIT6) !== 0) parentSub = readString(r)
  }
  const { content, length } = readContent(r, ref)
  return { kind: 'item', client, clock, length, origin, rightOrigin, parentName, parentId, parentSub, content }
}

/**
 * Reads a whole V1 update. Throws MalformedUpdate for anything Yjs would fail to read, and for
 * what no Yjs encoder writes (a client twice, zero-length structs, clocks beyond 2^53,
 * trailing bytes).
 */
export const readUpdateV1 = (update: Uint8Array): ParsedUpdate => {
  const r: Reader = { arr: update, pos: 0 }
  const clients: ParsedUpdate['clients'] = []
  const seen = new Set<number>()
  const numClients = readCount(r)
  for (let i = 0; i < numClients; i++) {
    const numStructs = readCount(r)
    const client = readVarUint(r)
    if (seen.has(client)) fail('a client appears twice')
    seen.add(client)
    let clock = readVarUint(r)
    const structs: ParsedStruct[] = []
    for (let j = 0; j < numStructs; j++) {
      const s = readStruct(r, client, clock)
      if (s.length <= 0) fail('zero-length struct')
      clock += s.length
      if (clock > Number.MAX_SAFE_INTEGER) fail('clock out of range')
      structs.push(s)
    }
    clients.push({ client, structs })
  }
  const deletes: ParsedUpdate['deletes'] = []
  const numDsClients = readCount(r)
  for (let i = 0; i < numDsClients; i++) {
    const client = readVarUint(r)
    const numRanges = readCount(r)
    for (let j = 0; j < numRanges; j++) {
      const clock = readVarUint(r)
      const len = readVarUint(r)
      if (clock + len > Number.MAX_SAFE_INTEGER) fail('clock out of range')
      deletes.push({ client, clock, len })
    }
  }
  if (r.pos !== update.length) fail('trailing bytes after the update')
  return { clients, deletes }
}
