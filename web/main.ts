/**
 * The Parley web UI: sign in (in demo mode the server issues the token), the conversation
 * list with unread counts, a chatbox per conversation, "open as guest" for any conversation id,
 * and creating a conversation through REST with the user's own token (needs browserSync).
 *
 * Routes (the URL hash): `#/c/<id>` opens a conversation, `#/g/<id>` opens it as a guest.
 */
import { createSession, indexedDbStore, type ConversationList, type ConversationSummary, type Session } from '../client/index.ts'
import { createChatPane, type ChatPane } from './chat.ts'
import { field, h, mount, timeOf } from './dom.ts'
import { parseRoute } from './route.ts'
import { describeError } from './refusals.ts'

const root = document.getElementById('app') as HTMLElement
const demo = document.body.dataset.demo === '1'
const SIGNIN_KEY = 'parley.signin'

interface SignIn { userId: string, name: string, token?: string }

const fetchDemoToken = async (userId: string): Promise<string> => {
  const res = await fetch('/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) })
  const body = await res.json() as { token?: string, error?: { code: string, message: string } }
  if (!res.ok || body.token === undefined) throw Object.assign(new Error(body.error?.message ?? `HTTP ${res.status}`), { code: body.error?.code ?? 'INTERNAL' })
  return body.token
}

const signInScreen = (error?: string): void => {
  const form = h('form', { class: 'signin', 'data-testid': 'signin' },
    h('h1', {}, 'Parley'),
    h('p', {}, demo
      ? 'Demo mode: sign in as any user id, no password. (The server issues the token; never run it like this in production.)'
      : 'Paste a user token signed by your app backend.'),
    h('label', {}, 'User id', h('input', { name: 'userId', required: true, pattern: '[A-Za-z0-9_.~\\-]{1,128}', autocomplete: 'username', 'data-testid': 'signin-user' })),
    h('label', {}, 'Display name', h('input', { name: 'name', placeholder: 'optional', 'data-testid': 'signin-name' })),
    demo ? null : h('label', {}, 'Token', h('textarea', { name: 'token', required: true, rows: 3 })),
    error !== undefined ? h('p', { class: 'banner', role: 'alert' }, error) : null,
    h('button', { type: 'submit', 'data-testid': 'signin-submit' }, 'Sign in'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    const s: SignIn = { userId: field(form, 'userId'), name: field(form, 'name') || field(form, 'userId') }
    if (!demo) s.token = field(form, 'token')
    sessionStorage.setItem(SIGNIN_KEY, JSON.stringify(s))
    void start(s)
  })
  mount(root, form)
}

const start = async (s: SignIn): Promise<void> => {
  let session: Session
  try {
    // In demo mode the first token, fetched here to check the sign-in, is the session's first.
    let first = demo ? await fetchDemoToken(s.userId) : null
    const getToken = async (): Promise<string> => {
      const token = first ?? await fetchDemoToken(s.userId)
      first = null
      return token
    }
    session = createSession({
      serverUrl: location.origin,
      userId: s.userId,
      ...(s.token !== undefined ? { token: s.token } : { getToken }),
      profile: { name: s.name },
      storage: typeof indexedDB === 'undefined' ? null : indexedDbStore()
    })
  } catch (e) {
    sessionStorage.removeItem(SIGNIN_KEY)
    signInScreen(describeError(e))
    return
  }
  void session.syncProfile().catch(() => { /* profiles need browserSync; the chat works without */ })
  new App(session, s).run()
}

class App {
  private readonly session: Session
  private readonly me: SignIn
  private readonly list: ConversationList
  private pane: ChatPane | null = null
  private openId: string | null = null
  private readonly listEl = h('ul', { class: 'conversations', 'data-testid': 'conversation-list' })
  private readonly main = h('main', { class: 'main' })
  private readonly notice = h('p', { class: 'banner', role: 'alert', hidden: true, 'data-testid': 'notice' })

  constructor (session: Session, me: SignIn) {
    this.session = session
    this.me = me
    this.list = session.conversations({ intervalMs: 5000 })
  }

  run (): void {
    const newForm = h('form', { class: 'new', 'data-testid': 'new-conversation' },
      h('h3', {}, 'New conversation'),
      h('input', { name: 'id', placeholder: 'id, e.g. support-42', required: true, 'data-testid': 'new-id' }),
      h('input', { name: 'subject', placeholder: 'subject', 'data-testid': 'new-subject' }),
      h('input', { name: 'participants', placeholder: 'participants: bob, carol', 'data-testid': 'new-participants' }),
      h('label', { class: 'inline' }, 'Guests ', h('select', { name: 'guestAccess', 'data-testid': 'new-guest-access' },
        h('option', { value: 'write' }, 'may write'), h('option', { value: 'read' }, 'read only'), h('option', { value: 'none' }, 'not allowed'))),
      h('button', { type: 'submit' }, 'Create'))
    newForm.addEventListener('submit', ev => {
      ev.preventDefault()
      const id = field(newForm, 'id')
      const participants = field(newForm, 'participants').split(/[\s,]+/).filter(p => p !== '')
      const subject = field(newForm, 'subject')
      const guestAccess = field(newForm, 'guestAccess')
      this.session.getOrCreateConversation(id, {
        ...(subject !== '' ? { subject } : {}),
        participants,
        guestAccess: guestAccess === 'read' || guestAccess === 'none' ? guestAccess : 'write'
      }).then(() => { newForm.reset(); void this.list.refresh(); location.hash = `#/c/${encodeURIComponent(id)}` }, e => this.showNotice(e))
    })
    const guestForm = h('form', { class: 'guest', 'data-testid': 'open-guest' },
      h('h3', {}, 'Open as guest'),
      h('input', { name: 'id', placeholder: 'conversation id', required: true, 'data-testid': 'guest-id' }),
      h('button', { type: 'submit', 'data-testid': 'guest-submit' }, 'Watch'))
    guestForm.addEventListener('submit', ev => {
      ev.preventDefault()
      location.hash = `#/g/${encodeURIComponent(field(guestForm, 'id'))}`
    })
    const signOut = h('button', { class: 'link', type: 'button', 'data-testid': 'signout' }, 'Sign out')
    signOut.addEventListener('click', () => {
      sessionStorage.removeItem(SIGNIN_KEY)
      void this.session.close().then(() => { location.hash = ''; location.reload() })
    })
    mount(root,
      h('header', { class: 'top' }, h('strong', {}, 'Parley'), h('span', { 'data-testid': 'me' }, `Signed in as ${this.me.name} (${this.me.userId})`), signOut),
      h('div', { class: 'layout' },
        h('nav', { class: 'side' }, h('h3', {}, 'Conversations'), this.listEl, newForm, guestForm),
        h('div', { class: 'center' }, this.notice, this.main)))
    this.list.on('change', items => this.renderList(items))
    this.list.on('error', e => this.showNotice(e))
    this.renderList(this.list.items)
    window.addEventListener('hashchange', () => this.route())
    this.route()
  }

  private showNotice (e: unknown): void {
    this.notice.hidden = false
    this.notice.textContent = describeError(e)
  }

  private renderList (items: readonly ConversationSummary[]): void {
    const open = this.pane === null ? undefined : items.find(c => c.id === this.openId)
    if (open?.subject != null) this.pane?.setTitle(open.subject)
    if (items.length === 0) {
      mount(this.listEl, h('li', { class: 'empty' }, this.list.loaded ? 'No conversations yet.' : 'Loading…'))
      return
    }
    mount(this.listEl, ...items.map(c => h('li', { 'data-testid': 'conversation', 'data-id': c.id },
      h('a', { href: `#/c/${encodeURIComponent(c.id)}` },
        h('span', { class: 'subject' }, c.subject ?? c.id),
        c.unreadCount > 0 ? h('span', { class: 'badge', 'data-testid': 'unread' }, c.unreadCount) : null,
        h('span', { class: 'last' }, c.lastMessage === null ? 'no messages' : `${c.lastMessage.senderId ?? 'system'}: ${c.lastMessage.text}`),
        h('time', {}, c.lastActivityAt > 0 ? timeOf(c.lastActivityAt) : '')))))
  }

  private route (): void {
    const route = parseRoute(location.hash)
    void this.openPane(route.kind === 'open' ? route : null).then(() => {
      if (route.kind === 'bad') this.showNotice(new Error('This link does not name a conversation (its address is not valid percent-encoding)'))
    })
  }

  private async openPane (target: { id: string, asGuest: boolean } | null): Promise<void> {
    const old = this.pane
    this.pane = null
    this.notice.hidden = true
    if (old !== null) await old.destroy()
    this.openId = null
    if (target === null) {
      mount(this.main, h('p', { class: 'hint' }, 'Pick a conversation, create one, or open one as a guest.'))
      return
    }
    this.openId = target.id
    try {
      const view = this.session.open(target.id, { asGuest: target.asGuest })
      const subject = this.list.items.find(c => c.id === target.id)?.subject
      this.pane = createChatPane(view, { userId: this.me.userId, name: this.me.name, title: subject ?? target.id })
      mount(this.main, this.pane.element)
    } catch (e) {
      this.showNotice(e)
      mount(this.main)
    }
  }
}

const saved = sessionStorage.getItem(SIGNIN_KEY)
if (saved !== null) void start(JSON.parse(saved) as SignIn)
else signInScreen()
