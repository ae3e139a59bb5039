/**
 * A live view of one conversation: its messages in document order with `added`, `edited` and
 * `deleted` events, sending with a `pending` → `sent` status, edits and deletes of the user's
 * own messages, typing and presence over awareness, read markers, and older pages over REST.
 *
 * The document syncs whole (Yjs has no partial sync), so the view shows a window: the newest
 * `pageSize` messages at first, growing with every new message and with `loadOlder()`.
 * A message is `sent` once the server acknowledged it durable (see `transport.ts`), `pending`
 * before, and `failed` when the server refused this view's writes for good.
 *
 * Order (contract §4.1). A message is appended after the last one the document holds. Before
 * the document holds the conversation (no sync yet, and no local copy of an earlier sync) such an
 * append would have nothing to its left and could land before the whole history, so until then
 * sends wait in a queue: shown at once as `pending` at the end, editable and deletable, kept in
 * the local store's metadata, and written in send order as soon as the view first synced.
 */
import * as Y from 'yjs'
import * as awarenessProtocol from 'y-protocols/awareness'
import { ObservableV2 } from 'lib0/observable'
import { ChatError, type ErrorCode } from '../shared/errors.ts'
import { ensureRoots, getGuestAccess, getParticipant, isModerator, listParticipants, messagesOf, metaOf, participantsOf, reactionsOf, readsOf } from '../shared/doc.ts'
import { isReaction, MAX_REACTIONS_PER_USER, parseReactionKey, ReactionIndex, reactionKey, type Reactions } from '../shared/reactions.ts'
import { DEFAULT_MAX_TEXT_LENGTH, isMessage, type Access, type Attachment, type GuestAccess, type Message, type Participant } from '../shared/schema.ts'
import { EMPTY_PRESENCE, presenceOf, type Presence, type PresenceUser } from './presence.ts'
import { LocalBinding, STORAGE_ORIGIN } from './local-doc.ts'
import { localKey, type ClientStore } from './storage.ts'
import type { MessagePage, RestClient, SearchOptions, UploadedFile, UploadOptions } from './rest.ts'
import type { TokenKeeper } from './token.ts'
import {
  SyncTransport, type ClientTimers, type ConnectionStatus, type NetworkSignal, type WebSocketCtor
} from './transport.ts'
import type { BackoffOptions } from './backoff.ts'

export type MessageStatus = 'pending' | 'sent' | 'failed'

/** A message as the view shows it, with its reactions (`{ "👍": ["alice", "bob"] }`) when it has any. */
export type ViewMessage = Message & { status: MessageStatus, reactions?: Reactions }

export interface OpenOptions {
  /** Join as a guest when the user is not a participant (contract §3). */
  asGuest?: boolean
  /** Messages shown at first and fetched per `loadOlder()`; default 30. */
  pageSize?: number
}

export interface ViewEvents {
  /** The visible list changed (for any reason below, or a status change). */
  change: () => void
  added: (message: ViewMessage) => void
  edited: (message: ViewMessage, previous: Message) => void
  deleted: (message: Message) => void
  /** The reactions to a shown message changed (`message.reactions` holds the new ones). */
  reacted: (message: ViewMessage) => void
  /** A message of this view went from pending to sent. */
  sent: (message: ViewMessage) => void
  presence: (presence: Presence) => void
  status: (status: ConnectionStatus) => void
  /** The connection was lost and is retried in `delayMs` (for a "reconnecting in 3 s" countdown). */
  retry: (delayMs: number) => void
  /** A final refusal: the view is closed. */
  error: (error: ChatError) => void
}

/** What a view is built from (the session supplies it). */
export interface ViewDeps {
  userId: string
  name?: string
  wsUrl: string
  tokens: TokenKeeper
  rest: RestClient
  WebSocket: WebSocketCtor
  store: ClientStore | null
  network: NetworkSignal | null
  timers: ClientTimers
  now: () => number
  random: () => number
  newId: () => string
  backoff?: BackoffOptions
  maxTextLength?: number
  /** Told when something that changes the conversation list happened. */
  onActivity: () => void
}

