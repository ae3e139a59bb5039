/**
 * The REST calls the client makes with the user's token (contract §6). A refusal becomes a
 * `ChatError` with the server's code; an expired token is refreshed and the call retried once.
 */
import { ChatError, isErrorCode } from '../shared/errors.ts'
import type { Access, GuestAccess, Message, Notify } from '../shared/schema.ts'
import type { TokenKeeper } from './token.ts'

export interface ConversationInfo {
  id: string
  subject: string | null
  photoUrl: string | null
  custom: Record<string, string>
  guestAccess: GuestAccess
  /** Seconds between one user's messages (v1.1; 0 or absent: off). */
  slowMode?: number
  createdAt: number | null
  participants: Record<string, { access: Access, notify: Notify, role?: 'moderator' }>
}

export interface ConversationAttributes {
  subject?: string | null
  photoUrl?: string | null
  custom?: Record<string, string>
  guestAccess?: GuestAccess
  /** Seconds between one user's messages, 0 = off (moderators only). */
  slowMode?: number
  participants?: string[]
}

/** One entry of the user's conversation list (`GET /v1/users/:userId/conversations`). */
export interface ConversationSummary {
  id: string
  subject: string | null
  lastMessage: Message | null
  unreadCount: number
  lastActivityAt: number
}

export interface UserProfile {
  name: string
  email?: string | string[]
  phone?: string | string[]
  photoUrl?: string | null
  custom?: Record<string, string>
}

/** A participant's settings (`role: 'moderator'` appoints a moderator, `null` removes the role). */
export interface ParticipantSettings { access?: Access, notify?: Notify, role?: 'moderator' | null }

/** A ban (v1.1): who, why, until when (ms since the epoch; null: for good). */
export interface BanInfo { userId: string, reason: string | null, until: number | null, createdAt: number, by: string | null }

export interface MessagePage { data: Message[], hasMore: boolean }

/** What an upload answers (`POST /v1/conversations/:id/files`); `width`/`height` for images. */
export interface UploadedFile { fileId: string, name: string, size: number, contentType: string, width?: number, height?: number }

/** Upload progress (`onProgress(sent, total)` in bytes; browsers only) and cancelling (`signal`). */
export interface UploadOptions {
  onProgress?: (sent: number, total: number) => void
  signal?: AbortSignal
}

/** A search hit across the user's conversations. */
export type SearchHit = Message & { conversationId: string }

export interface SearchOptions {
  /** Hits per page (default 30, at most 100). */
  limit?: number
  /** The id of the last hit of the previous page. */
  before?: string
}

const searchQuery = (q: string, opts: SearchOptions): string => {
  const p = new URLSearchParams({ q })
  if (opts.limit !== undefined) p.set('limit', String(opts.limit))
  if (opts.before !== undefined) p.set('before', opts.before)
  return p.toString()
}

/** Reads the error of a failed response into a ChatError. */
const toError = async (res: Response): Promise<ChatError> => {
  const text = await res.text()
  let body: unknown = null
  try { body = JSON.parse(text) } catch (e) { if (!(e instanceof SyntaxError)) throw e }
  const error = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined
  if (typeof error === 'object' && error !== null) {
    const { code, message } = error as { code?: unknown, message?: unknown }
    if (isErrorCode(code)) return new ChatError(code, typeof message === 'string' ? message : undefined)
  }
  return new ChatError('INTERNAL', `HTTP ${res.status} from the server`)
}

export class RestClient {
  private readonly baseUrl: string
  private readonly tokens: TokenKeeper
  private readonly fetchFn: typeof fetch

  constructor (baseUrl: string, tokens: TokenKeeper, fetchFn: typeof fetch) {
    this.baseUrl = baseUrl.replace(/\/+$/, '')
    this.tokens = tokens
    this.fetchFn = fetchFn
  }

  /** One JSON call; throws the server's refusal as a ChatError. */
  async call<T> (method: string, path: string, body?: unknown): Promise<T> {
    return await this.request(method, path, body === undefined ? undefined : () => ({ body: JSON.stringify(body), type: 'application/json' }))
  }

  /** One call with a body made by `make` (again for a retry); JSON answer. */
  private async request<T> (method: string, path: string, make?: () => { body: BodyInit, type?: string }, signal?: AbortSignal): Promise<T> {
    let res = await this.once(method, path, make, false, signal)
    if (res.status === 401 && this.tokens.canRefresh) {
      const err = await toError(res)
      if (err.code !== 'TOKEN_EXPIRED') throw err
      res = await this.once(method, path, make, true, signal)
    }
    if (!res.ok) throw await toError(res)
    if (res.status === 204) return undefined as T
    return await res.json() as T
  }

