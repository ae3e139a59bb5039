/**
 * The chatbox for one open conversation view.
 *
 * Header: back (phones), title (the subject from the document, so guests see it too), role,
 * a status that says live, reconnecting (with a countdown) or offline, who is online, and
 * buttons for the people sheet and the settings. Message list: consecutive messages of one
 * author grouped, day separators, relative times with the exact time on hover, edited marks,
 * an unread divider, "jump to newest", system messages apart, "Seen by" from read markers in
 * small conversations, infinite scroll into the archive (`view.loadOlder`). Each message has
 * actions: reply, react (a picker), edit and delete (own; moderators delete anyone's). Long
 * lists stay fast: message elements are kept per message and rebuilt only when the message
 * changed, and the browser skips rendering those off screen (`content-visibility`).
 * A final refusal replaces the whole pane with what happened and what to do next.
 */
import type { Attachment, ConversationView, Presence, Session, ViewMessage } from '../client/index.ts'
import { createComposer } from './composer.ts'
import { dayLabel, exactTime, h, mount, refreshTimes, timeEl } from './dom.ts'
import { createPeople, type People } from './people.ts'
import { openSettings } from './settings.ts'
import { describeError } from './refusals.ts'

export interface ChatPane {
  readonly element: HTMLElement
  setTitle (title: string): void
  destroy (): Promise<void>
}

export interface ChatPaneOptions {
  userId: string
  title: string
  people: People
  /** The back button (shown on narrow screens): a link to the list (`'#/'`), a callback, or none. */
  back?: string | (() => void) | null
  /** Closes a guest's views (moderators; absent: no such button). */
  kickGuest?: (userId: string) => Promise<void>
  /** Opens the settings of this conversation (absent: no settings button). */
  openSettings?: () => void
}

/** The reactions the picker offers. */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀']

/** Messages of one author closer than this are grouped under one name. */
const GROUP_MS = 5 * 60_000
/** "Seen by" is shown in conversations with at most this many participants. */
const SEEN_BY_MAX = 10
/** The newest messages always fully rendered (older ones use `content-visibility: auto`). */
const FULLY_RENDERED = 40

const excerpt = (text: string): string => text.length > 80 ? `${text.slice(0, 80)}…` : text

/** Types shown inline as images (the server serves them inline too). */
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'])

/** A file size in plain words. */
export const sizeText = (bytes: number): string =>
  bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`
const dayKey = (ms: number): string => new Date(ms).toDateString()

/** What to tell a refused user to do next, with a link where there is one. */
const nextStep = (code: string, id: string): { text: string, href?: string, link?: string } => {
  switch (code) {
    case 'NOT_PARTICIPANT': return { text: 'Ask a participant to add you, or watch it as a guest.', href: `#/g/${encodeURIComponent(id)}`, link: 'Open as guest' }
    case 'GUEST_LIMIT':
    case 'KICKED': return { text: 'Try again in a little while.', href: `#/g/${encodeURIComponent(id)}`, link: 'Try again' }
    case 'TOKEN_EXPIRED':
    case 'TOKEN_INVALID': return { text: 'Sign out and sign in again.' }
    default: return { text: 'Pick another conversation.', href: '#/', link: 'Back to your conversations' }
  }
}

const backEl = (back: string | (() => void) | null): HTMLElement | null => {
  if (back === null) return null
  return typeof back === 'string'
    ? h('a', { class: 'icon back', href: back, 'aria-label': 'Back to conversations', 'data-testid': 'back' }, '←')
    : h('button', { class: 'icon back', type: 'button', 'aria-label': 'Back to conversations', 'data-testid': 'back', onclick: back }, '←')
}