/** Codes after which what this view wrote is refused for good: the local copy is dropped. */
const WRITE_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'READ_ONLY', 'WRITE_FORBIDDEN', 'INVALID_MESSAGE', 'TEXT_TOO_LONG', 'DUPLICATE_MESSAGE_ID',
  'SENDER_MISMATCH', 'INVALID_ATTACHMENT', 'CLIENT_ID_TAKEN', 'MISSING_DEPENDENCIES', 'CONVERSATION_DELETED', 'CONVERSATION_NOT_FOUND',
  'INVALID_REACTION', 'REACTION_TARGET_NOT_FOUND', 'REFERENCED_MESSAGE_NOT_FOUND'
])

const TYPING_TIMEOUT_MS = 5_000

interface Located { message: Message, client: number, clock: number }

/** The messages of `arr` in order, each with the Yjs id of its struct (walks the items). */
const locateMessages = (arr: Y.Array<Message>): Located[] => {
  const out: Located[] = []
  for (let item = arr._start; item !== null; item = item.right) {
    if (item.deleted || !(item.content instanceof Y.ContentAny)) continue
    const values: unknown[] = item.content.arr
    for (let j = 0; j < values.length; j++) {
      const v = values[j]
      if (isMessage(v, Number.MAX_SAFE_INTEGER)) out.push({ message: v, client: item.id.client, clock: item.id.clock + j })
    }
  }
  return out
}

export class ConversationView extends ObservableV2<ViewEvents> {
  readonly conversationId: string
  readonly asGuest: boolean
  readonly doc = new Y.Doc()
  /** Resolves once the local copy is loaded and the connection started. */
  readonly ready: Promise<void>
  private readonly deps: ViewDeps
  private readonly pageSize: number
  private awareness: awarenessProtocol.Awareness | null = null
  private transport: SyncTransport | null = null
  private local: LocalBinding | null = null
  private early: Uint8Array[] | null = []
  private acked = new Map<number, number>()
  private readonly ownClients = new Set<number>()
  private located: Located[] = []
  private list: ViewMessage[] = []
  private statusById = new Map<string, MessageStatus>()
  private startId: string | null = null
  private older: Message[] = []
  private hasMoreOlder: boolean | null = null
  private presenceValue: Presence = EMPTY_PRESENCE
  private errorValue: ChatError | null = null
  private closedFlag = false
  private writeFailed = false
  /** Whether the document holds the conversation (synced now or before): appends go after it. */
  private historyKnown = false
  /** Messages sent before `historyKnown`, in send order; not in the document yet. */
  private queued: Message[] = []
  /** Ids of queued messages being written now (their `added` was emitted at send time). */
  private writingQueued = new Set<string>()
  private typingTimer: unknown = null
  private wasSynced = false
  private readonly reactionIndex: ReactionIndex

