/**
 * Decides an upload's content type from its first bytes, never from what the client claimed:
 * `file-type` recognises binary formats by their signatures; bytes it does not know are
 * `text/plain; charset=utf-8` when they decode as UTF-8 text without control characters, and
 * `application/octet-stream` otherwise. Raster images also get their width and height
 * (`image-size`), when the header holds them.
 */
import { fileTypeFromBuffer } from 'file-type'
import { imageSize } from 'image-size'

/** Bytes of a file's head that sniffing reads. */
export const SNIFF_BYTES = 64 * 1024

/** Image types served inline and measured; anything else (SVG included) is a download. */
export const INLINE_IMAGE_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'])

export interface Sniffed {
  contentType: string
  width?: number
  height?: number
}

const looksLikeText = (head: Uint8Array, complete: boolean): boolean => {
  if (head.byteLength === 0) return false
  // A multi-byte character cut at the end of the head is not an error.
  const body = complete ? head : head.subarray(0, Math.max(0, head.byteLength - 4))
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  } catch {
    return false
  }
  return !/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)
}

/** The type (and image size) of a file whose first bytes are `head`; `complete` when head is the whole file. */
export const sniff = async (head: Uint8Array, complete: boolean): Promise<Sniffed> => {
  const found = await fileTypeFromBuffer(head)
  if (found === undefined) return { contentType: looksLikeText(head, complete) ? 'text/plain; charset=utf-8' : 'application/octet-stream' }
  if (!INLINE_IMAGE_TYPES.has(found.mime)) return { contentType: found.mime }
  try {
    const size = imageSize(head)
    if (typeof size.width === 'number' && typeof size.height === 'number') return { contentType: found.mime, width: size.width, height: size.height }
  } catch {
    // The dimensions lie past the head (or the header is damaged): the type alone.
  }
  return { contentType: found.mime }
}
