/**
 * The chatbox and presence panel for one open conversation view: history with "load older",
 * message statuses, reactions (counts, and a few buttons to toggle one's own), replies (the
 * quoted message above the composer and on the reply), the composer (absent when the view is
 * read-only), the typing indicator, participants online, "N guests watching" and the guests when
 * this user may see them; an attach button (images shown inline, other files as a link card with
 * their size) and a search box listing the conversation's messages that hold every word searched.
 */
import type { Attachment, ConversationView, Presence, PresenceUser, ViewMessage } from '../client/index.ts'
import { field, h, mount, timeOf } from './dom.ts'
import { describeError } from './refusals.ts'

export interface ChatPane {
  readonly element: HTMLElement
  setTitle (title: string): void
  destroy (): Promise<void>
}

const STATUS_TEXT: Record<string, string> = {
  connecting: 'connecting…', connected: 'syncing…', synced: 'live', offline: 'offline — messages wait', closed: 'closed'
}

/** How a user is shown: a name a guest chose itself is quoted and followed by its id, so "bob" the guest never reads as participant bob. */
const label = (u: PresenceUser): string =>
  u.name === undefined ? u.id : u.nameSource === 'self' ? `“${u.name}” (guest ${u.id})` : u.name

const names = (p: Presence, id: string): string => {
  const u = [...p.participants, ...p.guests].find(x => x.id === id)
  return u === undefined ? id : label(u)
}

/** The reaction buttons every message offers. */
const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮']

const excerpt = (text: string): string => text.length > 80 ? `${text.slice(0, 80)}…` : text

/** Types shown inline as images (the server serves them inline too). */
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'])

