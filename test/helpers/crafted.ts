/**
 * Helpers to craft hostile input for the sync endpoint: hand-built Yjs V1 updates (any struct
 * Yjs can decode, including ones no honest Y.Doc would emit), y-websocket frames, awareness
 * updates, and a raw socket peer that syncs a local Y.Doc over the wire so a test can derive
 * honest-looking updates from it and then send whatever it likes.
 */
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import {
  encodeAwareness, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate, MESSAGE_TYPE, SYNC_TYPE
} from '../../shared/protocol.ts'
import { connectRaw, waitFor, type RawClient } from './clients.ts'

export { encodeAwareness, encodeSyncStep1, encodeSyncStep2, encodeSyncUpdate }

// ---------------------------------------------------------------------------------------------
// Hand-crafted V1 updates (the same encoder as test/shared/update-judge.test.ts).

export type Ref = [client: number, clock: number]
export type Content =
  | { any: unknown[] } | { deleted: number } | { string: string } | { gc: number } | { skip: number }
  | { anyRaw: (e: encoding.Encoder) => void, length: number }
export interface CraftStruct { origin?: Ref, rightOrigin?: Ref, parent?: string | Ref, parentSub?: string, content: Content }
export interface CraftBlock { client: number, clock: number, structs: CraftStruct[] }
export type CraftDelete = [client: number, clock: number, len: number]

const writeId = (e: encoding.Encoder, [client, clock]: Ref): void => {
  encoding.writeVarUint(e, client)
  encoding.writeVarUint(e, clock)
}

/**
 * A Yjs V1 update holding exactly the given structs and deletions. An item with an origin or a
 * right origin carries no parent (Yjs takes it from the origin), like the real encoder.
 */
export const craft = (blocks: CraftBlock[], deletes: CraftDelete[] = []): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, blocks.length)
  for (const b of blocks) {
    encoding.writeVarUint(e, b.structs.length)
    encoding.writeVarUint(e, b.client)
    encoding.writeVarUint(e, b.clock)
    for (const s of b.structs) {
      const c = s.content
      if ('gc' in c || 'skip' in c) {
        encoding.writeUint8(e, 'gc' in c ? 0 : 10)
        encoding.writeVarUint(e, 'gc' in c ? c.gc : c.skip)
        continue
      }
      const ref = 'deleted' in c ? 1 : 'string' in c ? 4 : 8
      const info = ref | (s.origin !== undefined ? 128 : 0) | (s.rightOrigin !== undefined ? 64 : 0) |
        (s.parentSub !== undefined ? 32 : 0)
      encoding.writeUint8(e, info)
      if (s.origin !== undefined) writeId(e, s.origin)
      if (s.rightOrigin !== undefined) writeId(e, s.rightOrigin)
      if (s.origin === undefined && s.rightOrigin === undefined) {
        if (typeof s.parent === 'string') {
          encoding.writeVarUint(e, 1)
          encoding.writeVarString(e, s.parent)
        } else {
          encoding.writeVarUint(e, 0)
          writeId(e, s.parent ?? [0, 0])
        }
        if (s.parentSub !== undefined) encoding.writeVarString(e, s.parentSub)
      }
      if ('deleted' in c) encoding.writeVarUint(e, c.deleted)
      else if ('string' in c) encoding.writeVarString(e, c.string)
      else if ('any' in c) {
        encoding.writeVarUint(e, c.any.length)
        for (const v of c.any) encoding.writeAny(e, v as encoding.AnyEncodable)
      } else {
        encoding.writeVarUint(e, c.length)
        c.anyRaw(e)
      }
    }
  }
  const byClient = new Map<number, Array<[number, number]>>()
  for (const [client, clock, len] of deletes) {
    const list = byClient.get(client) ?? []
    list.push([clock, len])
    byClient.set(client, list)
  }
  encoding.writeVarUint(e, byClient.size)
  for (const [client, list] of byClient) {
    encoding.writeVarUint(e, client)
    encoding.writeVarUint(e, list.length)
    for (const [clock, len] of list) {
      encoding.writeVarUint(e, clock)
      encoding.writeVarUint(e, len)
    }
  }
  return encoding.toUint8Array(e)
}

/** A message object of the pinned shape, with `extra` keys merged in (or overriding). */
export const msg = (id: string, senderId: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ id, senderId, text: `text of ${id}`, createdAt: 1_700_000_000_000, type: 'UserMessage', ...extra })

/** The id of the current value item of `root[key]` in `doc`. */
export const mapEntryId = (doc: Y.Doc, root: string, key: string): Ref => {
  const item = doc.getMap(root)._map.get(key)
  if (item === undefined) throw new Error(`no ${root}[${key}]`)
  return [item.id.client, item.id.clock]
}

/** The id of the last element of the item holding `messages[index]`. */
export const messageItemId = (doc: Y.Doc, index: number): Ref => {
  let n = index
  for (let item = doc.getArray('messages')._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue
    if (n < item.length) return [item.id.client, item.id.clock + n]
    n -= item.length
  }
  throw new Error(`no messages[${index}]`)
}

