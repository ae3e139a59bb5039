/**
 * The `Range` request header of a download (RFC 9110 §14): one byte range, `bytes=a-b`, `bytes=a-`
 * or `bytes=-n`. Several ranges, or another unit, are ignored (the whole file is sent), as the
 * RFC allows; a range outside the file is RANGE_NOT_SATISFIABLE.
 */
import { ChatError } from '../../shared/errors.ts'

/** The inclusive byte range to send, or null for the whole file. */
export const parseRange = (header: string | undefined, size: number): { start: number, end: number } | null => {
  if (header === undefined) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return null
  let start: number
  let end: number
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0) throw new ChatError('RANGE_NOT_SATISFIABLE')
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (!Number.isSafeInteger(start) || start >= size || end < start) throw new ChatError('RANGE_NOT_SATISFIABLE')
  return { start, end }
}
