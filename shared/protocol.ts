/**
 * The y-websocket wire protocol (contract §3): one protocol message per WebSocket frame,
 * starting with a varuint message type.
 *
 *   0 sync       varuint subtype (0 step 1 | 1 step 2 | 2 update), then varUint8Array payload
 *   1 awareness  varUint8Array awareness update
 *   2 auth       varuint 0 (permission denied), varString reason  (server to client only)
 *
 * Parley puts a JSON reason `{"code","message"}` in the auth message before closing with 44xx.
 */
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

export const MESSAGE_TYPE = { sync: 0, awareness: 1, auth: 2 } as const
export const SYNC_TYPE = { step1: 0, step2: 1, update: 2 } as const
export const AUTH_PERMISSION_DENIED = 0

export type SyncMessage =
  | { type: 'sync'; subtype: 'step1'; stateVector: Uint8Array }
  | { type: 'sync'; subtype: 'step2' | 'update'; update: Uint8Array }
  | { type: 'awareness'; update: Uint8Array }
  | { type: 'auth'; denied: boolean; reason: string }

/**
 * Decodes one frame. Throws (a lib0 decoding error or a plain Error) on a malformed frame or an
 * unknown type; the caller maps that to `MALFORMED_MESSAGE` / `UNKNOWN_MESSAGE_TYPE`.
 */
export const readMessage = (frame: Uint8Array): SyncMessage => {
  const decoder = decoding.createDecoder(frame)
  const type = decoding.readVarUint(decoder)
  let msg: SyncMessage
  switch (type) {
    case MESSAGE_TYPE.sync: {
      const sub = decoding.readVarUint(decoder)
      const payload = decoding.readVarUint8Array(decoder)
      if (sub === SYNC_TYPE.step1) msg = { type: 'sync', subtype: 'step1', stateVector: payload }
      else if (sub === SYNC_TYPE.step2) msg = { type: 'sync', subtype: 'step2', update: payload }
      else if (sub === SYNC_TYPE.update) msg = { type: 'sync', subtype: 'update', update: payload }
      else throw new UnknownMessageTypeError(`unknown sync subtype ${sub}`)
      break
    }
    case MESSAGE_TYPE.awareness:
      msg = { type: 'awareness', update: decoding.readVarUint8Array(decoder) }
      break
    case MESSAGE_TYPE.auth: {
      const denied = decoding.readVarUint(decoder) === AUTH_PERMISSION_DENIED
      msg = { type: 'auth', denied, reason: decoding.readVarString(decoder) }
      break
    }
    default:
      throw new UnknownMessageTypeError(`unknown message type ${type}`)
  }
  if (decoding.hasContent(decoder)) throw new Error('trailing bytes after the message')
  return msg
}

/** Raised by `readMessage` for a type or subtype the protocol does not have. */
export class UnknownMessageTypeError extends Error {}

const encodeSync = (subtype: number, payload: Uint8Array): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, MESSAGE_TYPE.sync)
  encoding.writeVarUint(e, subtype)
  encoding.writeVarUint8Array(e, payload)
  return encoding.toUint8Array(e)
}

/** A sync step 1 frame carrying `stateVector`. */
export const encodeSyncStep1 = (stateVector: Uint8Array): Uint8Array => encodeSync(SYNC_TYPE.step1, stateVector)

/** A sync step 2 frame carrying `update`. */
export const encodeSyncStep2 = (update: Uint8Array): Uint8Array => encodeSync(SYNC_TYPE.step2, update)

/** A sync update frame carrying `update`. */
export const encodeSyncUpdate = (update: Uint8Array): Uint8Array => encodeSync(SYNC_TYPE.update, update)

/** An awareness frame carrying an encoded awareness update. */
export const encodeAwareness = (awarenessUpdate: Uint8Array): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, MESSAGE_TYPE.awareness)
  encoding.writeVarUint8Array(e, awarenessUpdate)
  return encoding.toUint8Array(e)
}

/** An auth "permission denied" frame whose reason is the JSON `{code, message}`. */
export const encodePermissionDenied = (code: string, message: string): Uint8Array => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, MESSAGE_TYPE.auth)
  encoding.writeVarUint(e, AUTH_PERMISSION_DENIED)
  encoding.writeVarString(e, JSON.stringify({ code, message }))
  return encoding.toUint8Array(e)
}