/** What `fn` changes in `doc`, as one V1 update (the structs it adds and the whole delete set). */
export const changesOf = (doc: Y.Doc, fn: (doc: Y.Doc) => void): Uint8Array => {
  const sv = Y.encodeStateVector(doc)
  fn(doc)
  return Y.encodeStateAsUpdate(doc, sv)
}

// ---------------------------------------------------------------------------------------------
// Awareness.

export interface CraftAwarenessEntry {
  clientId: number
  clock: number
  /** A JSON value (encoded with JSON.stringify), or `{ raw }` for JSON text as is. */
  state: unknown
}

/** A y-protocols awareness update (without the message type). */
export const craftAwareness = (entries: CraftAwarenessEntry[]): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, entries.length)
  for (const x of entries) {
    encoding.writeVarUint(e, x.clientId)
    encoding.writeVarUint(e, x.clock)
    const raw = typeof x.state === 'object' && x.state !== null && 'raw' in x.state ? (x.state as { raw: unknown }).raw : undefined
    encoding.writeVarString(e, typeof raw === 'string' ? raw : JSON.stringify(x.state))
  }
  return encoding.toUint8Array(e)
}

/** An awareness frame (message type 1) with the given entries. */
export const awarenessFrame = (entries: CraftAwarenessEntry[]): Uint8Array => encodeAwareness(craftAwareness(entries))

// ---------------------------------------------------------------------------------------------
// A raw peer: a raw WebSocket plus a local Y.Doc kept in sync from the server's frames.

export interface RawPeer extends RawClient {
  /** The local replica; its clientID is the one given to `connectRawPeer`. */
  doc: Y.Doc
  /** Sends a frame as is. */
  send (frame: Uint8Array | string): void
  /** Sends `update` as a sync update (type 0, subtype 2). */
  sendUpdate (update: Uint8Array): void
  /** Sends `update` as a sync step 2 (type 0, subtype 1). */
  sendStep2 (update: Uint8Array): void
  /**
   * Sends a sync step 1 and waits for the server's step 2 answer to it (the server answers each
   * step 1 with one step 2, in order). The server processes a connection's frames in order, so
   * the answer proves every earlier frame was handled without closing the connection. Resolves
   * false when the connection closed instead.
   */
  barrier (ms?: number): Promise<boolean>
  /** True while the socket is open and no close was received. */
  isOpen (): boolean
  /** Closes the socket normally. */
  end (): void
}

const readSyncFrame = (frame: Uint8Array): { sub: number, payload: Uint8Array } | null => {
  try {
    const d = decoding.createDecoder(frame)
    if (decoding.readVarUint(d) !== MESSAGE_TYPE.sync) return null
    const sub = decoding.readVarUint(d)
    return { sub, payload: decoding.readVarUint8Array(d) }
  } catch {
    return null
  }
}

/**
 * Connects a raw peer to `url` (with its token and params) and syncs its local doc from the
 * server (the server's answer to a step 1 with an empty state vector). `clientId` fixes the
 * local doc's Yjs client id. Updates the server forwards later are applied to the local doc.
 */
export const connectRawPeer = async (url: string, clientId: number, ms = 5000): Promise<RawPeer> => {
  const raw = connectRaw(url)
  const doc = new Y.Doc()
  let step2s = 0
  let closedFlag = false
  void raw.closed.then(() => { closedFlag = true })
  raw.ws.on('message', (data: Buffer) => {
    const m = readSyncFrame(new Uint8Array(data))
    if (m === null) return
    if (m.sub === SYNC_TYPE.step2) step2s++
    if (m.sub === SYNC_TYPE.step2 || m.sub === SYNC_TYPE.update) {
      try { Y.applyUpdate(doc, m.payload, 'server') } catch { /* a test may look at raw frames instead */ }
    }
  })
  // Step 1 frames sent (by the first two bytes): the server answers each with one step 2, in order.
  let step1s = 0
  const send = (frame: Uint8Array | string): void => {
    if (raw.ws.readyState !== raw.ws.OPEN) return
    if (typeof frame !== 'string' && frame[0] === MESSAGE_TYPE.sync && frame[1] === SYNC_TYPE.step1) step1s++
    raw.ws.send(frame)
  }
  const peer: RawPeer = {
    ...raw,
    doc,
    send,
    sendUpdate: u => send(encodeSyncUpdate(u)),
    sendStep2: u => send(encodeSyncStep2(u)),
    async barrier (wait = 5000) {
      if (closedFlag) return false
      send(encodeSyncStep1(Y.encodeStateVector(doc)))
      const target = step1s
      await waitFor(() => step2s >= target || closedFlag, wait, 'a sync step 2 answer')
      return step2s >= target
    },
    isOpen: () => !closedFlag && raw.ws.readyState === raw.ws.OPEN,
    end: () => { raw.ws.close() }
  }
  await Promise.race([raw.opened, raw.closed])
  if (!closedFlag) await peer.barrier(ms)
  // Set only now: Yjs gives a doc a new client id (with a warning) when a remote update holds
  // structs under its own id, as the initial sync does for a reconnecting client's id.
  doc.clientID = clientId
  return peer
}
