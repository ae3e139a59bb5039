/**
 * A Parley session: one user on one server. Holds the token, makes the REST calls the user's
 * token allows, opens live conversation views and the live conversation list.
 *
 * Works the same in the browser and in Node: pass `WebSocket` (for instance from `ws`) where
 * there is no global one, and a `storage` (`indexedDbStore()`, `fileStore(dir)`) to keep
 * offline messages across restarts. `parley/client/node` fills both in for Node.
 */
import { ChatError } from '../shared/errors.ts'
import { toConversationId, toUserId } from '../shared/ids.ts'
import type { Access, Notify } from '../shared/schema.ts'
import type { BackoffOptions } from './backoff.ts'
import { ConversationList, type ConversationListOptions } from './conversation-list.ts'
import { RestClient, type BanInfo, type ConversationAttributes, type ConversationInfo, type ParticipantSettings, type SearchHit, type SearchOptions, type UserProfile } from './rest.ts'
import type { ClientStore } from './storage.ts'
import { TokenKeeper } from './token.ts'
import { UserDirectory } from './users.ts'
import type { ClientTimers, NetworkSignal, WebSocketCtor } from './transport.ts'
import { ConversationView, type OpenOptions } from './view.ts'

export interface SessionOptions {
  /** `http(s)://host:port` of the Parley server. */
  serverUrl: string
  userId: string
  /** A fixed user token (a JWT signed by the app's backend)… */
  token?: string
  /** …or a function that fetches a fresh one; called before expiry and for every reconnect. */
  getToken?: () => Promise<string>
  /** The user's profile, written with `PUT /v1/users/:id` on `syncProfile()` (needs browserSync). */
  profile?: UserProfile
  /** Local persistence for offline messages; null or omitted keeps nothing across restarts. */
  storage?: ClientStore | null
  /** A WebSocket constructor; defaults to the global one. */
  WebSocket?: WebSocketCtor
  /** Network status; defaults to the browser's online/offline events where there are any. */
  network?: NetworkSignal | null
  fetch?: typeof fetch
  backoff?: BackoffOptions
  /** Local check of text length; the server's limit (default 10,000). */
  maxTextLength?: number
  timers?: ClientTimers
  now?: () => number
  random?: () => number
}

export interface Session {
  readonly userId: string
  readonly serverUrl: string
  /** Names and photos of users from their records, fetched once and cached (see users.ts). */
  readonly users: UserDirectory
  /** Writes the session's profile (`options.profile`, or `profile`) to the server. */
  syncProfile (profile?: UserProfile): Promise<void>
  /** Returns the conversation, creating it (the user becomes a participant) or merging `attributes`. */
  getOrCreateConversation (id: string, attributes?: ConversationAttributes): Promise<ConversationInfo>
  /** Adds or changes a participant (`PUT …/participants/:userId`; needs browserSync and ReadWrite; a moderator for `role`). */
  setParticipant (conversationId: string, userId: string, opts?: ParticipantSettings): Promise<ParticipantSettings & { access: Access, notify: Notify }>
  /** Removes a participant. */
  removeParticipant (conversationId: string, userId: string): Promise<void>
  /** Moderators (v1.1): bans a user (`until` in ms since the epoch), lifts a ban, lists bans, closes a guest's views. */
  ban (conversationId: string, userId: string, opts?: { reason?: string, until?: number }): Promise<BanInfo>
  unban (conversationId: string, userId: string): Promise<void>
  bans (conversationId: string): Promise<BanInfo[]>
  kickGuest (conversationId: string, userId: string): Promise<void>
  /** Opens a live view of a conversation. */
  open (conversationId: string, opts?: OpenOptions): ConversationView
  /** The user's live conversation list. */
  conversations (opts?: ConversationListOptions): ConversationList
  /** Messages holding every word of `q` across the conversations where the user is a participant, newest first. */
  search (q: string, opts?: SearchOptions): Promise<{ data: SearchHit[], hasMore: boolean }>
  /** Closes every view and list of this session. */
  close (): Promise<void>
}

const defaultTimers: ClientTimers = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: h => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>)
}