  private async once (method: string, path: string, make: (() => { body: BodyInit, type?: string }) | undefined, forceToken: boolean, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.tokens.get(forceToken)}` }
    const made = make?.()
    if (made?.type !== undefined) headers['content-type'] = made.type
    return await this.fetchFn(this.baseUrl + path, { method, headers, body: made?.body, ...(signal !== undefined ? { signal } : {}) })
  }

  /** Uploads a file to a conversation (multipart, one part `file`); the server sniffs its type. */
  upload = async (id: string, file: Blob | Uint8Array, name: string, opts: UploadOptions = {}): Promise<UploadedFile> => {
    const blob = file instanceof Blob ? file : new Blob([file as Uint8Array<ArrayBuffer>])
    const path = `/v1/conversations/${encodeURIComponent(id)}/files`
    const form = (): FormData => {
      const f = new FormData()
      f.append('file', blob, name)
      return f
    }
    // fetch reports no upload progress: where there is XMLHttpRequest (browsers), use it for that.
    if (opts.onProgress !== undefined && typeof XMLHttpRequest !== 'undefined') {
      let res = await this.xhrUpload(path, form(), opts, false)
      if (res.status === 401 && this.tokens.canRefresh) {
        const err = await toError(res)
        if (err.code !== 'TOKEN_EXPIRED') throw err
        res = await this.xhrUpload(path, form(), opts, true)
      }
      if (!res.ok) throw await toError(res)
      return await res.json() as UploadedFile
    }
    return await this.request('POST', path, () => ({ body: form() }), opts.signal)
  }

  private async xhrUpload (path: string, body: FormData, opts: UploadOptions, forceToken: boolean): Promise<Response> {
    const token = await this.tokens.get(forceToken)
    return await new Promise<Response>((resolve, reject) => {
      const xhr = new XMLHttpRequest()
      xhr.open('POST', this.baseUrl + path)
      xhr.setRequestHeader('authorization', `Bearer ${token}`)
      xhr.upload.onprogress = ev => { if (ev.lengthComputable) opts.onProgress?.(ev.loaded, ev.total) }
      xhr.onload = () => resolve(new Response(xhr.responseText, { status: xhr.status }))
      xhr.onerror = () => reject(new TypeError('Failed to fetch'))
      xhr.onabort = () => reject(new DOMException('The upload was cancelled', 'AbortError'))
      if (opts.signal?.aborted === true) { reject(new DOMException('The upload was cancelled', 'AbortError')); return }
      opts.signal?.addEventListener('abort', () => xhr.abort(), { once: true })
      xhr.send(body)
    })
  }

  /** A URL that downloads a file with the current token in it (for `<img src>` and links). */
  fileUrl = async (id: string, fileId: string): Promise<string> =>
    `${this.baseUrl}/v1/conversations/${encodeURIComponent(id)}/files/${encodeURIComponent(fileId)}?token=${encodeURIComponent(await this.tokens.get(false))}`

  searchConversation = async (id: string, q: string, opts: SearchOptions = {}): Promise<MessagePage> =>
    await this.call('GET', `/v1/conversations/${encodeURIComponent(id)}/messages?${searchQuery(q, opts)}`)

  searchUser = async (userId: string, q: string, opts: SearchOptions = {}): Promise<{ data: SearchHit[], hasMore: boolean }> =>
    await this.call('GET', `/v1/users/${encodeURIComponent(userId)}/messages?${searchQuery(q, opts)}`)

  getConversation = async (id: string): Promise<ConversationInfo> =>
    await this.call('GET', `/v1/conversations/${encodeURIComponent(id)}`)

  putConversation = async (id: string, attributes: ConversationAttributes): Promise<ConversationInfo> =>
    await this.call('PUT', `/v1/conversations/${encodeURIComponent(id)}`, attributes)

  putParticipant = async (id: string, userId: string, body: ParticipantSettings): Promise<ParticipantSettings & { access: Access, notify: Notify }> =>
    await this.call('PUT', `/v1/conversations/${encodeURIComponent(id)}/participants/${encodeURIComponent(userId)}`, body)

  deleteParticipant = async (id: string, userId: string): Promise<void> => {
    await this.call('DELETE', `/v1/conversations/${encodeURIComponent(id)}/participants/${encodeURIComponent(userId)}`)
  }

  putBan = async (id: string, userId: string, body: { reason?: string, until?: number }): Promise<BanInfo> =>
    await this.call('PUT', `/v1/conversations/${encodeURIComponent(id)}/bans/${encodeURIComponent(userId)}`, body)

  deleteBan = async (id: string, userId: string): Promise<void> => {
    await this.call('DELETE', `/v1/conversations/${encodeURIComponent(id)}/bans/${encodeURIComponent(userId)}`)
  }

  bans = async (id: string): Promise<{ data: BanInfo[] }> =>
    await this.call('GET', `/v1/conversations/${encodeURIComponent(id)}/bans`)

  kickGuest = async (id: string, userId: string): Promise<unknown> =>
    await this.call('DELETE', `/v1/conversations/${encodeURIComponent(id)}/guests/${encodeURIComponent(userId)}`)

  messagesBefore = async (id: string, before: string | undefined, limit: number): Promise<MessagePage> => {
    const q = new URLSearchParams({ limit: String(limit) })
    if (before !== undefined) q.set('before', before)
    return await this.call('GET', `/v1/conversations/${encodeURIComponent(id)}/messages?${q.toString()}`)
  }

  /** One message, live or archived, with its reactions. */
  message = async (id: string, messageId: string): Promise<Message & { reactions?: Record<string, string[]> }> =>
    await this.call('GET', `/v1/conversations/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`)

  conversationsOf = async (userId: string): Promise<{ data: ConversationSummary[] }> =>
    await this.call('GET', `/v1/users/${encodeURIComponent(userId)}/conversations`)

  /** A user record (another user's: its public profile, `{ id, name, photoUrl? }`). */
  getUser = async (userId: string): Promise<{ id: string, name: string, photoUrl?: string | null }> =>
    await this.call('GET', `/v1/users/${encodeURIComponent(userId)}`)

  putUser = async (userId: string, profile: Partial<UserProfile>): Promise<UserProfile & { id: string }> =>
    await this.call('PUT', `/v1/users/${encodeURIComponent(userId)}`, profile)
}
