/**
 * The Parley backup file: a raw copy of every LevelDB entry and every uploaded file, streamed,
 * versioned, checksummed.
 *
 * Format v2 (integers little-endian):
 *   header   "PARLEYBK" (8) | version u16 = 2 | meta length u32 | meta (UTF-8 JSON:
 *            { createdAt: ms since the epoch, layout: storage layout version, e.g. "v1" })
 *   record*  0x01 | key length u32 | value length u32 | key | value      (raw bytes, key order)
 *   file*    0x02 | key length u32 | size u64 | key | bytes             (blob key, UTF-8; the file)
 *   trailer  0xFF | record count u64 (records and files) | SHA-256 (32) of every byte before it
 * Version 1 is version 2 without files (backups taken before files were included); both are
 * read. A file without its trailer, with bytes after it, or whose count or checksum disagree is
 * damaged. Encoding and decoding stream: neither ever holds more than one chunk of records, nor
 * more than one piece of a file.
 */
import { createHash, type Hash } from 'node:crypto'

/** The first 8 bytes of every backup file. */
export const BACKUP_MAGIC = 'PARLEYBK'
/** The format version written; this one and version 1 are read. */
export const BACKUP_VERSION = 2
const TAG_RECORD = 0x01
const TAG_FILE = 0x02
const TAG_TRAILER = 0xff
const CHECKSUM_BYTES = 32
/** Records are written out in chunks of about this many bytes. */
const CHUNK_BYTES = 64 * 1024
/** Larger lengths can only come from a damaged file (LevelDB keys are short; values are updates). */
const MAX_KEY_BYTES = 64 * 1024
const MAX_VALUE_BYTES = 1024 * 1024 * 1024
/** Bytes of a file handed out at a time when decoding. */
const FILE_PIECE_BYTES = 64 * 1024

export interface BackupMeta {
  createdAt: number
  layout: string
}

/** Raised when a backup file is not a whole, intact backup; the message says where and why. */
export class BackupFormatError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'BackupFormatError'
  }
}

const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b }

/** An uploaded file to back up: its blob key, its size, and its bytes (exactly `size` of them). */
export interface BackupFile {
  key: string
  size: number
  bytes: AsyncIterable<Uint8Array>
}

/**
 * Encodes entries, then files, as a backup file, in chunks ready to write. `files` is read only
 * once every entry is written (so it may depend on what the entries held). A file whose bytes
 * are not its stated size throws: the backup would not be what the store held.
 */
export async function * encodeBackup (entries: AsyncIterable<[Uint8Array, Uint8Array]>, meta: BackupMeta, files: AsyncIterable<BackupFile> = (async function * () {})()): AsyncGenerator<Buffer> {
  const hash = createHash('sha256')
  const emit = (b: Buffer): Buffer => { hash.update(b); return b }
  const metaBytes = Buffer.from(JSON.stringify(meta))
  const version = Buffer.alloc(2)
  version.writeUInt16LE(BACKUP_VERSION)
  yield emit(Buffer.concat([Buffer.from(BACKUP_MAGIC, 'latin1'), version, u32(metaBytes.length), metaBytes]))
  let pending: Buffer[] = []
  let pendingBytes = 0
  let count = 0n
  for await (const [key, value] of entries) {
    const head = Buffer.alloc(9)
    head[0] = TAG_RECORD
    head.writeUInt32LE(key.length, 1)
    head.writeUInt32LE(value.length, 5)
    pending.push(head, Buffer.from(key.buffer, key.byteOffset, key.length), Buffer.from(value.buffer, value.byteOffset, value.length))
    pendingBytes += 9 + key.length + value.length
    count++
    if (pendingBytes >= CHUNK_BYTES) {
      yield emit(Buffer.concat(pending))
      pending = []
      pendingBytes = 0
    }
  }
  if (pendingBytes > 0) yield emit(Buffer.concat(pending))
  pending = []
  for await (const file of files) {
    const key = Buffer.from(file.key, 'utf8')
    const head = Buffer.alloc(13)
    head[0] = TAG_FILE
    head.writeUInt32LE(key.length, 1)
    head.writeBigUInt64LE(BigInt(file.size), 5)
    yield emit(Buffer.concat([head, key]))
    let written = 0
    for await (const piece of file.bytes) {
      written += piece.byteLength
      if (written > file.size) break
      yield emit(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength))
    }
    if (written !== file.size) throw new Error(`file ${file.key} changed while it was backed up (${file.size} bytes stated, ${written} read)`)
    count++
  }
  const trailer = Buffer.alloc(9)
  trailer[0] = TAG_TRAILER
  trailer.writeBigUInt64LE(count, 1)
  yield emit(trailer)
  yield hash.digest()
}

