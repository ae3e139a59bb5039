/**
 * The blob port: where uploaded files' bytes live, apart from the document store. The embedded
 * default keeps them in the data folder (`fs-blob-store.ts`); with `--postgres` they live in
 * PostgreSQL (`pg-blob-store.ts`), so every node of a cluster serves every file. Both pass one
 * conformance suite, `test/server/storage/blob-conformance.ts`.
 *
 * Keys are `/`-separated paths of ids (`<conversationId>/<fileId>`), so a prefix names a folder.
 */
import type { Readable } from 'node:stream'

/** Thrown by `put` when the source is longer than `maxBytes`; nothing is kept. */
export class BlobTooLarge extends Error {
  constructor (maxBytes: number) {
    super(`the blob is over ${maxBytes} bytes`)
    this.name = 'BlobTooLarge'
  }
}

/**
 * What every store's `put` keeps of the bytes going through it: their count, refused past
 * `maxBytes` as they arrive (nothing more is read), and the first `headBytes` (for sniffing).
 */
export class UploadMeter {
  size = 0
  readonly #head: Uint8Array[] = []
  #headLen = 0
  readonly #maxBytes: number
  readonly #headBytes: number

  constructor (opts: { maxBytes: number, headBytes: number }) {
    this.#maxBytes = opts.maxBytes
    this.#headBytes = opts.headBytes
  }

  /** Counts a chunk; throws BlobTooLarge once the total passes the limit. */
  take (chunk: Uint8Array): void {
    this.size += chunk.byteLength
    if (this.size > this.#maxBytes) throw new BlobTooLarge(this.#maxBytes)
    if (this.#headLen < this.#headBytes) {
      const part = chunk.subarray(0, this.#headBytes - this.#headLen)
      this.#head.push(Uint8Array.from(part))
      this.#headLen += part.byteLength
    }
  }

  result (): PutResult {
    return { size: this.size, head: Buffer.concat(this.#head) }
  }
}

export interface PutResult {
  /** Bytes written. */
  size: number
  /** The first bytes (up to `headBytes`), for sniffing the type without reading the blob again. */
  head: Uint8Array
}

export interface BlobStore {
  /**
   * Streams `source` into the blob `key`. The blob becomes visible only once it is complete and
   * durable; if the source fails, is cut off or exceeds `maxBytes` (then `BlobTooLarge`), the
   * promise rejects and nothing is kept. Replaces a blob of the same key.
   */
  put (key: string, source: AsyncIterable<Uint8Array>, opts: { maxBytes: number, headBytes: number }): Promise<PutResult>
  /** The blob's size and a stream of bytes `start..end` (inclusive; default the whole blob), or undefined. */
  get (key: string, range?: { start: number, end: number }): Promise<{ size: number, stream: Readable } | undefined>
  /** The blob's size, or undefined. */
  stat (key: string): Promise<{ size: number } | undefined>
  /** Deletes the blob; no error when there is none. */
  delete (key: string): Promise<void>
  /** Deletes every blob under `prefix/`. */
  deletePrefix (prefix: string): Promise<void>
  /** The keys under `prefix/`. */
  list (prefix: string): AsyncIterable<string>
  /**
   * Removes what puts cut off by a crash left behind, if the store keeps such leftovers past its
   * `open` (a shared store cannot clear them at open: another node may be mid-put). Returns how
   * many it removed. Called by the files' periodic sweep.
   */
  sweepAbandoned? (): Promise<number>
}