const sizeText = (bytes: number): string =>
  bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`


export const createChatPane = (view: ConversationView, opts: { userId: string, name: string, title: string }): ChatPane => {
  const list = h('ol', { class: 'messages', 'data-testid': 'messages' })
  const olderButton = h('button', { class: 'link', type: 'button', 'data-testid': 'load-older' }, 'Load older messages')
  const banner = h('div', { class: 'banner', role: 'alert', 'data-testid': 'error', hidden: true })
  const statusEl = h('span', { class: 'status', 'data-testid': 'connection' })
  const roleEl = h('span', { class: 'role', 'data-testid': 'role' })
  const typingEl = h('div', { class: 'typing', 'data-testid': 'typing', 'aria-live': 'polite' })
  const composerSlot = h('div', { class: 'composer-slot' })
  const presenceEl = h('aside', { class: 'presence', 'data-testid': 'presence' })
  const titleEl = h('h2', { 'data-testid': 'chat-title' }, opts.title)
  const searchInput = h('input', { name: 'q', type: 'search', placeholder: 'Search this conversation', 'data-testid': 'search-input' })
  const searchForm = h('form', { class: 'search', 'data-testid': 'search' }, searchInput)
  const searchResults = h('ol', { class: 'search-results', 'data-testid': 'search-results', hidden: true })
  const element = h('section', { class: 'chat', 'data-testid': 'chat', 'data-conversation': view.conversationId },
    h('header', { class: 'chat-head' }, titleEl, roleEl, statusEl, searchForm),
    searchResults,
    banner,
    h('div', { class: 'chat-body' },
      h('div', { class: 'history' }, olderButton, list, typingEl, composerSlot),
      presenceEl))

  const input = h('input', { name: 'text', placeholder: 'Write a message…', autocomplete: 'off', 'data-testid': 'composer-input', maxlength: 10000 })
  const replyBar = h('div', { class: 'reply-bar', 'data-testid': 'reply-bar', hidden: true })
  const fileInput = h('input', { type: 'file', class: 'file-input', 'data-testid': 'attach-input', 'aria-label': 'Attach a file' })
  const attachButton = h('button', { type: 'button', class: 'attach', title: 'Attach a file', 'data-testid': 'attach' }, 'Attach')
  const composer = h('form', { class: 'composer', 'data-testid': 'composer' }, replyBar, h('div', { class: 'composer-row' }, attachButton, fileInput, input, h('button', { type: 'submit' }, 'Send')))
  /** The message the next send replies to. */
  let replyTo: ViewMessage | null = null
  /** Referenced messages not shown in the view, as loaded from the server (null: deleted). */
  const quotes = new Map<string, ViewMessage | null>()
  const loadingQuotes = new Set<string>()
  attachButton.addEventListener('click', () => { fileInput.click() })
  fileInput.addEventListener('change', () => {
    const file = fileInput.files?.[0]
    if (file === undefined) return
    attachButton.disabled = true
    view.attach(file, file.name, { text: input.value.trim() }).then(() => {
      input.value = ''
    }, showError).finally(() => {
      attachButton.disabled = false
      fileInput.value = ''
    })
  })

  searchForm.addEventListener('submit', ev => {
    ev.preventDefault()
    const q = searchInput.value.trim()
    if (q === '') { searchResults.hidden = true; return }
    view.search(q).then(page => {
      searchResults.hidden = false
      mount(searchResults, ...(page.data.length === 0
        ? [h('li', { class: 'empty' }, `Nothing found for “${q}”.`)]
        : page.data.map(m => h('li', { 'data-testid': 'search-hit', 'data-id': m.id }, h('time', {}, timeOf(m.createdAt)), ' ', h('span', { 'data-testid': 'search-hit-text' }, m.text || (m.attachment?.name ?? ''))))))
    }, showError)
  })

  /** Download URLs carry the token: fetched once per file, then the list renders again. */
  const urls = new Map<string, string | null>()
  const urlOf = (a: Attachment): string | null => {
    if (!urls.has(a.fileId)) {
      urls.set(a.fileId, null)
      view.fileUrl(a).then(u => { urls.set(a.fileId, u); render() }, showError)
    }
    return urls.get(a.fileId) ?? null
  }
  const renderAttachment = (a: Attachment): HTMLElement => {
    const url = urlOf(a)
    if (IMAGE_TYPES.has(a.contentType)) {
      return h('a', { class: 'attachment image', href: url ?? '#', target: '_blank', rel: 'noopener' },
        h('img', { 'data-testid': 'attachment-image', alt: a.name, src: url ?? undefined, loading: 'lazy' }))
    }
    return h('a', { class: 'attachment card', 'data-testid': 'attachment-link', href: url ?? '#', download: a.name },
      h('span', { class: 'file-name' }, a.name), ' ', h('span', { class: 'file-size' }, sizeText(a.size)))
  }
  const readOnlyNote = h('p', { class: 'readonly', 'data-testid': 'readonly' }, 'Read-only: you can follow this conversation but not write in it.')

  composer.addEventListener('submit', ev => {
    ev.preventDefault()
    const text = field(composer, 'text')
    if (text === '') return
    try {
      view.send(text, replyTo === null ? {} : { replyTo: replyTo.id })
      input.value = ''
      setReplyTo(null)
    } catch (e) {
      showError(e)
    }
  })
  input.addEventListener('input', () => view.typing(input.value !== ''))
  olderButton.addEventListener('click', () => {
    olderButton.disabled = true
    view.loadOlder().then(() => { olderButton.disabled = false; render() }, e => { olderButton.disabled = false; showError(e) })
  })

  const showError = (e: unknown): void => {
    banner.hidden = false
    banner.textContent = describeError(e)
  }

  const senderName = (m: ViewMessage): string =>
    m.senderId === null ? 'system' : m.senderId === opts.userId ? opts.name : names(view.presence, m.senderId)

  const quoteOf = (m: ViewMessage | null, testId: string): HTMLElement =>
    h('blockquote', { class: 'quote', 'data-testid': testId }, m === null ? 'a deleted message' : h('span', {}, h('b', {}, senderName(m)), ' ', excerpt(m.text)))

  const setReplyTo = (m: ViewMessage | null): void => {
    replyTo = m
    replyBar.hidden = m === null
    mount(replyBar, m === null ? null : quoteOf(m, 'reply-quote'),
      h('button', { class: 'link', type: 'button', 'data-testid': 'reply-cancel', onclick: () => setReplyTo(null) }, '✕'))
    if (m !== null) input.focus()
  }

  /** The quote above a reply: from the view, else loaded once from the server. */
  const renderQuote = (m: ViewMessage): HTMLElement | null => {
    const ref = m.referencedMessageId
    if (ref === undefined) return null
    const shown = view.messages.find(x => x.id === ref)
    if (shown !== undefined) return quoteOf(shown, 'quote')
    const loaded = quotes.get(ref)
    if (loaded !== undefined) return quoteOf(loaded, 'quote')
    if (!loadingQuotes.has(ref)) {
      loadingQuotes.add(ref)
      view.getReferenced(m.id).then(q => { quotes.set(ref, q); render() }, showError)
    }
    return h('blockquote', { class: 'quote', 'data-testid': 'quote' }, '…')
  }

  const toggleReaction = (m: ViewMessage, reaction: string): void => {
    try {
      if (m.reactions?.[reaction]?.includes(opts.userId) === true) view.unreact(m.id, reaction)
      else view.react(m.id, reaction)
    } catch (e) {
      showError(e)
    }
  }

  const renderReactions = (m: ViewMessage): HTMLElement => {
    const shown = [...new Set([...Object.keys(m.reactions ?? {}), ...QUICK_REACTIONS])]
    const canReact = view.canWrite === true && view.error === null
    return h('div', { class: 'reactions', 'data-testid': 'reactions' }, ...shown.map(r => {
      const users = m.reactions?.[r] ?? []
      const mine = users.includes(opts.userId)
      return h('button', {
        type: 'button', class: `reaction ${users.length > 0 ? 'used' : ''}`, 'data-testid': 'reaction', 'data-reaction': r,
        'aria-pressed': mine ? 'true' : 'false', title: users.join(', '), disabled: !canReact, onclick: () => toggleReaction(m, r)
      }, r, users.length > 0 ? h('span', { class: 'count', 'data-testid': 'reaction-count' }, ` ${users.length}`) : null)
    }))
  }

  const renderMessage = (m: ViewMessage): HTMLElement => {
    const mine = m.senderId === opts.userId
    return h('li', { class: `msg ${mine ? 'mine' : ''} ${m.status}`, 'data-testid': 'message', 'data-id': m.id, 'data-status': m.status },
      h('div', { class: 'meta' }, h('b', {}, senderName(m)), ' ', h('time', {}, timeOf(m.createdAt)),
        m.editedAt !== undefined ? ' (edited)' : '',
        mine ? h('span', { class: 'tick', title: m.status }, m.status === 'sent' ? ' ✓' : m.status === 'pending' ? ' …' : ' ✗') : null,
        view.canWrite === true ? h('button', { class: 'link reply', type: 'button', 'data-testid': 'reply', onclick: () => setReplyTo(m) }, ' Reply') : null),
      renderQuote(m),
      m.text === '' ? null : h('div', { class: 'text', 'data-testid': 'message-text' }, m.text),
      m.attachment === undefined ? null : renderAttachment(m.attachment),
      renderReactions(m))
  }

  let lastComposer: 'composer' | 'readonly' | 'none' | null = null
  const render = (): void => {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
    mount(list, ...view.messages.map(renderMessage))
    if (view.messages.length === 0) list.append(h('li', { class: 'empty' }, view.status === 'synced' ? 'No messages yet.' : 'Loading…'))
    if (atBottom) list.scrollTop = list.scrollHeight
    olderButton.hidden = view.hasMore !== true
    statusEl.textContent = STATUS_TEXT[view.status] ?? view.status
    statusEl.dataset.status = view.status
    const role = view.role
    roleEl.textContent = role === null ? '' : role === 'guest' ? (view.canWrite === true ? 'guest' : 'guest · read-only') : (view.canWrite === true ? 'participant' : 'participant · read-only')
    const want = view.error !== null ? 'none' : view.canWrite === false ? 'readonly' : view.canWrite === true ? 'composer' : 'none'
    if (want !== lastComposer) {
      lastComposer = want
      mount(composerSlot, want === 'composer' ? composer : want === 'readonly' ? readOnlyNote : null)
    }
    if (view.error !== null) showError(view.error)
    maybeMarkRead()
  }

  const renderPresence = (p: Presence): void => {
    const typing = p.typing.map(id => names(p, id))
    typingEl.textContent = typing.length === 0 ? '' : `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`
    mount(presenceEl,
      h('h3', {}, 'Online'),
      h('ul', { 'data-testid': 'online' }, ...p.participants.map(u => h('li', { 'data-user': u.id }, u.name ?? u.id, u.id === opts.userId ? ' (you)' : ''))),
      h('p', { class: 'guests-count', 'data-testid': 'guest-count' }, `${p.guestCount} ${p.guestCount === 1 ? 'guest' : 'guests'} watching`),
      p.guests.length > 0 ? h('ul', { class: 'guests', 'data-testid': 'guests' }, ...p.guests.map(u => h('li', { 'data-user': u.id, class: u.nameSource === 'self' ? 'self-named' : null }, label(u)))) : null)
  }

  let readTimer: ReturnType<typeof setTimeout> | null = null
  const maybeMarkRead = (): void => {
    // Every participant keeps a read marker, also with access Read (it is not content).
    if (readTimer !== null || view.role !== 'participant' || view.status !== 'synced') return
    if (document.visibilityState === 'hidden') return
    readTimer = setTimeout(() => {
      readTimer = null
      try { view.markRead() } catch (e) { showError(e) }
    }, 500)
  }

  view.on('change', render)
  view.on('status', render)
  view.on('error', e => { showError(e); render() })
  view.on('presence', p => { renderPresence(p); render() })
  render()
  renderPresence(view.presence)

  return {
    element,
    setTitle (title) { titleEl.textContent = title },
    async destroy () {
      if (readTimer !== null) clearTimeout(readTimer)
      view.off('change', render)
      view.off('status', render)
      await view.close()
    }
  }
}
