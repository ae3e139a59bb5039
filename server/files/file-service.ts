/**
 * Uploaded files (contract §4.2, §6): their bytes in the blob port, their records in the store
 * section `files`, the check of attachments against them, and their life cycle.
 *
 * Section layout (values JSON; times 16 decimal digits so string order is number order):
 *   v1!f!<conv>!<fileId>            FileRecord
 *   v1!o!<createdAt>!<conv>!<fileId>  true: a file no message carries yet (the sweep's queue)
 *   v1!q!<user>!<utc day>           bytes the user uploaded that day (`maxUploadBytesPerUserPerDay`)
 *   v1!c!<conv>!<fileId>            { messageId, until }: a claim other nodes see (cluster mode)
 *
 * Life cycle. An upload is written as a blob first (complete and durable, see the blob port),
 * then its record and orphan key in one batch. A room (or REST) checks a message's attachment
 * with `check`, which also claims the file in memory for that message, so neither another
 * message nor the sweep can take it before the message is durable. Durable events then move it:
 * `message.sent` (or an edit that adds it) marks it attached; the deletion of the message that
 * carries it (or an edit that drops it) and `conversation.deleted` delete it. Files no message
 * carried within `orphanMs` of their upload are deleted by a periodic sweep. Event work runs in
 * one queue, off the sync path; `settled()` waits for it.
 *
 * Cluster mode (`durableClaims`): the in-memory claim guards one node only, and the record is
 * marked attached by the node that committed the message, a moment after the commit. So `check`
 * also writes the claim to the store (shared by every node) before it answers, for `CLAIM_MS`.
 * A cluster judges a conversation's updates one at a time under its lock in PostgreSQL, checks
 * included: the next node to judge a message carrying the same file sees the claim and refuses
 * it, and no node's sweep deletes a claimed file. A claim whose message was never committed
 * (refused for another reason, its node died) lapses.
 */
import type { Readable } from 'node:stream'
import { ChatError } from '../../shared/errors.ts'
import { isPlainObject, type Message } from '../../shared/schema.ts'
import type { Settings } from '../../shared/settings.ts'
import { attachmentProblem, type AttachmentClaim, type UploadedFile } from '../../shared/update-judge/attachments.ts'
import type { ServerEvent } from '../events.ts'
import type { Timers } from '../presence/presence-hub.ts'
import { BlobTooLarge, type BlobStore } from '../storage/blob-port.ts'
import type { KvSection } from '../storage/port.ts'
import { sniff, SNIFF_BYTES } from './sniff.ts'

/** A stored upload. */
export interface FileRecord extends UploadedFile {
  /** Milliseconds since the epoch. */
  createdAt: number
  width?: number
  height?: number
}

/** What `POST /v1/conversations/:id/files` answers. */
export interface UploadAnswer { fileId: string, name: string, size: number, contentType: string, width?: number, height?: number }

export interface FileServiceDeps {
  section: KvSection
  blobs: BlobStore
  settings: () => Settings
  timers: Timers
  now: () => number
  newId: () => string
  /** Files no message carries are deleted this long after their upload (default 24 h). */
  orphanMs: number
  /** How often the sweep runs. */
  sweepMs: number
  /** Claims are also written to the store, for the other nodes of a cluster (see the module header). */
  durableClaims?: boolean
  onError: (err: unknown, what: string) => void
}

const V = 'v1!'
const time = (ms: number): string => Math.max(0, Math.floor(ms)).toString().padStart(16, '0')
const fileKey = (conv: string, fileId: string): string => `${V}f!${conv}!${fileId}`
const filePrefix = (conv: string): string => `${V}f!${conv}!`
const orphanKey = (createdAt: number, conv: string, fileId: string): string => `${V}o!${time(createdAt)}!${conv}!${fileId}`
const quotaKey = (user: string, day: number): string => `${V}q!${user}!${day}`
const durableClaimKey = (conv: string, fileId: string): string => `${V}c!${conv}!${fileId}`
const blobKey = (conv: string, fileId: string): string => `${conv}/${fileId}`
const DAY_MS = 86_400_000
/** A durable claim lasts this long: far beyond a judge-to-commit-to-attach round, short enough to free a file a refused message claimed. */
export const CLAIM_MS = 5 * 60_000

interface DurableClaim { messageId: string, until: number }
const isDurableClaim = (v: unknown): v is DurableClaim => isPlainObject(v) && typeof v.messageId === 'string' && typeof v.until === 'number'

