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
  createdAt: number | null
  participants: Record<string, { access: Access, notify: Notify, role?: 'moderator' }>
}

export interface ConversationAttributes {
  subject?: string | null
  photoUrl?: string | null
  custom?: Record<string, string>
  guestAccess?: GuestAccess
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
    let res = await this.once(method, path, body, false)
    if (res.status === 401 && this.tokens.canRefresh) {
      const err = await toError(res)
      if (err.code !== 'TOKEN_EXPIRED') throw err
      res = await this.once(method, path, body, true)
    }
    if (!res.ok) throw await toError(res)
    if (res.status === 204) return undefined as T
    return await res.json() as T
  }

  private async once (method: string, path: string, body: unknown, forceToken: boolean): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.tokens.get(forceToken)}` }
    if (body !== undefined) headers['content-type'] = 'application/json'
    return await this.fetchFn(this.baseUrl + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body)
    })
  }

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