export const createChatPane = (view: ConversationView, opts: ChatPaneOptions): ChatPane => {
  const { people } = opts
  const cid = view.conversationId
  const list = h('ol', { class: 'messages', 'data-testid': 'messages', 'aria-label': 'Messages', tabindex: 0 })
  const olderButton = h('button', { class: 'link older', type: 'button', 'data-testid': 'load-older' }, 'Load older messages')
  const banner = h('div', { class: 'banner', role: 'status', 'data-testid': 'chat-notice', hidden: true })
  const statusEl = h('span', { class: 'status', 'data-testid': 'connection', role: 'status' })
  const roleEl = h('span', { class: 'role', 'data-testid': 'role' })
  const whoEl = h('span', { class: 'who', 'data-testid': 'presence-summary' })
  const typingEl = h('div', { class: 'typing', 'data-testid': 'typing', 'aria-live': 'polite' })
  const composerSlot = h('div', { class: 'composer-slot' })
  const jump = h('button', { class: 'jump', type: 'button', 'data-testid': 'jump', hidden: true, 'aria-label': 'Jump to the newest message' }, '↓ Newest')
  const presenceEl = h('aside', { class: 'presence', 'data-testid': 'presence', 'aria-label': 'People here', id: `people-${cid}` })
  const titleEl = h('h2', { 'data-testid': 'chat-title', id: `title-${cid}` }, opts.title)
  const peopleButton = h('button', { class: 'ghost small people-toggle', type: 'button', 'aria-label': 'People here', 'aria-expanded': 'false', 'aria-controls': `people-${cid}`, 'data-testid': 'people-toggle' }, 'People')
  const settingsButton = opts.openSettings === undefined
    ? null
    : h('button', { class: 'ghost small', type: 'button', 'aria-label': 'Conversation settings', 'data-testid': 'settings-open', onclick: opts.openSettings }, 'Settings')
  const headAvatar = h('span', { class: 'avatar md conv', 'aria-hidden': 'true' })
  const body = h('div', { class: 'chat-body' },
    h('div', { class: 'history' }, h('div', { class: 'scroll-wrap' }, list, jump), typingEl, composerSlot),
    presenceEl)
  const element = h('section', { class: 'chat', 'data-testid': 'chat', 'data-conversation': cid, 'aria-labelledby': `title-${cid}` },
    h('header', { class: 'chat-head' },
      backEl(opts.back === undefined ? '#/' : opts.back),
      headAvatar,
      h('div', { class: 'title-block' }, titleEl, h('div', { class: 'sub' }, roleEl, statusEl, whoEl)),
      peopleButton, settingsButton),
    banner, body)

  let listTitle = opts.title
  const title = (): string => view.subject ?? listTitle
  const setTitle = (): void => {
    const t = title()
    if (titleEl.textContent !== t) titleEl.textContent = t
    headAvatar.textContent = [...t][0]?.toUpperCase() ?? '#'
  }

  peopleButton.addEventListener('click', () => {
    const open = !element.classList.contains('people-open')
    element.classList.toggle('people-open', open)
    peopleButton.setAttribute('aria-expanded', String(open))
    if (open) presenceEl.focus()
  })
  presenceEl.tabIndex = -1
  presenceEl.addEventListener('keydown', ev => {
    if (ev.key === 'Escape' && element.classList.contains('people-open')) { element.classList.remove('people-open'); peopleButton.setAttribute('aria-expanded', 'false'); peopleButton.focus() }
  })

  let bannerTimer: ReturnType<typeof setTimeout> | null = null
  const showNotice = (e: unknown): void => {
    banner.hidden = false
    banner.textContent = describeError(e)
    if (bannerTimer !== null) clearTimeout(bannerTimer)
    bannerTimer = setTimeout(() => { banner.hidden = true }, 8000)
  }
  const clearNotice = (): void => { banner.hidden = true }

  /** Referenced messages not shown in the view, as loaded from the server (null: deleted). */
  const quotes = new Map<string, ViewMessage | null>()
  const loadingQuotes = new Set<string>()
  let pickerFor: string | null = null
  let confirmDelete: string | null = null
  /** Messages of others after this `createdAt` are new to the user (fixed at the first sync). */
  let unreadAfter: number | null | undefined
  let newBelow = 0

  const senderName = (m: ViewMessage): string => m.senderId === null ? 'System' : people.name(m.senderId)

  const quoteOf = (m: ViewMessage | null, testId: string): HTMLElement =>
    h('blockquote', { class: 'quote', 'data-testid': testId }, m === null ? 'a deleted message' : h('span', {}, h('b', {}, senderName(m)), ' ', excerpt(m.text !== '' ? m.text : m.attachment !== undefined ? `📎 ${m.attachment.name}` : '')))

  const uploadsEl = h('ul', { class: 'uploads', 'data-testid': 'uploads', 'aria-label': 'Uploads' })
  /** Uploads one file (with the text typed, for the first) showing its progress and a cancel button. */
  const upload = (file: File, text: string, replyTo: ViewMessage | null): void => {
    const abort = new AbortController()
    const bar = h('progress', { max: 100, value: 0, 'aria-label': `Uploading ${file.name}` })
    const row = h('li', { 'data-testid': 'upload' }, h('span', { class: 'file-name' }, file.name), h('span', { class: 'file-size' }, sizeText(file.size)), bar,
      h('button', { type: 'button', class: 'ghost small', 'data-testid': 'upload-cancel', 'aria-label': `Cancel uploading ${file.name}`, onclick: () => abort.abort() }, 'Cancel'))
    uploadsEl.append(row)
    view.attach(file, file.name, {
      text,
      ...(replyTo !== null ? { replyTo: replyTo.id } : {}),
      signal: abort.signal,
      onProgress: (sent, total) => { bar.value = Math.round(sent / Math.max(total, 1) * 100) }
    }).then(() => { stick = true; row.remove() }, e => {
      row.remove()
      if (!(e instanceof DOMException && e.name === 'AbortError')) showNotice(e)
    })
  }

  const composer = createComposer({
    attach (files, text, replyTo) {
      files.forEach((f, i) => upload(f, i === 0 ? text : '', i === 0 ? replyTo : null))
    },
    send (text, replyTo) {
      try {
        view.send(text, replyTo === null ? {} : { replyTo: replyTo.id })
        stick = true
      } catch (e) { showNotice(e) }
    },
    edit (m, text) {
      if (text === m.text) return
      try { view.edit(m.id, text) } catch (e) { showNotice(e) }
    },
    typing (on) { view.typing(on) },
    candidates () {
      return [...view.participants.keys()].filter(id => id !== opts.userId).map(id => ({ id, name: people.name(id) }))
    },
    quote: m => quoteOf(m, 'reply-quote')
  })
  const readOnlyNote = h('p', { class: 'readonly', 'data-testid': 'readonly' }, 'Read-only: you can follow this conversation but not write in it.')

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
      view.getReferenced(m.id).then(q => { quotes.set(ref, q); render() }, showNotice)
    }
    return h('blockquote', { class: 'quote', 'data-testid': 'quote' }, '…')
  }

  const toggleReaction = (m: ViewMessage, reaction: string): void => {
    try {
      if (m.reactions?.[reaction]?.includes(opts.userId) === true) view.unreact(m.id, reaction)
      else view.react(m.id, reaction)
    } catch (e) { showNotice(e) }
  }

  const canAct = (): boolean => view.canWrite === true && view.error === null

  const renderReactions = (m: ViewMessage): HTMLElement | null => {
    const used = Object.entries(m.reactions ?? {}).filter(([, users]) => users.length > 0)
    if (used.length === 0) return null
    return h('div', { class: 'reactions', 'data-testid': 'reactions' }, ...used.map(([r, users]) => {
      const mine = users.includes(opts.userId)
      const who = users.map(u => u === opts.userId ? 'you' : people.name(u)).join(', ')
      return h('button', {
        type: 'button', class: 'reaction', 'data-testid': 'reaction', 'data-reaction': r,
        'aria-pressed': mine ? 'true' : 'false', 'aria-label': `${r} ${users.length}: ${who}`, title: who, disabled: !canAct(), onclick: () => toggleReaction(m, r)
      }, r, h('span', { class: 'count', 'data-testid': 'reaction-count' }, ` ${users.length}`))
    }))
  }

  const renderPicker = (m: ViewMessage): HTMLElement => h('div', { class: 'picker', role: 'group', 'aria-label': 'Pick a reaction', 'data-testid': 'picker' },
    ...QUICK_REACTIONS.map(r => h('button', {
      type: 'button', class: 'reaction', 'data-testid': 'react-pick', 'data-reaction': r, 'aria-label': `React with ${r}`,
      'aria-pressed': m.reactions?.[r]?.includes(opts.userId) === true ? 'true' : 'false',
      onclick: () => { pickerFor = null; toggleReaction(m, r); render() }
    }, r)))

  const act = (label: string, testId: string, fn: () => void, icon: string): HTMLElement =>
    h('button', { type: 'button', class: 'act', 'data-testid': testId, 'aria-label': label, title: label, onclick: fn }, icon)

  const renderActions = (m: ViewMessage, mine: boolean): HTMLElement | null => {
    if (!canAct() || m.type === 'SystemMessage') return null
    if (confirmDelete === m.id) {
      return h('div', { class: 'actions confirm', role: 'group', 'aria-label': 'Confirm delete' },
        h('span', {}, 'Delete this message?'),
        h('button', { type: 'button', class: 'danger', 'data-testid': 'delete-confirm', onclick: () => { confirmDelete = null; try { view.delete(m.id) } catch (e) { showNotice(e) } } }, 'Delete'),
        h('button', { type: 'button', class: 'ghost', onclick: () => { confirmDelete = null; render() } }, 'Keep'))
    }
    const sentOrMine = m.status === 'sent'
    return h('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' },
      sentOrMine ? act('Reply', 'reply', () => composer.replyTo(m), '↩') : null,
      sentOrMine ? act('React', 'react', () => { pickerFor = pickerFor === m.id ? null : m.id; render() }, '☺') : null,
      mine ? act('Edit', 'edit', () => composer.edit(m), '✎') : null,
      mine || view.isModerator ? act('Delete', 'delete', () => { confirmDelete = m.id; render() }, '✕') : null)
  }

  /** Download URLs carry the token: fetched once per file, then the message renders again. */
  const urls = new Map<string, string | null>()
  const urlOf = (a: Attachment): string | null => {
    if (!urls.has(a.fileId)) {
      urls.set(a.fileId, null)
      view.fileUrl(a).then(u => { urls.set(a.fileId, u); render() }, showNotice)
    }
    return urls.get(a.fileId) ?? null
  }
  const renderAttachment = (a: Attachment): HTMLElement => {
    const url = urlOf(a)
    if (IMAGE_TYPES.has(a.contentType)) {
      return h('a', { class: 'attachment image', href: url ?? '#', target: '_blank', rel: 'noopener', 'aria-label': `Image ${a.name}, open full size` },
        url === null ? h('span', { class: 'img-placeholder' }, a.name) : h('img', { 'data-testid': 'attachment-image', alt: a.name, src: url, loading: 'lazy' }))
    }
    return h('a', { class: 'attachment card', 'data-testid': 'attachment-link', href: url ?? '#', download: a.name },
      h('span', { class: 'file-icon', 'aria-hidden': 'true' }, (a.name.split('.').pop() ?? 'file').slice(0, 4).toUpperCase()),
      h('span', { class: 'file-name' }, a.name), ' ', h('span', { class: 'file-size' }, sizeText(a.size)))
  }

  /** Text with @mentions of participants highlighted. */
  const renderText = (text: string): HTMLElement => {
    const el = h('div', { class: 'text', 'data-testid': 'message-text' })
    const ids = view.participants
    let last = 0
    for (const match of text.matchAll(/@([\w.~-]+)/g)) {
      if (!ids.has(match[1])) continue
      const at = match.index ?? 0
      el.append(text.slice(last, at), h('span', { class: `mention ${match[1] === opts.userId ? 'me' : ''}` }, `@${people.name(match[1])}`))
      last = at + match[0].length
    }
    el.append(text.slice(last))
    return el
  }

  const renderMessage = (m: ViewMessage, cont: boolean): HTMLElement => {
    const mine = m.senderId === opts.userId
    if (m.type === 'SystemMessage') {
      return h('li', { class: 'msg system', 'data-testid': 'message', 'data-id': m.id, 'data-status': m.status },
        renderText(m.text), timeEl(m.createdAt))
    }
    const sender = m.senderId ?? ''
    return h('li', { class: `msg ${mine ? 'mine' : 'theirs'} ${cont ? 'cont' : ''} ${m.status}`, 'data-testid': 'message', 'data-id': m.id, 'data-status': m.status, 'data-sender': sender },
      !mine && !cont ? people.avatar(sender) : h('span', { class: 'avatar-gap' }),
      h('div', { class: 'bubble-wrap' },
        cont ? null : h('div', { class: 'meta' }, mine ? null : h('b', { class: 'name', 'data-testid': 'sender' }, senderName(m)),
          !mine && sender !== '' && view.participants.size > 0 && !view.participants.has(sender) ? h('span', { class: 'tag' }, 'guest') : null,
          ' ', timeEl(m.createdAt)),
        h('div', { class: 'bubble' },
          renderQuote(m),
          m.attachment === undefined ? null : renderAttachment(m.attachment),
          m.text === '' && m.attachment !== undefined ? null : renderText(m.text),
          h('div', { class: 'foot' },
            m.editedAt !== undefined ? h('span', { class: 'edited', 'data-testid': 'edited', title: `Edited ${exactTime(m.editedAt)}` }, 'edited') : null,
            cont ? h('time', { class: 'when small', title: exactTime(m.createdAt) }, new Date(m.createdAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) : null,
            mine ? h('span', { class: 'tick', 'data-testid': 'tick', title: m.status === 'sent' ? 'Sent' : m.status === 'pending' ? 'Waiting to be sent' : 'Not sent' }, m.status === 'sent' ? '✓' : m.status === 'pending' ? '…' : '! not sent') : null)),
        renderReactions(m),
        pickerFor === m.id ? renderPicker(m) : null,
        renderActions(m, mine)))
  }

  /** Kept message elements, rebuilt only when what they show changed. */
  const cache = new Map<string, { sig: string, el: HTMLElement }>()
  /** Bumped when user records arrive: names in mentions and quotes may read differently. */
  let namesVersion = 0
  const signature = (m: ViewMessage, cont: boolean): string => JSON.stringify([namesVersion,
    m.text, m.status, m.editedAt, m.reactions, cont, m.senderId === null ? '' : people.name(m.senderId), view.participants.has(m.senderId ?? ''),
    pickerFor === m.id, confirmDelete === m.id, canAct(), view.isModerator, m.attachment === undefined ? null : urls.get(m.attachment.fileId) ?? null,
    m.referencedMessageId === undefined ? null : (view.messages.find(x => x.id === m.referencedMessageId)?.text ?? quotes.get(m.referencedMessageId)?.text ?? quotes.has(m.referencedMessageId))
  ])

  const seenBy = (messages: readonly ViewMessage[]): HTMLElement | null => {
    const others = [...view.participants.keys()].filter(id => id !== opts.userId)
    if (others.length === 0 || others.length > SEEN_BY_MAX) return null
    const lastMine = [...messages].reverse().find(m => m.senderId === opts.userId && m.status === 'sent')
    if (lastMine === undefined || messages.at(-1)?.id !== lastMine.id) return null
    const reads = view.reads
    const seen = others.filter(id => (reads.get(id) ?? 0) >= lastMine.createdAt)
    if (seen.length === 0) return null
    return h('li', { class: 'seen', 'data-testid': 'seen-by' }, `Seen by ${seen.length === others.length && others.length > 1 ? 'everyone' : seen.map(id => people.name(id)).join(', ')}`)
  }

  let stick = true
  /** The list's scroll position as last seen, to tell reading upwards from a jump down. */
  let lastTop = 0
  const atBottom = (): boolean => list.scrollHeight - list.scrollTop - list.clientHeight < 60

  let lastComposer: 'composer' | 'readonly' | 'none' | null = null
  let refused = false
  const render = (): void => {
    setTitle()
    const s = view.status
    statusEl.dataset.status = s === 'connecting' && everSynced ? 'reconnecting' : s
    statusEl.textContent = statusText()
    const role = view.role
    roleEl.textContent = role === null ? '' : role === 'guest' ? (view.canWrite === true ? 'guest' : 'guest · read-only') : (view.canWrite === true ? (view.isModerator ? 'moderator' : 'participant') : 'participant · read-only')
    if (view.error !== null) { renderRefusal(); return }
    const messages = view.messages
    if (unreadAfter === undefined && view.status === 'synced') unreadAfter = view.role === 'participant' ? view.readUpTo : null
    const wasAtBottom = stick || atBottom()
    const oldHeight = list.scrollHeight
    const oldTop = list.scrollTop
    const firstBefore = list.querySelector('[data-testid=message]')?.getAttribute('data-id')
    const items: HTMLElement[] = []
    let prev: ViewMessage | null = null
    let dividerDone = false
    const keep = new Set<string>()
    for (const m of messages) {
      if (prev === null || dayKey(prev.createdAt) !== dayKey(m.createdAt)) {
        items.push(h('li', { class: 'day', 'data-testid': 'day' }, h('span', {}, dayLabel(m.createdAt))))
        prev = null
      }
      if (!dividerDone && unreadAfter != null && m.senderId !== opts.userId && m.createdAt > unreadAfter) {
        dividerDone = true
        items.push(h('li', { class: 'unread-divider', 'data-testid': 'unread-divider' }, h('span', {}, 'New messages')))
        prev = null
      }
      const cont = prev !== null && prev.senderId === m.senderId && prev.type === m.type && m.type !== 'SystemMessage' && m.createdAt - prev.createdAt < GROUP_MS
      const sig = signature(m, cont)
      let entry = cache.get(m.id)
      if (entry === undefined || entry.sig !== sig) {
        entry = { sig, el: renderMessage(m, cont) }
        cache.set(m.id, entry)
      }
      keep.add(m.id)
      items.push(entry.el)
      prev = m
    }
    for (const id of cache.keys()) if (!keep.has(id)) cache.delete(id)
    // The browser skips rendering old messages while they are off screen; the newest are always
    // laid out, so that "stick to the bottom" lands exactly.
    messages.forEach((m, i) => cache.get(m.id)?.el.classList.toggle('far', i < messages.length - FULLY_RENDERED))
    const seen = seenBy(messages)
    if (seen !== null) items.push(seen)
    if (messages.length === 0) items.push(h('li', { class: 'empty', 'data-testid': 'empty-chat' }, view.status === 'synced' || view.role !== null ? 'No messages yet. Say hello!' : 'Loading messages…'))
    const olderSlot = view.hasMore === true ? h('li', { class: 'older-slot' }, olderButton) : null
    mount(list, olderSlot, ...items)
    if (wasAtBottom) {
      list.scrollTop = list.scrollHeight
      requestAnimationFrame(() => { list.scrollTop = list.scrollHeight })
      newBelow = 0
    } else if (firstBefore !== undefined && firstBefore !== list.querySelector('[data-testid=message]')?.getAttribute('data-id')) {
      // Older messages came in above: keep what the reader looks at in place.
      list.scrollTop = oldTop + (list.scrollHeight - oldHeight)
    }
    stick = false
    lastTop = list.scrollTop
    jump.hidden = atBottom()
    jump.textContent = newBelow > 0 ? `↓ ${newBelow} new` : '↓ Newest'
    const want = view.canWrite === false ? 'readonly' : view.canWrite === true ? 'composer' : 'none'
    if (want !== lastComposer) {
      lastComposer = want
      mount(composerSlot, want === 'composer' ? uploadsEl : null, want === 'composer' ? composer.element : want === 'readonly' ? readOnlyNote : null)
    }
    maybeMarkRead()
  }

  const renderRefusal = (): void => {
    if (refused) return
    refused = true
    const e = view.error
    if (e === null) return
    const next = nextStep(e.code, cid)
    element.classList.add('refused')
    mount(body, h('div', { class: 'refusal', 'data-testid': 'error', role: 'alert' },
      h('p', { class: 'big' }, describeError(e)),
      h('p', {}, next.text),
      next.href !== undefined ? h('a', { class: 'button', href: next.href, 'data-testid': 'refusal-action' }, next.link) : null))
    whoEl.textContent = ''
    peopleButton.hidden = true
    if (settingsButton !== null) settingsButton.hidden = true
  }

  let everSynced = false
  let retryAt = 0
  let countdown: ReturnType<typeof setInterval> | null = null
  const statusText = (): string => {
    switch (view.status) {
      case 'synced': return 'live'
      case 'connected': return 'syncing…'
      case 'offline': return 'offline — messages wait'
      case 'closed': return view.error === null ? 'closed' : 'not connected'
      default: {
        if (!everSynced) return 'connecting…'
        const s = Math.ceil((retryAt - Date.now()) / 1000)
        return s > 0 ? `reconnecting in ${s} s…` : 'reconnecting…'
      }
    }
  }
  const onRetry = (ms: number): void => {
    retryAt = Date.now() + ms
    if (countdown === null) countdown = setInterval(() => { statusEl.textContent = statusText(); if (Date.now() > retryAt && countdown !== null) { clearInterval(countdown); countdown = null } }, 1000)
    statusEl.textContent = statusText()
  }

  const renderPresence = (p: Presence): void => {
    const typing = p.typing.map(id => people.name(id))
    typingEl.textContent = typing.length === 0 ? '' : `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`
    if (view.error !== null) return
    const n = p.participants.length
    whoEl.textContent = view.status !== 'synced' ? '' : `${n} online${p.guestCount > 0 ? ` · ${p.guestCount} ${p.guestCount === 1 ? 'guest' : 'guests'}` : ''}`
    const person = (id: string, extra: string | null, cls: string | null): HTMLElement =>
      h('li', { 'data-user': id, class: cls }, people.avatar(id, 'sm'), h('span', {}, people.label(id)), extra !== null ? h('span', { class: 'muted' }, extra) : null)
    mount(presenceEl,
      h('h3', {}, 'Online'),
      h('ul', { 'data-testid': 'online' }, ...p.participants.map(u => person(u.id, u.id === opts.userId ? ' (you)' : null, null))),
      view.status === 'synced' ? h('p', { class: 'guests-count', 'data-testid': 'guest-count' }, `${p.guestCount} ${p.guestCount === 1 ? 'guest' : 'guests'} watching`) : null,
      p.guests.length > 0 ? h('ul', { class: 'guests', 'data-testid': 'guests' }, ...p.guests.map(u => {
        const li = person(u.id, null, u.nameSource === 'self' ? 'self-named' : null)
        const kick = opts.kickGuest
        if (kick !== undefined && view.isModerator) {
          li.append(h('button', { type: 'button', class: 'ghost small', 'data-testid': 'kick', 'aria-label': `Remove guest ${people.label(u.id)}`, onclick: () => { kick(u.id).catch(showNotice) } }, 'Remove'))
        }
        return li
      })) : null)
  }

  let readTimer: ReturnType<typeof setTimeout> | null = null
  const maybeMarkRead = (): void => {
    // Every participant keeps a read marker, also with access Read (it is not content).
    if (readTimer !== null || view.role !== 'participant' || view.status !== 'synced') return
    if (document.visibilityState === 'hidden' || !atBottom()) return
    readTimer = setTimeout(() => {
      readTimer = null
      try { view.markRead() } catch (e) { showNotice(e) }
    }, 500)
  }

  let loadingOlder = false
  let reading = false
  const loadOlder = (): void => {
    if (loadingOlder || view.hasMore !== true) return
    loadingOlder = true
    olderButton.disabled = true
    olderButton.textContent = 'Loading…'
    view.loadOlder().then(() => {
      loadingOlder = false
      olderButton.disabled = false
      olderButton.textContent = 'Load older messages'
      render()
      // Still at the top (a fling outruns one page): go on while the reader waits there.
      if (reading && list.scrollTop < 150) loadOlder()
    },
      e => { loadingOlder = false; olderButton.disabled = false; olderButton.textContent = 'Load older messages'; showNotice(e) })
  }
  olderButton.addEventListener('click', loadOlder)
  // Only the reader's own scrolling (wheel, touch, keys) loads the archive, never a jump by the UI.
  for (const ev of ['wheel', 'touchmove', 'keydown']) list.addEventListener(ev, () => { reading = true }, { passive: true })
  list.addEventListener('scroll', () => {
    if (reading && list.scrollTop < 150) loadOlder()
    lastTop = list.scrollTop
    const bottom = atBottom()
    jump.hidden = bottom
    if (bottom) { newBelow = 0; jump.textContent = '↓ Newest'; maybeMarkRead() }
  }, { passive: true })
  jump.addEventListener('click', () => { list.scrollTop = list.scrollHeight; jump.hidden = true; newBelow = 0; composer.focus() })
  // Files dropped anywhere on the conversation are attached.
  body.addEventListener('dragover', ev => {
    if (lastComposer !== 'composer' || ev.dataTransfer?.types.includes('Files') !== true) return
    ev.preventDefault()
    element.classList.add('dropping')
  })
  body.addEventListener('dragleave', () => element.classList.remove('dropping'))
  body.addEventListener('drop', ev => {
    element.classList.remove('dropping')
    if (lastComposer !== 'composer') return
    const files = Array.from(ev.dataTransfer?.files ?? [])
    if (files.length === 0) return
    ev.preventDefault()
    composer.attachFiles(files)
  })

  // Touch screens have no hover: a tap on a message shows its actions.
  list.addEventListener('click', ev => {
    const li = (ev.target as Element).closest('li.msg')
    if (li === null || (ev.target as Element).closest('button') !== null) return
    list.querySelectorAll('li.msg.active').forEach(other => { if (other !== li) other.classList.remove('active') })
    li.classList.toggle('active')
  })
  list.addEventListener('keydown', ev => {
    if (ev.key === 'Escape' && (pickerFor !== null || confirmDelete !== null)) { pickerFor = null; confirmDelete = null; render() }
  })

  const onAdded = (m: ViewMessage): void => { if (m.senderId !== opts.userId && !atBottom()) newBelow++ }
  const onStatus = (): void => {
    if (view.status === 'synced') { everSynced = true; clearNotice() }
    render()
    renderPresence(view.presence)
  }
  const onError = (): void => render()
  const onPresence = (p: Presence): void => { renderPresence(p); render() }
  const onUsers = (): void => { namesVersion++; render(); renderPresence(view.presence) }
  const ticker = setInterval(() => refreshTimes(list), 30_000)

  view.on('change', render)
  view.on('added', onAdded)
  view.on('status', onStatus)
  view.on('retry', onRetry)
  view.on('error', onError)
  view.on('presence', onPresence)
  people.onChange(onUsers)
  render()
  renderPresence(view.presence)

  return {
    element,
    setTitle (t) { listTitle = t; setTitle() },
    async destroy () {
      if (readTimer !== null) clearTimeout(readTimer)
      if (bannerTimer !== null) clearTimeout(bannerTimer)
      if (countdown !== null) clearInterval(countdown)
      clearInterval(ticker)
      view.off('change', render)
      view.off('added', onAdded)
      view.off('status', onStatus)
      view.off('retry', onRetry)
      view.off('error', onError)
      view.off('presence', onPresence)
      people.offChange(onUsers)
      await view.close()
    }
  }
}

/**
 * Opens `id` in `session` and builds its pane, with settings for participants. An id the
 * session refuses at once (not a valid id) gives a pane that says so.
 */
export const openChatPane = (session: Session, id: string, o: { asGuest: boolean, userId: string, title: string, back?: ChatPaneOptions['back'] }): ChatPane => {
  let view: ConversationView
  try {
    view = session.open(id, { asGuest: o.asGuest })
  } catch (e) {
    const element = h('div', { class: 'refusal', role: 'alert', 'data-testid': 'error' }, h('p', { class: 'big' }, describeError(e)),
      typeof o.back === 'string' ? h('a', { class: 'button', href: o.back }, 'Back to your conversations') : null)
    return { element, setTitle () {}, async destroy () {} }
  }
  const people = createPeople(session.users, () => view.presence)
  return createChatPane(view, {
    userId: o.userId,
    title: o.title,
    people,
    back: o.back,
    ...(o.asGuest ? {} : { openSettings: () => openSettings(session, view, people), kickGuest: async (guest: string) => { await session.kickGuest(id, guest) } })
  })
}
