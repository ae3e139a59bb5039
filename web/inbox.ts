/**
 * The conversation list: a search box that filters by subject, id and last message (and lists
 * the messages holding the words searched, across the user's conversations), each
 * conversation with its unread badge and its last message with the author, the open one
 * highlighted (`aria-current`), and honest states: loading, empty, no match, and a notice in
 * plain words when it cannot be refreshed (gone once it can).
 */
import type { ConversationList, ConversationSummary, SearchHit } from '../client/index.ts'
import { h, mount, timeEl } from './dom.ts'
import type { People } from './people.ts'
import { describeError, OFFLINE_TEXT } from './refusals.ts'

export interface InboxOptions {
  userId: string
  people: People
  /** Where a conversation's link goes (the app: `#/c/<id>`). */
  hrefOf: (id: string) => string
  /** Called on a click instead of following the link (embedded inboxes). */
  onOpen?: (id: string) => void
  /** Searches messages across the user's conversations (`session.search`): hits show under the list. */
  search?: (q: string) => Promise<{ data: SearchHit[] }>
  /** Shown under the search box (the app's "New" and "Open as guest"). */
  tools?: HTMLElement
}

export interface Inbox {
  readonly element: HTMLElement
  /** Highlights the open conversation (null: none); returns its subject when listed. */
  setOpen (id: string | null): string | null
  /** Shows a notice above the list (cleared by the next good refresh). */
  notice (e: unknown): void
  destroy (): void
}

export const createInbox = (list: ConversationList, opts: InboxOptions): Inbox => {
  const { people } = opts
  let openId: string | null = null
  let query = ''
  const listEl = h('ul', { class: 'conversations', 'data-testid': 'conversation-list', 'aria-label': 'Your conversations' })
  const noticeEl = h('p', { class: 'banner', role: 'status', hidden: true, 'data-testid': 'notice' })
  const search = h('input', { type: 'search', placeholder: 'Search conversations', 'aria-label': 'Search conversations', 'data-testid': 'search', autocomplete: 'off' })
  const hitsEl = h('ul', { class: 'search-hits', 'data-testid': 'search-hits', 'aria-label': 'Messages found', hidden: true })
  let searchTimer: ReturnType<typeof setTimeout> | null = null
  let searched = ''
  const searchMessages = (): void => {
    if (searchTimer !== null) clearTimeout(searchTimer)
    searchTimer = null
    const q = search.value.trim()
    if (opts.search === undefined || q === searched) return
    searched = q
    if (q.length < 2) { hitsEl.hidden = true; mount(hitsEl); return }
    opts.search(q).then(({ data }) => {
      if (searched !== q) return
      hitsEl.hidden = false
      mount(hitsEl, h('li', {}, h('h3', {}, 'Messages')), ...(data.length === 0
        ? [h('li', { class: 'empty', 'data-testid': 'search-none' }, `No message holds “${q}”.`)]
        : data.map(hit)))
    }, onError)
  }
  search.addEventListener('input', () => {
    query = search.value.trim().toLowerCase()
    render()
    if (searchTimer !== null) clearTimeout(searchTimer)
    searchTimer = setTimeout(searchMessages, 400)
  })
  search.addEventListener('keydown', ev => { if (ev.key === 'Enter') { ev.preventDefault(); searched = ''; searchMessages() } })
  const element = h('div', { class: 'inbox' }, h('div', { class: 'side-tools' }, search, opts.tools), noticeEl, h('div', { class: 'inbox-scroll' }, listEl, hitsEl))

  const hit = (m: SearchHit): HTMLElement => {
    const where = list.items.find(c => c.id === m.conversationId)?.subject ?? m.conversationId
    const a = h('a', { href: opts.hrefOf(m.conversationId) },
      h('span', { class: 'where' }, `${where} · ${m.senderId === null ? 'System' : m.senderId === opts.userId ? 'You' : people.name(m.senderId)} · ${new Date(m.createdAt).toLocaleDateString()}`),
      h('span', { 'data-testid': 'search-hit-text' }, m.text !== '' ? m.text : m.attachment?.name ?? ''))
    const onOpen = opts.onOpen
    if (onOpen !== undefined) a.addEventListener('click', ev => { ev.preventDefault(); onOpen(m.conversationId) })
    return h('li', { 'data-testid': 'search-hit', 'data-id': m.id }, a)
  }

  const render = (): void => {
    const items = list.items
    if (!list.loaded) {
      mount(listEl, h('li', { class: 'empty', 'data-testid': 'list-loading' }, 'Loading your conversations…'))
      return
    }
    if (items.length === 0) {
      mount(listEl, h('li', { class: 'empty', 'data-testid': 'list-empty' },
        h('p', {}, h('b', {}, 'No conversations yet.')),
        h('p', {}, opts.tools !== undefined ? 'Start one with “New”, or open one you were invited to watch with “Open as guest”.' : 'Conversations you take part in will show here.')))
      return
    }
    const shown = query === '' ? items : items.filter(c => (c.subject ?? '').toLowerCase().includes(query) || c.id.toLowerCase().includes(query) || (c.lastMessage?.text.toLowerCase().includes(query) ?? false))
    if (shown.length === 0) {
      mount(listEl, h('li', { class: 'empty', 'data-testid': 'search-empty' }, `No conversation matches “${query}”.`))
      return
    }
    mount(listEl, ...shown.map(item))
  }

  const item = (c: ConversationSummary): HTMLElement => {
    const last = c.lastMessage
    const author = last === null || last.senderId === null ? '' : last.senderId === opts.userId ? 'You: ' : `${people.name(last.senderId)}: `
    const title = c.subject ?? c.id
    const a = h('a', { href: opts.hrefOf(c.id), 'aria-current': c.id === openId ? 'page' : null, class: c.unreadCount > 0 ? 'unread' : null },
      h('span', { class: 'avatar md conv', 'aria-hidden': 'true' }, [...title][0]?.toUpperCase() ?? '#'),
      h('span', { class: 'subject' }, title),
      h('span', { class: 'last', 'data-testid': 'last-message' }, last === null ? 'No messages yet' : `${author}${last.text}`),
      c.lastActivityAt > 0 ? timeEl(c.lastActivityAt) : h('span', {}),
      c.unreadCount > 0 ? h('span', { class: 'badge', 'data-testid': 'unread', 'aria-label': `${c.unreadCount} unread` }, c.unreadCount > 99 ? '99+' : c.unreadCount) : null)
    const onOpen = opts.onOpen
    if (onOpen !== undefined) a.addEventListener('click', ev => { ev.preventDefault(); onOpen(c.id) })
    return h('li', { 'data-testid': 'conversation', 'data-id': c.id }, a)
  }

  const onChange = (): void => { noticeEl.hidden = true; render() }
  const onError = (e: unknown): void => {
    noticeEl.hidden = false
    noticeEl.textContent = typeof navigator !== 'undefined' && navigator.onLine === false ? OFFLINE_TEXT : describeError(e)
  }
  const onOnline = (): void => { noticeEl.hidden = true; void list.refresh() }
  list.on('change', onChange)
  list.on('error', onError)
  people.onChange(render)
  window.addEventListener('online', onOnline)
  render()

  return {
    element,
    setOpen (id) {
      openId = id
      render()
      return list.items.find(c => c.id === id)?.subject ?? null
    },
    notice: onError,
    destroy () {
      if (searchTimer !== null) clearTimeout(searchTimer)
      list.off('change', onChange)
      list.off('error', onError)
      people.offChange(render)
      window.removeEventListener('online', onOnline)
    }
  }
}
