/**
 * A pure reader of LevelDB's log format (the `*.log` write-ahead log and the MANIFEST share it),
 * written so Parley can see corruption that LevelDB's own recovery drops silently.
 *
 * Format: the file is a sequence of 32 KiB blocks. A physical record is a 7-byte header,
 * masked CRC-32C (4, little-endian) | payload length (2, little-endian) | type (1), then the
 * payload; the checksum covers the type byte and the payload. Types: FULL = 1, or a logical
 * record split across blocks as FIRST = 2, MIDDLE* = 3, LAST = 4. A record never crosses a block
 * boundary: fewer than 7 bytes left in a block are a zero trailer. An all-zero header (type 0,
 * length 0) marks zero padding for the rest of the block.
 *
 * `scanLog` reads like LevelDB (aligned to blocks) until the first problem; from there it looks
 * at every following byte offset for the next record whose checksum holds, so records written
 * after a misalignment (a failed append moves LevelDB's block offset, facts.md) are still found.
 * A record cut off by the end of the file is the normal trace of a crash mid-write and is no
 * problem, unless a valid record follows it (then it was a misalignment, not a cut).
 */
import { crc32c, unmaskCrc } from './crc32c.ts'

/** LevelDB log block size in bytes; physical records never cross a block boundary. */
export const BLOCK_SIZE = 32768
/** Bytes of a physical record header: checksum (4), length (2), type (1). */
export const HEADER_SIZE = 7

/** Physical record types (db/log_format.h). */
export const RECORD_TYPE = { ZERO: 0, FULL: 1, FIRST: 2, MIDDLE: 3, LAST: 4 } as const

/** A logical record (a whole write batch), with the file offset of its first fragment. */
export interface LogRecord {
  offset: number
  data: Uint8Array
}

/** Something in the file that is not a clean record; `offset` in bytes from the file start. */
export interface LogProblem {
  offset: number
  reason: string
}

export interface LogScan {
  records: LogRecord[]
  problems: LogProblem[]
  /** Offset of a record cut off by the end of the file (crash mid-write), if any. */
  truncatedAt: number | null
  /** Bytes that belong to no valid record (besides block trailers and padding). */
  unreadableBytes: number
}

