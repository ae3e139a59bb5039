/**
 * Frames over the limit end the connection with 4413 (contract §7), not with ws's own 1009.
 *
 * ws checks `maxPayload` while parsing a frame header, before buffering the payload, and then
 * closes with the status code carried by the error its receiver creates. We keep that early
 * check (memory stays bounded) and only change the code: the receiver of each accepted socket
 * gets a `createError` that maps ws's length error to 4413 and first sends the auth message.
 * This relies on ws 8 internals (`_receiver`, `createError`); the version is pinned and a test
 * sends a 1 MiB + 1 byte frame to catch any change.
 */
import type { WebSocket } from 'ws'

export const MAX_FRAME_BYTES = 1024 * 1024

type CreateError = (ctor: ErrorConstructor, message: string, prefix: boolean, statusCode: number, errorCode: string) => Error

interface ReceiverLike { createError: CreateError }

/** Makes an oversized frame close `ws` with `closeCode`, calling `beforeClose` first. */
export const mapOversizeFrames = (ws: WebSocket, closeCode: number, beforeClose: () => void): void => {
  const receiver = (ws as unknown as { _receiver?: ReceiverLike })._receiver
  if (receiver === undefined || typeof receiver.createError !== 'function') {
    throw new Error('ws internals changed: cannot map oversized frames to 4413')
  }
  const original = receiver.createError
  receiver.createError = function (ctor, message, prefix, statusCode, errorCode) {
    if (errorCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      beforeClose()
      return original.call(this, ctor, message, prefix, closeCode, errorCode)
    }
    return original.call(this, ctor, message, prefix, statusCode, errorCode)
  }
}
