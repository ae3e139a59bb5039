/**
 * Embedding (`parley/client/ui`): the chatbox and the inbox of the web UI, mounted into any
 * element of another page, with the session the page created. The chat's stylesheet is added to
 * the document once (scoped to `.parley`; pass `styles: false` to bring your own, e.g. under a
 * strict CSP: it is exported as `parleyStyles`). Theme with the `--parley-*` CSS variables on
 * `.parley` (see docs/client.md). Layout follows the width of the element, not the window's.
 */
import type { Session } from '../client/index.ts'
import { openChatPane, type ChatPane } from './chat.ts'
import { h, mount } from './dom.ts'
import { createInbox } from './inbox.ts'
import { createPeople } from './people.ts'
import { scopedStyles } from './scope-css.ts'
import chatStyles from './styles.css'

/** The chat's stylesheet, limited to `.parley` elements (`@scope`), so the page keeps its own look. */
export const parleyStyles = scopedStyles(chatStyles)

export interface Mounted {
  /** Closes the views and lists it opened and empties the element. */
  destroy (): Promise<void>
}

export interface MountOptions {
  /** Adds the stylesheet to the document (default true). */
  styles?: boolean
}

const STYLE_ID = 'parley-styles'

const addStyles = (opts: MountOptions): void => {
  if (opts.styles === false || document.getElementById(STYLE_ID) !== null) return
  // First in <head>: the page's own rules (its --parley-* theme) come later and win.
  document.head.prepend(h('style', { id: STYLE_ID }, parleyStyles))
}

/** `element` (the container whose width sets the layout) > `.parley` (the scope) > the UI's root. */
const host = (element: HTMLElement, cls: string): HTMLElement => {
  const root = h('div', { class: cls })
  element.classList.add('parley-host')
  mount(element, h('div', { class: 'parley embedded' }, root))
  return root
}

/** Mounts one conversation's chatbox into `element`; `asGuest` joins as a guest (contract §3). */
export const mountChatbox = (element: HTMLElement, session: Session, conversationId: string, opts: MountOptions & { asGuest?: boolean, title?: string } = {}): Mounted => {
  addStyles(opts)
  const root = host(element, 'chatbox')
  const pane = openChatPane(session, conversationId, { asGuest: opts.asGuest ?? false, userId: session.userId, title: opts.title ?? conversationId, back: null })
  mount(root, pane.element)
  return {
    async destroy () {
      await pane.destroy()
      mount(element)
      element.classList.remove('parley-host')
    }
  }
}

/**
 * Mounts the user's inbox into `element`: the conversation list and, next to it (or instead of
 * it, in a narrow element), the chatbox of the conversation picked. `onOpen` is told each pick.
 */
export const mountInbox = (element: HTMLElement, session: Session, opts: MountOptions & { onOpen?: (conversationId: string) => void, intervalMs?: number } = {}): Mounted => {
  addStyles(opts)
  const root = host(element, 'app inbox-embed')
  root.dataset.screen = 'list'
  const list = session.conversations({ intervalMs: opts.intervalMs ?? 10_000 })
  const people = createPeople(session.users, () => null)
  const main = h('div', { class: 'main' })
  let pane: ChatPane | null = null
  const open = async (id: string | null): Promise<void> => {
    const old = pane
    pane = null
    if (old !== null) await old.destroy()
    root.dataset.screen = id === null ? 'list' : 'chat'
    const subject = inbox.setOpen(id)
    if (id === null) {
      mount(main, h('div', { class: 'hint' }, h('p', {}, 'Pick a conversation.')))
      return
    }
    opts.onOpen?.(id)
    pane = openChatPane(session, id, { asGuest: false, userId: session.userId, title: subject ?? id, back: () => { void open(null) } })
    mount(main, pane.element)
  }
  const inbox = createInbox(list, { userId: session.userId, people, hrefOf: id => `#${encodeURIComponent(id)}`, onOpen: id => { void open(id) }, search: async q => await session.search(q) })
  mount(root, h('nav', { class: 'side', 'aria-label': 'Conversations' }, inbox.element), main)
  void open(null)
  return {
    async destroy () {
      await pane?.destroy()
      inbox.destroy()
      list.close()
      mount(element)
      element.classList.remove('parley-host')
    }
  }
}