/** The store section holding the records (its name in `DocStore.section`). */
export const FILES_SECTION = 'files'

/**
 * The blob key of a file whose record is stored under `key` in the files section, or null for
 * the section's other keys (orphan queue, quotas). For tools that copy blobs along with records.
 */
export const blobKeyOfRecordKey = (key: string): string | null => {
  const parts = key.split('!')
  return parts.length === 4 && `${parts[0]}!` === V && parts[1] === 'f' ? blobKey(parts[2], parts[3]) : null
}

const isFileRecord = (v: unknown): v is FileRecord =>
  isPlainObject(v) && typeof v.fileId === 'string' && typeof v.conversationId === 'string' && typeof v.uploaderId === 'string' &&
  typeof v.size === 'number' && typeof v.createdAt === 'number' && (v.attachedTo === null || typeof v.attachedTo === 'string')

/** A file name as given, without path, control characters or surrounding space; at most 255 characters. */
export const cleanFileName = (raw: string | undefined): string => {
  const base = (raw ?? '').split(/[/\\]/).pop() ?? ''
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, 255)
  return clean === '' ? 'file' : clean
}

export class FileService {
  readonly #deps: FileServiceDeps
  readonly #kv: KvSection
  /** Files checked for a message that is not durable yet: `<conv>/<fileId>` -> message id. */
  readonly #claims = new Map<string, string>()
  #queue: Promise<void> = Promise.resolve()
  #sweepTimer: unknown = null
  /** Per user, the tail of its quota updates (so two uploads never lose each other's bytes). */
  readonly #quotaTail = new Map<string, Promise<void>>()

  constructor (deps: FileServiceDeps) {
    this.#deps = deps
    this.#kv = deps.section
  }

  /** Where the files' bytes are (the backup route copies them). */
  get blobs (): BlobStore {
    return this.#deps.blobs
  }

  async get (conv: string, fileId: string): Promise<FileRecord | undefined> {
    const v = await this.#kv.get(fileKey(conv, fileId))
    return isFileRecord(v) ? v : undefined
  }