const u16 = (b: Uint8Array, i: number): number => b[i] | (b[i + 1] << 8)
const u32 = (b: Uint8Array, i: number): number => (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0

const checksumHolds = (buf: Uint8Array, pos: number, length: number): boolean =>
  unmaskCrc(u32(buf, pos)) === crc32c(buf, pos + 6, pos + HEADER_SIZE + length)

/** True when a physical record with a valid checksum starts at `pos` (any alignment). */
const isValidRecordAt = (buf: Uint8Array, pos: number): boolean => {
  if (buf.length - pos < HEADER_SIZE) return false
  const length = u16(buf, pos + 4)
  const type = buf[pos + 6]
  if (type < RECORD_TYPE.FULL || type > RECORD_TYPE.LAST) return false
  if (length > BLOCK_SIZE - HEADER_SIZE || pos + HEADER_SIZE + length > buf.length) return false
  return checksumHolds(buf, pos, length)
}

const nextValidRecord = (buf: Uint8Array, from: number): number => {
  for (let p = from; p + HEADER_SIZE <= buf.length; p++) if (isValidRecordAt(buf, p)) return p
  return -1
}

const isZero = (buf: Uint8Array, start: number, end: number): boolean => {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false
  return true
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Reads every record of one log file's bytes; see the module header for what counts as a problem. */
export const scanLog = (buf: Uint8Array): LogScan => {
  const records: LogRecord[] = []
  const problems: LogProblem[] = []
  let truncatedAt: number | null = null
  let unreadableBytes = 0
  let fragments: Uint8Array[] | null = null
  let fragmentStart = 0
  let aligned = true
  let pos = 0

  const problem = (offset: number, reason: string): void => { problems.push({ offset, reason }) }
  /** Leaves aligned reading at `offset` and skips to the next valid record at or after `from`. */
  const resync = (from: number): void => {
    aligned = false
    const next = nextValidRecord(buf, from)
    const end = next < 0 ? buf.length : next
    unreadableBytes += end - pos
    pos = end
  }

  while (pos < buf.length) {
    if (aligned) {
      const blockEnd = (Math.floor(pos / BLOCK_SIZE) + 1) * BLOCK_SIZE
      if (blockEnd - pos < HEADER_SIZE) { pos = Math.min(blockEnd, buf.length); continue }
      const length = buf.length - pos >= HEADER_SIZE ? u16(buf, pos + 4) : 0
      const type = buf.length - pos >= HEADER_SIZE ? buf[pos + 6] : -1
      if (type === RECORD_TYPE.ZERO && length === 0 && isZero(buf, pos, pos + 4)) {
        const end = Math.min(blockEnd, buf.length)
        if (isZero(buf, pos, end)) { pos = end; continue }
        problem(pos, 'data after zero padding')
        resync(pos + 1)
        continue
      }
      if (type === -1 || pos + HEADER_SIZE + length > buf.length) {
        // Cut off by the end of the file: a crash mid-write, unless a valid record follows.
        const next = nextValidRecord(buf, pos + 1)
        if (next < 0) { truncatedAt = pos; break }
        problem(pos, `record runs past the end of the file, but a valid record follows at offset ${next}`)
        resync(pos + 1)
        continue
      }
      if (pos + HEADER_SIZE + length > blockEnd) { problem(pos, 'bad record length'); resync(pos + 1); continue }
      if (!checksumHolds(buf, pos, length)) { problem(pos, 'checksum mismatch'); resync(pos + 1); continue }
    }
    const length = u16(buf, pos + 4)
    const type = buf[pos + 6]
    const payload = buf.subarray(pos + HEADER_SIZE, pos + HEADER_SIZE + length)
    switch (type) {
      case RECORD_TYPE.FULL:
        if (fragments !== null) problem(fragmentStart, 'fragmented record without its last part')
        fragments = null
        records.push({ offset: pos, data: payload })
        break
      case RECORD_TYPE.FIRST:
        if (fragments !== null) problem(fragmentStart, 'fragmented record without its last part')
        fragments = [payload]
        fragmentStart = pos
        break
      case RECORD_TYPE.MIDDLE:
      case RECORD_TYPE.LAST:
        if (fragments === null) {
          problem(pos, 'fragment without the start of its record')
        } else if (type === RECORD_TYPE.MIDDLE) {
          fragments.push(payload)
        } else {
          fragments.push(payload)
          records.push({ offset: fragmentStart, data: concat(fragments) })
          fragments = null
        }
        break
      default:
        problem(pos, `unknown record type ${type}`)
        resync(pos + 1)
        continue
    }
    pos += HEADER_SIZE + length
    if (!aligned) resync(pos)
  }
  // A record begun but not finished at the end of the file: a crash mid-write.
  if (fragments !== null) truncatedAt = fragmentStart
  return { records, problems, truncatedAt, unreadableBytes }
}

/** One operation of a LevelDB write batch; keys and values are raw bytes. */
export type BatchOp = { type: 'put', key: Uint8Array, value: Uint8Array } | { type: 'del', key: Uint8Array }

/** A decoded write batch: the sequence number of its first operation, and its operations. */
export interface WriteBatch {
  sequence: bigint
  ops: BatchOp[]
}

const readVarint32 = (b: Uint8Array, at: { i: number }): number => {
  let result = 0
  for (let shift = 0; shift <= 28; shift += 7) {
    if (at.i >= b.length) throw new Error('varint past the end')
    const byte = b[at.i++]
    result |= (byte & 0x7f) << shift
    if ((byte & 0x80) === 0) return result >>> 0
  }
  throw new Error('varint too long')
}

const readSlice = (b: Uint8Array, at: { i: number }): Uint8Array => {
  const n = readVarint32(b, at)
  if (at.i + n > b.length) throw new Error('slice past the end')
  const out = b.subarray(at.i, at.i + n)
  at.i += n
  return out
}

/**
 * Decodes a log record as a write batch: sequence (8, LE) | count (4, LE) | count times
 * (tag 1 = put: varint key length, key, varint value length, value; tag 0 = delete: key).
 * Throws when the bytes are not a whole, well-formed batch.
 */
export const decodeWriteBatch = (data: Uint8Array): WriteBatch => {
  if (data.length < 12) throw new Error('write batch shorter than its header')
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const sequence = view.getBigUint64(0, true)
  const count = view.getUint32(8, true)
  const at = { i: 12 }
  const ops: BatchOp[] = []
  for (let n = 0; n < count; n++) {
    if (at.i >= data.length) throw new Error(`write batch holds ${n} of its ${count} operations`)
    const tag = data[at.i++]
    if (tag === 1) {
      const key = readSlice(data, at)
      ops.push({ type: 'put', key, value: readSlice(data, at) })
    } else if (tag === 0) {
      ops.push({ type: 'del', key: readSlice(data, at) })
    } else {
      throw new Error(`unknown write batch tag ${tag}`)
    }
  }
  if (at.i !== data.length) throw new Error('bytes after the last operation of a write batch')
  return { sequence, ops }
}