/** Pulls exact byte counts from a chunk stream, hashing what it hands out. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0)
  private off = 0
  /** Bytes handed out so far: the file offset of the next read. */
  offset = 0
  readonly hash: Hash = createHash('sha256')
  private readonly source: AsyncIterator<Uint8Array>

  constructor (source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]()
  }

  /** True when at least one more byte is available. */
  async more (): Promise<boolean> {
    while (this.buf.length - this.off === 0) {
      const next = await this.source.next()
      if (next.done === true) return false
      this.buf = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length)
      this.off = 0
    }
    return true
  }

  async read (n: number, what: string, hashed = true): Promise<Buffer> {
    while (this.buf.length - this.off < n) {
      const next = await this.source.next()
      if (next.done === true) throw new BackupFormatError(`the file ends inside the ${what} at offset ${this.offset}: the backup is incomplete`)
      this.buf = Buffer.concat([this.buf.subarray(this.off), next.value])
      this.off = 0
    }
    const out = this.buf.subarray(this.off, this.off + n)
    this.off += n
    this.offset += n
    if (hashed) this.hash.update(out)
    return out
  }
}

export type BackupPart =
  | { kind: 'meta', meta: BackupMeta }
  | { kind: 'entry', key: Buffer, value: Buffer }
  /** An uploaded file: read `bytes` before asking for the next part (what is left unread is skipped). */
  | { kind: 'file', key: string, size: number, bytes: AsyncIterable<Buffer> }
  /** `count`: entries; `files`: uploaded files. */
  | { kind: 'end', count: number, files: number }

/**
 * Decodes a backup file: its meta first, then each entry and file, then `end` once the count
 * and the checksum have been verified. Throws BackupFormatError on anything else, so a consumer
 * must treat everything it received (files included) as unverified until `end` arrives.
 */
export async function * decodeBackup (source: AsyncIterable<Uint8Array>): AsyncGenerator<BackupPart> {
  const r = new ByteReader(source)
  const magic = (await r.read(8, 'header')).toString('latin1')
  if (magic !== BACKUP_MAGIC) throw new BackupFormatError('not a Parley backup (bad magic)')
  const version = (await r.read(2, 'header')).readUInt16LE()
  if (version !== BACKUP_VERSION && version !== 1) throw new BackupFormatError(`backup format version ${version} is not supported (this Parley reads versions 1 and ${BACKUP_VERSION})`)
  const metaLength = (await r.read(4, 'header')).readUInt32LE()
  let meta: BackupMeta
  try {
    meta = JSON.parse((await r.read(metaLength, 'header')).toString('utf8')) as BackupMeta
  } catch (e) {
    if (e instanceof BackupFormatError) throw e
    throw new BackupFormatError('the backup header is damaged (meta is not JSON)')
  }
  if (typeof meta.createdAt !== 'number' || typeof meta.layout !== 'string') throw new BackupFormatError('the backup header is damaged (meta fields)')
  yield { kind: 'meta', meta }
  let count = 0
  let files = 0
  for (;;) {
    const at = r.offset
    const tag = (await r.read(1, 'record'))[0]
    if (tag === TAG_TRAILER) break
    if (tag === TAG_FILE && version >= 2) {
      const head = await r.read(12, 'file')
      const keyLength = head.readUInt32LE(0)
      const size = head.readBigUInt64LE(4)
      if (keyLength > MAX_KEY_BYTES || size > BigInt(Number.MAX_SAFE_INTEGER)) throw new BackupFormatError(`impossible file length at offset ${at}: the backup is damaged`)
      const key = (await r.read(keyLength, 'file')).toString('utf8')
      let left = Number(size)
      const bytes = async function * (): AsyncGenerator<Buffer> {
        while (left > 0) {
          const piece = await r.read(Math.min(left, FILE_PIECE_BYTES), 'file')
          left -= piece.length
          yield piece
        }
      }
      yield { kind: 'file', key, size: Number(size), bytes: bytes() }
      while (left > 0) left -= (await r.read(Math.min(left, FILE_PIECE_BYTES), 'file')).length
      files++
      continue
    }
    if (tag !== TAG_RECORD) throw new BackupFormatError(`unknown record tag ${tag} at offset ${at}: the backup is damaged`)
    const head = await r.read(8, 'record')
    const keyLength = head.readUInt32LE(0)
    const valueLength = head.readUInt32LE(4)
    if (keyLength > MAX_KEY_BYTES || valueLength > MAX_VALUE_BYTES) throw new BackupFormatError(`impossible record length at offset ${at}: the backup is damaged`)
    const key = Buffer.from(await r.read(keyLength, 'record'))
    const value = Buffer.from(await r.read(valueLength, 'record'))
    count++
    yield { kind: 'entry', key, value }
  }
  const stated = (await r.read(8, 'trailer')).readBigUInt64LE()
  const actual = r.hash.digest()
  const checksum = await r.read(CHECKSUM_BYTES, 'trailer', false)
  if (!actual.equals(checksum)) throw new BackupFormatError('checksum mismatch: the backup is damaged')
  if (stated !== BigInt(count + files)) throw new BackupFormatError(`the trailer counts ${stated} records but the file holds ${count + files}`)
  if (await r.more()) throw new BackupFormatError(`bytes after the end of the backup at offset ${r.offset}`)
  yield { kind: 'end', count, files }
}