/** The browser's online/offline events, or null outside a browser. */
export const browserNetwork = (): NetworkSignal | null => {
  if (typeof window === 'undefined' || typeof navigator === 'undefined' || typeof window.addEventListener !== 'function') return null
  return {
    isOnline: () => navigator.onLine !== false,
    subscribe (fn) {
      const on = (): void => fn(true)
      const off = (): void => fn(false)
      window.addEventListener('online', on)
      window.addEventListener('offline', off)
      return () => { window.removeEventListener('online', on); window.removeEventListener('offline', off) }
    }
  }
}

const randomId = (random: () => number): string => {
  const c = globalThis.crypto
  if (c !== undefined && typeof c.randomUUID === 'function') return c.randomUUID()
  return Array.from({ length: 4 }, () => Math.floor(random() * 2 ** 32).toString(36)).join('-')
}

export const createSession = (options: SessionOptions): Session => {
  const userId = toUserId(options.userId)
  if (options.token === undefined && options.getToken === undefined) throw new ChatError('TOKEN_MISSING', 'Pass token or getToken')
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const timers = options.timers ?? defaultTimers
  const serverUrl = options.serverUrl.replace(/\/+$/, '')
  const wsUrl = serverUrl.replace(/^http/, 'ws')
  const tokens = new TokenKeeper(
    options.getToken !== undefined ? { getToken: options.getToken } : { token: options.token ?? '' }, now)
  const rest = new RestClient(serverUrl, tokens, options.fetch ?? globalThis.fetch.bind(globalThis))
  const WS = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketCtor | undefined)
  const network = options.network === undefined ? browserNetwork() : options.network
  const views = new Set<ConversationView>()
  const lists = new Set<ConversationList>()
  const onActivity = (): void => { for (const l of lists) l.refreshSoon() }
  const users = new UserDirectory(rest)

  return {
    userId,
    serverUrl,
    users,
    async syncProfile (profile) {
      const p = profile ?? options.profile
      if (p === undefined) return
      users.remember(await rest.putUser(userId, p))
    },
    async getOrCreateConversation (id, attributes) {
      const cid = toConversationId(id)
      const hasAttributes = attributes !== undefined && Object.keys(attributes).length > 0
      if (!hasAttributes) {
        try {
          return await rest.getConversation(cid)
        } catch (e) {
          if (!(e instanceof ChatError) || e.code !== 'CONVERSATION_NOT_FOUND') throw e
        }
      }
      return await rest.putConversation(cid, attributes ?? {})
    },
    async setParticipant (conversationId, participantId, opts = {}) {
      return await rest.putParticipant(toConversationId(conversationId), toUserId(participantId), opts)
    },
    async removeParticipant (conversationId, participantId) {
      await rest.deleteParticipant(toConversationId(conversationId), toUserId(participantId))
    },
    async ban (conversationId, bannedId, opts = {}) {
      return await rest.putBan(toConversationId(conversationId), toUserId(bannedId), opts)
    },
    async unban (conversationId, bannedId) {
      await rest.deleteBan(toConversationId(conversationId), toUserId(bannedId))
    },
    async bans (conversationId) {
      return (await rest.bans(toConversationId(conversationId))).data
    },
    async kickGuest (conversationId, guestId) {
      await rest.kickGuest(toConversationId(conversationId), toUserId(guestId))
    },
    open (conversationId, opts = {}) {
      const cid = toConversationId(conversationId)
      if (WS === undefined) throw new ChatError('INVALID_REQUEST', 'No WebSocket here: pass options.WebSocket (or use parley/client/node)')
      const view = new ConversationView({
        userId,
        name: options.profile?.name,
        wsUrl,
        tokens,
        rest,
        WebSocket: WS,
        store: options.storage ?? null,
        network,
        timers,
        now,
        random,
        newId: () => randomId(random),
        backoff: options.backoff,
        maxTextLength: options.maxTextLength,
        onActivity
      }, cid, opts)
      views.add(view)
      view.on('status', s => { if (s === 'closed' && view.error === null) views.delete(view) })
      return view
    },
    async search (q, opts = {}) {
      return await rest.searchUser(userId, q, opts)
    },
    conversations (opts = {}) {
      const list: ConversationList = new ConversationList(rest, userId, timers, random, opts, () => lists.delete(list))
      lists.add(list)
      return list
    },
    async close () {
      for (const l of [...lists]) l.close()
      await Promise.all([...views].map(async v => { await v.close() }))
      views.clear()
    }
  }
}
