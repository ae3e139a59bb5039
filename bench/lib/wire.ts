/**
 * The y-websocket wire protocol, as much as a load generator needs: the constant frames a
 * stock client with an empty document sends, and a zero-copy reader of awareness updates.
 *
 *   frame       = varuint type (0 sync | 1 awareness | 2 auth | 3 query awareness), payload
 *   sync        = varuint subtype (0 step 1 | 1 step 2 | 2 update), varUint8Array
 *   awareness   = varUint8Array( varuint n, n × (varuint clientId, varuint clock, varString json) )
 */
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'

export const MSG_SYNC = 0
export const MSG_AWARENESS = 1
export const MSG_AUTH = 2
export const MSG_QUERY_AWARENESS = 3
export const SYNC_STEP1 = 0
export const SYNC_STEP2 = 1
export const SYNC_UPDATE = 2

/**
 * Sync step 1 of an empty Y.Doc: `[0 sync, 0 step1, varUint8Array(encodeStateVector(empty) = [0])]`,
 * byte for byte what `WebsocketProvider` sends on open with a fresh document.
 */
export const EMPTY_DOC_STEP1 = Uint8Array.of(MSG_SYNC, SYNC_STEP1, 1, 0)

/**
 * Sync step 2 of an empty Y.Doc answering any state vector:
 * `[0 sync, 1 step2, varUint8Array(encodeStateAsUpdate(empty) = [0 structs, 0 deletes])]`.
 * A guest never writes, so its document never holds anything of its own to send.
 */
export const EMPTY_DOC_STEP2 = Uint8Array.of(MSG_SYNC, SYNC_STEP2, 2, 0, 0)

/** One entry of an awareness update; `start`/`end` delimit its bytes inside the update. */
export interface AwarenessEntryView {
  clientId: number
  clock: number
  json: string
  start: number
  end: number
}

/**
 * Reads an awareness frame (type byte included). Returns the update's byte range inside
 * `frame` and its entries, or null if the frame is not an awareness frame.
 */
export const readAwarenessFrame = (frame: Uint8Array): { update: Uint8Array, entries: AwarenessEntryView[] } | null => {
  const outer = decoding.createDecoder(frame)
  if (decoding.readVarUint(outer) !== MSG_AWARENESS) return null
  const update = decoding.readVarUint8Array(outer)
  const d = decoding.createDecoder(update)
  const n = decoding.readVarUint(d)
  const entries: AwarenessEntryView[] = []
  for (let i = 0; i < n; i++) {
    const start = d.pos
    const clientId = decoding.readVarUint(d)
    const clock = decoding.readVarUint(d)
    const json = decoding.readVarString(d)
    entries.push({ clientId, clock, json, start, end: d.pos })
  }
  return { update, entries }
}

/** An awareness frame holding the given entries, each `{ clientId, clock, json }`. */
export const encodeAwarenessFrame = (entries: ReadonlyArray<{ clientId: number, clock: number, json: string }>): Uint8Array => {
  const inner = encoding.createEncoder()
  encoding.writeVarUint(inner, entries.length)
  for (const e of entries) {
    encoding.writeVarUint(inner, e.clientId)
    encoding.writeVarUint(inner, e.clock)
    encoding.writeVarString(inner, e.json)
  }
  return wrapAwareness(encoding.toUint8Array(inner))
}

/** An awareness frame re-using some entries of a received update, byte for byte. */
export const encodeAwarenessSubset = (update: Uint8Array, entries: readonly AwarenessEntryView[]): Uint8Array => {
  const inner = encoding.createEncoder()
  encoding.writeVarUint(inner, entries.length)
  for (const e of entries) encoding.writeUint8Array(inner, update.subarray(e.start, e.end))
  return wrapAwareness(encoding.toUint8Array(inner))
}

const wrapAwareness = (update: Uint8Array): Uint8Array => {
  const outer = encoding.createEncoder()
  encoding.writeVarUint(outer, MSG_AWARENESS)
  encoding.writeVarUint8Array(outer, update)
  return encoding.toUint8Array(outer)
}

/** The sync subtype of a sync frame, or -1 for any other frame. */
export const syncSubtype = (frame: Uint8Array): number => {
  if (frame.length < 2 || frame[0] !== MSG_SYNC) return -1
  return frame[1]
}