  constructor (deps: ViewDeps, conversationId: string, opts: OpenOptions = {}) {
    super()
    this.deps = deps
    this.conversationId = conversationId
    this.asGuest = opts.asGuest ?? false
    this.pageSize = opts.pageSize ?? 30
    ensureRoots(this.doc)
    this.reactionIndex = new ReactionIndex(this.doc)
    this.ownClients.add(this.doc.clientID)
    this.doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (origin === STORAGE_ORIGIN) return
      if (this.early !== null) this.early.push(update)
      else this.local?.append(update)
    })
    messagesOf(this.doc).observe(event => this.onMessagesChanged(event))
    reactionsOf(this.doc).observe(event => this.onReactionsChanged(event))
    const watched = [metaOf(this.doc), readsOf(this.doc), participantsOf(this.doc)] as unknown as Array<Y.AbstractType<unknown>>
    this.doc.on('afterTransaction', (tr: Y.Transaction) => {
      if (this.refreshRole()) return
      // Subject, guest access, participants and read markers are shown too.
      if (watched.some(t => tr.changed.has(t as Y.AbstractType<Y.YEvent<any>>))) this.emit('change', [])
    })
    this.ready = this.init()
  }

  private async init (): Promise<void> {
    const { deps } = this
    let restored: Message[] = []
    if (deps.store !== null) {
      const early = this.early ?? []
      this.local = await LocalBinding.open(deps.store, localKey(deps.userId, this.conversationId), this.doc, early, meta => {
        if (meta === null) return
        this.ownClients.add(meta.clientId)
        this.acked = new Map(meta.acked)
        restored = meta.queued ?? []
      })
      if (this.local !== null) this.ownClients.add(this.doc.clientID)
    }
    this.early = null
    if (this.closedFlag) { await this.local?.close(); return }
    // A local copy holding anything of the server's came from a sync: appends go after it.
    this.historyKnown ||= [...this.doc.store.clients.keys()].some(client => !this.ownClients.has(client))
    // A crash between writing the queue into the log and clearing it leaves both: keep one.
    this.located = locateMessages(messagesOf(this.doc))
    const known = new Set([...this.located.map(l => l.message.id), ...this.queued.map(m => m.id)])
    this.queued = [...restored.filter(m => !known.has(m.id)), ...this.queued]
    if (this.historyKnown) this.writeQueued()
    else if (this.queued.length > 0) this.local?.saveQueued(this.queued)
    this.rebuild()
    this.recordStatuses(false)
    const awareness = new awarenessProtocol.Awareness(this.doc)
    this.awareness = awareness
    const user: Record<string, string> = { id: deps.userId }
    if (deps.name !== undefined) user.name = deps.name
    awareness.setLocalState({ user, typing: false })
    awareness.on('change', () => this.refreshPresence())
    const transport = new SyncTransport({
      wsUrl: deps.wsUrl,
      conversationId: this.conversationId,
      asGuest: this.asGuest,
      tokens: deps.tokens,
      WebSocket: deps.WebSocket,
      doc: this.doc,
      awareness,
      random: deps.random,
      timers: deps.timers,
      backoff: deps.backoff,
      network: deps.network
    })
    this.transport = transport
    transport.on('status', s => {
      if (s === 'synced' && !this.wasSynced) {
        this.wasSynced = true
        this.historyKnown = true
        this.pinWindow()
        this.writeQueued()
      }
      this.refreshPresence()
      this.emit('status', [s])
    })
    transport.on('acked', sv => this.onAcked(sv))
    transport.on('retry', ms => this.emit('retry', [ms]))
    transport.on('error', e => this.onFinalError(e))
    transport.start()
  }

  /** The visible messages, oldest first. */
  get messages (): readonly ViewMessage[] { return this.list }
  get status (): ConnectionStatus { return this.closedFlag ? 'closed' : this.transport?.status ?? 'connecting' }
  /** The final refusal that closed this view, if any. */
  get error (): ChatError | null { return this.errorValue }
  get presence (): Presence { return this.presenceValue }
  /** Whether older messages exist beyond the window (null until known). */
  get hasMore (): boolean | null {
    const start = this.windowStart()
    if (this.older.length === 0 && start > 0) return true
    return this.hasMoreOlder
  }

  /** `participant` or `guest` once known from the document, else null. */
  get role (): 'participant' | 'guest' | null {
    if (getParticipant(this.doc, this.deps.userId) !== undefined) return 'participant'
    if (this.asGuest && (this.wasSynced || messagesOf(this.doc).length > 0)) return 'guest'
    return null
  }

  /** Whether this user moderates the conversation (v1.1): it may delete anyone's message. */
  get isModerator (): boolean { return isModerator(this.doc, this.deps.userId) }

  /** The conversation's subject as its document holds it (guests see it too), or null. */
  get subject (): string | null {
    const v = metaOf(this.doc).get('subject')
    return typeof v === 'string' && v !== '' ? v : null
  }

  /** The conversation's guest access as its document holds it. */
  get guestAccess (): GuestAccess { return getGuestAccess(this.doc) }

  /** The participants as the document holds them (empty before the first sync). */
  get participants (): ReadonlyMap<string, Participant> { return listParticipants(this.doc) }

  /** Every participant's read marker: user id to the `createdAt` of the last message it read. */
  get reads (): ReadonlyMap<string, number> {
    const out = new Map<string, number>()
    for (const [id, v] of readsOf(this.doc).entries()) if (typeof v === 'number') out.set(id, v)
    return out
  }

  /** The participant's access, when this user is one. */
  get access (): Access | null { return getParticipant(this.doc, this.deps.userId)?.access ?? null }

  /** Whether this view may send: null while unknown (before the first sync with no local copy). */
  get canWrite (): boolean | null {
    const p = getParticipant(this.doc, this.deps.userId)
    if (p !== undefined) return p.access === 'ReadWrite'
    if (this.role === 'guest') return getGuestAccess(this.doc) === 'write'
    return null
  }

  /** Resolves at the first sync; rejects with the refusal if the view is refused first. */
  async whenSynced (): Promise<void> {
    await this.ready
    if (this.wasSynced) return
    await new Promise<void>((resolve, reject) => {
      const onStatus = (s: ConnectionStatus): void => { if (s === 'synced') { cleanup(); resolve() } }
      const onError = (e: ChatError): void => { cleanup(); reject(e) }
      const cleanup = (): void => { this.off('status', onStatus); this.off('error', onError) }
      this.on('status', onStatus)
      this.on('error', onError)
    })
  }

  /** Resolves when the message `id` is sent; rejects when it failed or the view was refused. */
  async whenSent (id: string): Promise<void> {
    const check = (): boolean => {
      const s = this.statusOf(id)
      if (s === undefined) throw new ChatError('MESSAGE_NOT_FOUND', `No message ${id} in this view`)
      if (s === 'failed' || (s === 'pending' && this.errorValue !== null)) throw this.errorValue ?? new ChatError('FORBIDDEN')
      return s === 'sent'
    }
    if (check()) return
    await new Promise<void>((resolve, reject) => {
      const onChange = (): void => {
        try { if (check()) { this.off('change', onChange); this.off('error', onChange); resolve() } } catch (e) { this.off('change', onChange); this.off('error', onChange); reject(e) }
      }
      this.on('change', onChange)
      this.on('error', onChange)
    })
  }

  /**
   * Sends a message; returns it at once with status `pending`. Throws locally, with the code
   * the server would refuse it with: READ_ONLY in a read-only view, TEXT_TOO_LONG over the limit.
   */
  send (text: string, opts: { custom?: Record<string, string>, replyTo?: string, referencedMessageId?: string, attachment?: Attachment } = {}): ViewMessage {
    this.checkWritable()
    this.checkText(text)
    const m: Message = { id: this.deps.newId(), senderId: this.deps.userId, text, createdAt: this.deps.now(), type: 'UserMessage' }
    if (opts.custom !== undefined) m.custom = opts.custom
    const replyTo = opts.replyTo ?? opts.referencedMessageId
    if (replyTo !== undefined) m.referencedMessageId = replyTo
    if (opts.attachment !== undefined) m.attachment = opts.attachment
    if (this.historyKnown) {
      this.ownClients.add(this.doc.clientID)
      this.doc.transact(() => { messagesOf(this.doc).push([m]) })
    } else {
      this.queued.push(m)
      this.queueChanged()
      this.emit('added', [this.find(m.id) ?? { ...m, status: 'pending' }])
      this.emit('change', [])
    }
    this.setTyping(false)
    return this.find(m.id) ?? { ...m, status: 'pending' }
  }

  /**
   * Uploads a file (needs the network: the upload is not queued offline), then sends a message
   * carrying it as `attachment`, with `text` (default empty). Resolves with the pending message
   * and what the upload answered (its sniffed type, and width and height for images).
   */
  async attach (file: Blob | Uint8Array, name: string, opts: { text?: string, custom?: Record<string, string>, replyTo?: string } & UploadOptions = {}): Promise<{ message: ViewMessage, file: UploadedFile }> {
    this.checkWritable()
    const text = opts.text ?? ''
    this.checkText(text)
    const up = await this.deps.rest.upload(this.conversationId, file, name, { onProgress: opts.onProgress, signal: opts.signal })
    const attachment: Attachment = { fileId: up.fileId, name: up.name, size: up.size, contentType: up.contentType }
    return { message: this.send(text, { custom: opts.custom, attachment, ...(opts.replyTo !== undefined ? { replyTo: opts.replyTo } : {}) }), file: up }
  }

  /** A URL that downloads an attachment of this conversation, with the token in it (for `<img src>` and links). */
  async fileUrl (attachment: Pick<Attachment, 'fileId'>): Promise<string> {
    return await this.deps.rest.fileUrl(this.conversationId, attachment.fileId)
  }

  /** Messages of this conversation (live and archived) holding every word of `q`, newest first. */
  async search (q: string, opts: SearchOptions = {}): Promise<MessagePage> {
    return await this.deps.rest.searchConversation(this.conversationId, q, opts)
  }

  /** Replaces the text (and custom) of one of the user's own messages; sets `editedAt`. */
  edit (id: string, text: string, opts: { custom?: Record<string, string> } = {}): ViewMessage {
    this.checkWritable()
    this.checkText(text)
    const q = this.queued.findIndex(m => m.id === id)
    if (q >= 0) {
      const previous = this.queued[q]
      const next: Message = { ...previous, text, editedAt: this.deps.now() }
      if (opts.custom !== undefined) next.custom = opts.custom
      this.queued[q] = next
      this.queueChanged()
      const shown = this.find(id) ?? { ...next, status: 'pending' as const }
      this.emit('edited', [shown, previous])
      this.emit('change', [])
      return shown
    }
    const { index, message } = this.own(id)
    const next: Message = { ...message, text, editedAt: this.deps.now() }
    if (opts.custom !== undefined) next.custom = opts.custom
    this.ownClients.add(this.doc.clientID)
    this.doc.transact(() => {
      const arr = messagesOf(this.doc)
      arr.delete(index, 1)
      arr.insert(index, [next])
    })
    return this.find(id) ?? { ...next, status: 'pending' }
  }

  /** Deletes one of the user's own messages (any message, when it is a moderator). */
  delete (id: string): void {
    this.checkWritable()
    const q = this.queued.findIndex(m => m.id === id)
    if (q >= 0) {
      const [removed] = this.queued.splice(q, 1)
      this.queueChanged()
      this.emit('deleted', [removed])
      this.emit('change', [])
      return
    }
    const { index } = this.own(id, this.isModerator)
    this.ownClients.add(this.doc.clientID)
    this.doc.transact(() => { messagesOf(this.doc).delete(index, 1) })
  }

  /**
   * Adds `reaction` (an emoji, 1 to 32 characters without whitespace) to the user's reactions to
   * a shown message; works offline (written to the local document, delivered on reconnect).
   * Throws INVALID_REACTION for a malformed reaction or past 20 per message, MESSAGE_NOT_FOUND
   * for a message this view does not show or has not sent yet. Returns whether anything changed.
   */
  react (messageId: string, reaction: string): boolean {
    const key = this.reactionTarget(messageId)
    if (!isReaction(reaction)) throw new ChatError('INVALID_REACTION')
    const current = this.ownReactions(key)
    if (current.includes(reaction)) return false
    if (current.length >= MAX_REACTIONS_PER_USER) throw new ChatError('INVALID_REACTION', `At most ${MAX_REACTIONS_PER_USER} reactions per message`)
    this.ownClients.add(this.doc.clientID)
    this.doc.transact(() => { reactionsOf(this.doc).set(key, [...current, reaction]) })
    return true
  }

  /** Removes `reaction` from the user's reactions to a message. Returns whether anything changed. */
  unreact (messageId: string, reaction: string): boolean {
    const key = this.reactionTarget(messageId)
    const current = this.ownReactions(key)
    if (!current.includes(reaction)) return false
    const next = current.filter(r => r !== reaction)
    this.ownClients.add(this.doc.clientID)
    this.doc.transact(() => {
      if (next.length === 0) reactionsOf(this.doc).delete(key)
      else reactionsOf(this.doc).set(key, next)
    })
    return true
  }

  /**
   * The message that `messageId` replies to (its `referencedMessageId`), or null when it is not a
   * reply or the referenced message was deleted. Read from the view when it is shown, else from
   * the server (`GET /v1/conversations/:id/messages/:messageId`, archive included).
   */
  async getReferenced (messageId: string): Promise<ViewMessage | null> {
    const ref = this.find(messageId)?.referencedMessageId
    if (ref === undefined) return null
    const shown = this.find(ref)
    if (shown !== undefined) return shown
    try {
      const m = await this.deps.rest.message(this.conversationId, ref)
      return { ...m, status: 'sent' }
    } catch (e) {
      if (e instanceof ChatError && e.code === 'MESSAGE_NOT_FOUND') return null
      throw e
    }
  }

  /** Shows or clears "typing" in presence; it clears itself after 5 s without a new call. */
  typing (on: boolean): void { this.setTyping(on) }

  /**
   * Marks every message of the document read: `reads[userId]` = the newest `createdAt` among
   * them. That is not always the last message's: a message written offline long ago can arrive
   * last. The server counts as unread the messages of others created after the marker.
   * Participants only, with access `ReadWrite` or `Read` (a read marker is not content); a guest
   * would be refused with WRITE_FORBIDDEN. Returns whether anything changed.
   */
  markRead (): boolean {
    if (this.closedFlag) throw this.closedError()
    if (this.role !== 'participant') throw new ChatError('WRITE_FORBIDDEN', 'Only participants keep read markers')
    if (this.located.length === 0) return false
    let newest = 0
    for (const l of this.located) newest = Math.max(newest, l.message.createdAt)
    const reads = readsOf(this.doc)
    const current = reads.get(this.deps.userId)
    if (typeof current === 'number' && current >= newest) return false
    this.ownClients.add(this.doc.clientID)
    this.doc.transact(() => { reads.set(this.deps.userId, newest) })
    this.deps.onActivity()
    return true
  }

  /** The user's read marker (createdAt of the last message read), if any. */
  get readUpTo (): number | null {
    const v = readsOf(this.doc).get(this.deps.userId)
    return typeof v === 'number' ? v : null
  }

  /**
   * Widens the window by one page of older messages, fetched with
   * `GET /v1/conversations/:id/messages?before=` (messages the local document lacks, for
   * instance before the first sync, are shown from that page). Returns how many were added.
   */
  async loadOlder (): Promise<{ added: number, hasMore: boolean }> {
    const before = this.list[0]
    const page = await this.deps.rest.messagesBefore(this.conversationId, before?.id, this.pageSize)
    const inDoc = new Map(this.located.map((l, i) => [l.message.id, i]))
    const shown = new Set(this.list.map(m => m.id))
    const start = this.windowStart()
    const firstInDoc = page.data.find(m => inDoc.has(m.id))
    if (firstInDoc !== undefined && (inDoc.get(firstInDoc.id) ?? start) < start) this.startId = firstInDoc.id
    const extra = page.data.filter(m => !inDoc.has(m.id) && !shown.has(m.id))
    this.older = [...extra, ...this.older]
    this.hasMoreOlder = page.hasMore
    const beforeCount = this.list.length
    this.rebuild()
    this.emit('change', [])
    return { added: this.list.length - beforeCount, hasMore: page.hasMore }
  }

  /** Leaves: closes the socket (a guest vanishes from presence at once) and saves local state. */
  async close (): Promise<void> {
    if (this.closedFlag) return
    this.closedFlag = true
    if (this.typingTimer !== null) this.deps.timers.clearTimeout(this.typingTimer)
    await this.ready.catch(() => {})
    this.transport?.destroy()
    this.awareness?.destroy()
    this.reactionIndex.destroy()
    await this.local?.close()
    if (this.transport === null) this.emit('status', ['closed'])
    this.doc.destroy()
  }

  private closedError (): ChatError {
    return this.errorValue ?? new ChatError('INVALID_REQUEST', 'This view is closed')
  }

  private checkWritable (): void {
    if (this.closedFlag) throw this.closedError()
    if (this.canWrite === false) throw new ChatError('READ_ONLY')
  }

  private checkText (text: string): void {
    const max = this.deps.maxTextLength ?? DEFAULT_MAX_TEXT_LENGTH
    if (text.length > max) throw new ChatError('TEXT_TOO_LONG', `A text holds at most ${max} characters`)
  }

  /** The message with `id`; it must be the user's own unless `anyone`. */
  private own (id: string, anyone = false): { index: number, message: Message } {
    const index = this.located.findIndex(l => l.message.id === id)
    if (index < 0) throw new ChatError('MESSAGE_NOT_FOUND')
    const message = this.located[index].message
    if (!anyone && message.senderId !== this.deps.userId) throw new ChatError('SENDER_MISMATCH', 'Only your own messages can be changed')
    return { index, message }
  }

  private find (id: string): ViewMessage | undefined { return this.list.find(m => m.id === id) }

  /** The user's reactions key for a shown message that the server has (not one still queued). */
  private reactionTarget (messageId: string): string {
    this.checkWritable()
    if (this.find(messageId) === undefined || this.queued.some(m => m.id === messageId)) {
      throw new ChatError('MESSAGE_NOT_FOUND', `No message ${messageId} to react to in this view`)
    }
    return reactionKey(messageId, this.deps.userId)
  }

  private ownReactions (key: string): string[] {
    const v: unknown = reactionsOf(this.doc).get(key)
    return Array.isArray(v) ? v.filter(isReaction) : []
  }

  /** A message with the reactions the document holds (REST's for older ones until the first sync). */
  private shownWithReactions (m: Message & { reactions?: Reactions }, status: MessageStatus): ViewMessage {
    const { reactions: fromRest, ...message } = m
    const reactions = this.reactionIndex.summary(m.id) ?? (this.wasSynced ? undefined : fromRest)
    return reactions === undefined ? { ...message, status } : { ...message, status, reactions }
  }

  private onReactionsChanged (event: Y.YMapEvent<string[]>): void {
    this.rebuild()
    const ids = new Set<string>()
    for (const key of event.keysChanged) {
      const target = parseReactionKey(key)
      if (target !== null) ids.add(target.messageId)
    }
    let shown = false
    for (const id of ids) {
      const m = this.find(id)
      if (m === undefined) continue
      shown = true
      this.emit('reacted', [m])
    }
    if (shown) this.emit('change', [])
  }

  private statusOf (id: string): MessageStatus | undefined {
    const l = this.located.find(x => x.message.id === id)
    if (l !== undefined) return this.statusFor(l)
    if (this.queued.some(m => m.id === id)) return this.writeFailed ? 'failed' : 'pending'
    return undefined
  }

  /** After a change of the queue: keeps it in the local store and refreshes the list. */
  private queueChanged (): void {
    this.local?.saveQueued(this.queued)
    this.rebuild()
    this.recordStatuses(false)
  }

  /** Writes the queued messages, in send order, once the document holds the conversation. */
  private writeQueued (): void {
    if (this.queued.length === 0 || this.closedFlag) return
    const queued = this.queued
    this.queued = []
    this.ownClients.add(this.doc.clientID)
    this.writingQueued = new Set(queued.map(m => m.id))
    try {
      this.doc.transact(() => { messagesOf(this.doc).push(queued) })
    } finally {
      this.writingQueued.clear()
    }
    this.local?.saveQueued([])
  }

  private statusFor (l: Located): MessageStatus {
    if (!this.ownClients.has(l.client)) return 'sent'
    if (l.clock < (this.acked.get(l.client) ?? 0)) return 'sent'
    return this.writeFailed ? 'failed' : 'pending'
  }

  private windowStart (): number {
    if (this.startId !== null) {
      const i = this.located.findIndex(l => l.message.id === this.startId)
      if (i >= 0) return i
    }
    return Math.max(0, this.located.length - this.pageSize)
  }

  /** Fixes the window's first message, so new messages widen it instead of shifting it. */
  private pinWindow (): void {
    if (this.startId === null && this.located.length > 0) {
      this.startId = this.located[this.windowStart()].message.id
    }
  }

  private rebuild (): void {
    this.located = locateMessages(messagesOf(this.doc))
    const start = this.windowStart()
    const inDoc = new Set(this.located.map(l => l.message.id))
    const older: ViewMessage[] = this.older.filter(m => !inDoc.has(m.id)).map(m => this.shownWithReactions(m, 'sent'))
    const visible = this.located.slice(start).map(l => this.shownWithReactions(l.message, this.statusFor(l)))
    const queuedStatus: MessageStatus = this.writeFailed ? 'failed' : 'pending'
    const queued = this.queued.map(m => ({ ...m, status: queuedStatus }))
    this.list = [...older, ...visible, ...queued]
  }

  private onMessagesChanged (event: Y.YArrayEvent<Message>): void {
    const shownBefore = this.list
    const removed = new Map<string, Message>()
    for (const item of event.changes.deleted) {
      for (const m of item.content.getContent()) if (isMessage(m, Number.MAX_SAFE_INTEGER)) removed.set(m.id, m)
    }
    // The server moves old messages to its archive in a transaction that also advances
    // `meta.archived`: those are not deletions. Keep the ones on screen as older messages.
    const meta = metaOf(this.doc) as unknown as Y.AbstractType<Y.YEvent<Y.Map<unknown>>>
    if (event.transaction.changed.get(meta)?.has('archived') === true) {
      const moved = shownBefore.filter(m => removed.has(m.id)).map(({ status: _status, ...m }) => m as Message)
      this.older = [...this.older, ...moved]
      removed.clear()
    }
    this.rebuild()
    for (const item of event.changes.added) {
      if (item.deleted) continue
      for (const m of item.content.getContent()) {
        if (!isMessage(m, Number.MAX_SAFE_INTEGER)) continue
        const shown = this.find(m.id) ?? { ...m, status: 'sent' as const }
        const previous = removed.get(m.id)
        if (previous !== undefined) {
          removed.delete(m.id)
          // The same object in a new place is a move (the server moved a message that was
          // written before a sync behind the history, see shared/order.ts), not an edit.
          if (JSON.stringify(previous) !== JSON.stringify(m)) this.emit('edited', [shown, previous])
        } else if (!this.writingQueued.has(m.id)) {
          this.emit('added', [shown])
        }
      }
    }
    for (const m of removed.values()) this.emit('deleted', [m])
    // A move by the server makes an own pending message sent (the server wrote it durably).
    this.recordStatuses(true)
    this.emit('change', [])
    if (event.transaction.origin !== STORAGE_ORIGIN) this.deps.onActivity()
  }

  private onAcked (sv: Map<number, number>): void {
    for (const [client, clock] of sv) {
      if (clock > (this.acked.get(client) ?? 0)) this.acked.set(client, clock)
    }
    this.local?.saveAcked(this.acked)
    this.rebuild()
    if (this.recordStatuses(true)) this.emit('change', [])
  }

  /** Remembers each own message's status; emits `sent` for those that just became sent. */
  private recordStatuses (emitSent: boolean): boolean {
    let changed = false
    const next = new Map<string, MessageStatus>()
    for (const m of this.list) {
      if (m.senderId !== this.deps.userId) continue
      next.set(m.id, m.status)
      const before = this.statusById.get(m.id)
      if (before !== m.status) {
        changed = true
        if (emitSent && before === 'pending' && m.status === 'sent') this.emit('sent', [m])
      }
    }
    this.statusById = next
    return changed
  }

  private onFinalError (e: ChatError): void {
    this.errorValue = e
    if (WRITE_REFUSALS.has(e.code)) {
      this.writeFailed = true
      this.local?.clear()
    }
    this.rebuild()
    this.recordStatuses(false)
    this.emit('error', [e])
    this.emit('change', [])
    this.refreshPresence()
  }

  private setTyping (on: boolean): void {
    const a = this.awareness
    if (this.typingTimer !== null) { this.deps.timers.clearTimeout(this.typingTimer); this.typingTimer = null }
    if (a === null || this.closedFlag) return
    if (a.getLocalState()?.typing !== on) a.setLocalStateField('typing', on)
    if (on) this.typingTimer = this.deps.timers.setTimeout(() => { this.typingTimer = null; this.setTyping(false) }, TYPING_TIMEOUT_MS)
  }

  private lastRole: string | null = null

  /** Emits `change` when the role or write right changed; returns whether it did. */
  private refreshRole (): boolean {
    const key = `${this.role ?? ''}:${String(this.canWrite)}`
    if (key === this.lastRole) return false
    this.lastRole = key
    this.refreshPresence()
    this.emit('change', [])
    return true
  }

  private refreshPresence (): void {
    const a = this.awareness
    if (a === null) return
    const role = this.role
    const selfUser: PresenceUser | null = role === null || this.status !== 'synced'
      ? null
      : { id: this.deps.userId, role, ...(this.deps.name !== undefined ? { name: this.deps.name } : {}) }
    const p = presenceOf(a.getStates(), { clientId: a.clientID, user: selfUser })
    if (JSON.stringify(p) === JSON.stringify(this.presenceValue)) return
    this.presenceValue = p
    this.emit('presence', [p])
  }
}