  /**
   * Streams an upload into storage and records it. `quotaUser` is the user whose daily quota it
   * counts toward (null for admins). Over `maxFileSize`: FILE_TOO_LARGE; over the quota left:
   * UPLOAD_QUOTA_EXCEEDED; a source that fails (a request cut off) rejects with its error. In
   * every failure nothing is kept.
   */
  async upload (conv: string, uploaderId: string, quotaUser: string | null, name: string, source: AsyncIterable<Uint8Array>): Promise<UploadAnswer> {
    const { maxFileSize, maxUploadBytesPerUserPerDay } = this.#deps.settings()
    const day = Math.floor(this.#deps.now() / DAY_MS)
    const left = quotaUser === null ? Number.POSITIVE_INFINITY : maxUploadBytesPerUserPerDay - await this.#usedOn(quotaUser, day)
    if (left <= 0) throw new ChatError('UPLOAD_QUOTA_EXCEEDED')
    const fileId = this.#deps.newId()
    const maxBytes = Math.min(maxFileSize, left)
    let put
    try {
      put = await this.#deps.blobs.put(blobKey(conv, fileId), source, { maxBytes, headBytes: SNIFF_BYTES })
    } catch (e) {
      if (!(e instanceof BlobTooLarge)) throw e
      throw maxBytes < maxFileSize
        ? new ChatError('UPLOAD_QUOTA_EXCEEDED', `The user may upload ${left} more bytes today`)
        : new ChatError('FILE_TOO_LARGE', `A file holds at most ${maxFileSize} bytes`)
    }
    const sniffed = await sniff(put.head, put.size <= SNIFF_BYTES)
    const record: FileRecord = {
      conversationId: conv, fileId, uploaderId, name, size: put.size, contentType: sniffed.contentType, attachedTo: null, createdAt: this.#deps.now(), ...(sniffed.width === undefined ? {} : { width: sniffed.width, height: sniffed.height })
    }
    try {
      await this.#kv.batch([
        { type: 'put', key: fileKey(conv, fileId), value: record },
        { type: 'put', key: orphanKey(record.createdAt, conv, fileId), value: true }
      ])
      if (quotaUser !== null) await this.#addUsage(quotaUser, day, put.size)
    } catch (e) {
      await this.#deps.blobs.delete(blobKey(conv, fileId)).catch(() => {})
      throw e
    }
    const { width, height } = record
    return { fileId, name, size: record.size, contentType: record.contentType, ...(width === undefined ? {} : { width, height }) }
  }

  /** The file's bytes (`range` inclusive), or FILE_NOT_FOUND. */
  async open (conv: string, fileId: string, range?: { start: number, end: number }): Promise<{ record: FileRecord, stream: Readable }> {
    const record = await this.get(conv, fileId)
    const blob = record === undefined ? undefined : await this.#deps.blobs.get(blobKey(conv, fileId), range)
    if (record === undefined || blob === undefined) throw new ChatError('FILE_NOT_FOUND')
    return { record, stream: blob.stream }
  }

  /**
   * Checks attachments a conversation's new or edited messages carry, and claims each file for
   * its message; throws INVALID_ATTACHMENT naming the first that does not match its upload.
   */
  async check (conv: string, claims: readonly AttachmentClaim[]): Promise<void> {
    const records = await Promise.all(claims.map(async c => await this.get(conv, c.attachment.fileId)))
    const durable = this.#deps.durableClaims === true ? await Promise.all(claims.map(async c => await this.#durableClaim(conv, c.attachment.fileId))) : []
    // No await from here on: the in-memory claims are read and taken at once.
    const taken = new Map<string, string>()
    claims.forEach((claim, i) => {
      const record = records[i]
      const key = blobKey(conv, claim.attachment.fileId)
      const claimedBy = taken.get(key) ?? this.#claims.get(key) ?? durable[i]
      taken.set(key, claim.messageId)
      const file = record === undefined ? undefined : { ...record, attachedTo: record.attachedTo ?? claimedBy ?? null }
      const problem = attachmentProblem(claim, conv, file)
      if (problem !== null) throw new ChatError('INVALID_ATTACHMENT', problem)
    })
    for (const claim of claims) this.#claims.set(blobKey(conv, claim.attachment.fileId), claim.messageId)
    if (this.#deps.durableClaims === true) {
      const until = this.#deps.now() + CLAIM_MS
      await this.#kv.batch(claims.map(c => ({ type: 'put' as const, key: durableClaimKey(conv, c.attachment.fileId), value: { messageId: c.messageId, until } })))
    }
  }

  /** The message a live durable claim holds the file for, if any. */
  async #durableClaim (conv: string, fileId: string): Promise<string | undefined> {
    const v = await this.#kv.get(durableClaimKey(conv, fileId))
    return isDurableClaim(v) && v.until > this.#deps.now() ? v.messageId : undefined
  }

  /** Event subscriber: never throws, never waits. */
  handle (event: ServerEvent): void {
    switch (event.type) {
      case 'message.sent': return this.#enqueue(async () => { await this.#attach(event.conversationId, event.message) })
      case 'message.updated': return this.#enqueue(async () => {
        const before = event.previous?.attachment?.fileId
        if (before !== undefined && before !== event.message.attachment?.fileId) await this.#deleteCarried(event.conversationId, event.message.id, before)
        await this.#attach(event.conversationId, event.message)
      })
      case 'message.deleted': {
        const fileId = event.message.attachment?.fileId
        if (fileId === undefined) return
        return this.#enqueue(async () => { await this.#deleteCarried(event.conversationId, event.message.id, fileId) })
      }
      case 'conversation.deleted': return this.#enqueue(async () => { await this.#deleteConversation(event.conversationId) })
      default:
    }
  }

  /**
   * Holds the files' life cycle (attaching, deleting, the sweep) until the returned function is
   * called, and resolves once the work queued before is done: a backup takes its snapshot after
   * this, so no file its snapshot names is deleted before the backup has copied it. Calling the
   * function again does nothing.
   */
  async hold (): Promise<() => void> {
    let release = (): void => {}
    const released = new Promise<void>(resolve => { release = resolve })
    let reached = (): void => {}
    const holding = new Promise<void>(resolve => { reached = resolve })
    this.#enqueue(async () => { reached(); await released })
    await holding
    return release
  }

  /** Resolves once the event work queued so far is done. */
  async settled (): Promise<void> {
    await this.#queue
  }

  /** Starts the periodic sweep of files no message carried in time. */
  start (): void {
    this.#sweepTimer ??= this.#deps.timers.setInterval(() => { this.#enqueue(async () => { await this.sweep() }) }, this.#deps.sweepMs)
  }

  async stop (): Promise<void> {
    if (this.#sweepTimer !== null) this.#deps.timers.clearInterval(this.#sweepTimer)
    this.#sweepTimer = null
    await this.settled()
  }

  /** Deletes files uploaded over `orphanMs` ago that no message carries or claims; returns how many. */
  async sweep (): Promise<number> {
    const prefix = `${V}o!`
    const range = { gte: prefix, lt: `${prefix}${time(this.#deps.now() - this.#deps.orphanMs)}` }
    let n = 0
    for await (const [key] of this.#kv.entries(range)) {
      const [, , , conv, fileId] = key.split('!')
      if (this.#claims.has(blobKey(conv, fileId))) continue
      if (this.#deps.durableClaims === true && await this.#durableClaim(conv, fileId) !== undefined) continue
      const record = await this.get(conv, fileId)
      if (record !== undefined && record.attachedTo !== null) {
        await this.#kv.del(key)
        continue
      }
      await this.#deps.blobs.delete(blobKey(conv, fileId))
      await this.#kv.batch([{ type: 'del', key }, { type: 'del', key: fileKey(conv, fileId) }])
      n++
    }
    await this.#deps.blobs.sweepAbandoned?.()
    return n
  }

  #enqueue (job: () => Promise<void>): void {
    this.#queue = this.#queue.then(job).catch(err => { this.#deps.onError(err, 'file event') })
  }

  async #attach (conv: string, m: Message): Promise<void> {
    const fileId = m.attachment?.fileId
    if (fileId === undefined) return
    const claimKey = blobKey(conv, fileId)
    if (this.#claims.get(claimKey) === m.id) this.#claims.delete(claimKey)
    const record = await this.get(conv, fileId)
    if (record === undefined || record.attachedTo !== null) return
    await this.#kv.batch([
      { type: 'put', key: fileKey(conv, fileId), value: { ...record, attachedTo: m.id } },
      { type: 'del', key: orphanKey(record.createdAt, conv, fileId) },
      ...(this.#deps.durableClaims === true ? [{ type: 'del' as const, key: durableClaimKey(conv, fileId) }] : [])
    ])
  }

  /** Deletes a file that message `messageId` carried (unless another message carries it). */
  async #deleteCarried (conv: string, messageId: string, fileId: string): Promise<void> {
    const claimKey = blobKey(conv, fileId)
    if (this.#claims.get(claimKey) === messageId) this.#claims.delete(claimKey)
    const record = await this.get(conv, fileId)
    if (record === undefined || (record.attachedTo !== null && record.attachedTo !== messageId)) return
    await this.#deps.blobs.delete(blobKey(conv, fileId))
    await this.#kv.batch([
      { type: 'del', key: fileKey(conv, fileId) },
      { type: 'del', key: orphanKey(record.createdAt, conv, fileId) },
      ...(this.#deps.durableClaims === true ? [{ type: 'del' as const, key: durableClaimKey(conv, fileId) }] : [])
    ])
  }

  async #deleteConversation (conv: string): Promise<void> {
    for (const key of [...this.#claims.keys()]) if (key.startsWith(`${conv}/`)) this.#claims.delete(key)
    await this.#deps.blobs.deletePrefix(conv)
    const ops: Array<{ type: 'del', key: string }> = []
    for await (const [key, v] of this.#kv.entries({ gte: filePrefix(conv), lt: `${filePrefix(conv)}\xff` })) {
      ops.push({ type: 'del', key })
      if (isFileRecord(v)) ops.push({ type: 'del', key: orphanKey(v.createdAt, conv, v.fileId) })
      if (isFileRecord(v) && this.#deps.durableClaims === true) ops.push({ type: 'del', key: durableClaimKey(conv, v.fileId) })
    }
    if (ops.length > 0) await this.#kv.batch(ops)
  }

  async #usedOn (user: string, day: number): Promise<number> {
    await this.#quotaTail.get(user)
    const v = await this.#kv.get(quotaKey(user, day))
    return typeof v === 'number' ? v : 0
  }

  async #addUsage (user: string, day: number, bytes: number): Promise<void> {
    const next = (this.#quotaTail.get(user) ?? Promise.resolve()).then(async () => {
      const v = await this.#kv.get(quotaKey(user, day))
      await this.#kv.put(quotaKey(user, day), (typeof v === 'number' ? v : 0) + bytes)
    })
    const tail = next.catch(() => {})
    this.#quotaTail.set(user, tail)
    void tail.then(() => { if (this.#quotaTail.get(user) === tail) this.#quotaTail.delete(user) })
    await next
  }
}
