/**
 * The Parley web UI: sign in (in demo mode the server issues the token), the conversation list
 * (search, unread badges, last message with its author, the open one highlighted), a chatbox per
 * conversation, and "new conversation" / "open as guest" in a dialog. Responsive: on a wide
 * screen list and conversation side by side, on a phone one screen at a time with back
 * navigation (the layout follows the route: `#/` is the list, a conversation its own screen).
 *
 * Routes (the URL hash): `#/c/<id>` opens a conversation, `#/g/<id>` opens it as a guest.
 */
import { createSession, indexedDbStore, type ConversationList, type Session } from '../client/index.ts'
import { openChatPane, type ChatPane } from './chat.ts'
import { field, h, mount } from './dom.ts'
import { createInbox, type Inbox } from './inbox.ts'
import { createPeople, type People } from './people.ts'
import { parseRoute } from './route.ts'
import { describeError } from './refusals.ts'

const root = document.getElementById('app') as HTMLElement
const demo = document.body.dataset.demo === '1'
const SIGNIN_KEY = 'parley.signin'
const ID_RULE = /^[A-Za-z0-9_.~-]{1,128}$/
const ID_HELP = 'Letters, digits and _ - . ~ only, no spaces, at most 128 characters.'

interface SignIn { userId: string, name: string, token?: string }

const fetchDemoToken = async (userId: string): Promise<string> => {
  const res = await fetch('/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) })
  const body = await res.json() as { token?: string, error?: { code: string, message: string } }
  if (!res.ok || body.token === undefined) throw Object.assign(new Error(body.error?.message ?? `HTTP ${res.status}`), { code: body.error?.code ?? 'INTERNAL' })
  return body.token
}

/**
 * A labelled text field whose value must be an id: the error says what is allowed (instead of
 * the browser's "Please match the requested format") and is tied to the field for screen readers.
 */
const idField = (opts: { name: string, label: string, testId: string, placeholder?: string, autocomplete?: string, list?: boolean }): { el: HTMLElement, check: () => boolean } => {
  const errId = `${opts.testId}-error`
  const input = h('input', { id: opts.testId, name: opts.name, placeholder: opts.placeholder, autocomplete: opts.autocomplete ?? 'off', 'aria-describedby': `${errId}-help ${errId}`, 'data-testid': opts.testId })
  const err = h('p', { class: 'field-error', id: errId, 'data-testid': errId, 'aria-live': 'polite' })
  const check = (): boolean => {
    const values = opts.list === true ? input.value.split(/[\s,]+/).filter(v => v !== '') : [input.value.trim()]
    const bad = opts.list === true ? values.find(v => !ID_RULE.test(v)) : (ID_RULE.test(values[0]) ? undefined : values[0])
    const msg = bad === undefined ? '' : bad === '' ? `Enter ${opts.label.toLowerCase()}.` : `“${bad}” is not a valid id. ${ID_HELP}`
    err.textContent = msg
    input.setAttribute('aria-invalid', msg === '' ? 'false' : 'true')
    if (msg !== '') input.focus()
    return msg === ''
  }
  input.addEventListener('input', () => { if (err.textContent !== '') check() })
  return { el: h('div', { class: 'field' }, h('label', { for: opts.testId }, opts.label), input, h('p', { class: 'help', id: `${errId}-help` }, opts.list === true ? 'Separate ids with commas or spaces.' : ID_HELP), err), check }
}

const signInScreen = (error?: string): void => {
  const user = idField({ name: 'userId', label: 'User id', testId: 'signin-user', autocomplete: 'username' })
  const form = h('form', { class: 'signin card', 'data-testid': 'signin', novalidate: true, 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, 'P'), 'Parley'),
    h('p', { class: 'muted' }, demo
      ? 'Demo mode: sign in as any user id, no password. (The server issues the token; never run it like this in production.)'
      : 'Paste a user token signed by your app backend.'),
    user.el,
    h('div', { class: 'field' }, h('label', { for: 'signin-name' }, 'Display name'), h('input', { id: 'signin-name', name: 'name', placeholder: 'optional', autocomplete: 'name', 'data-testid': 'signin-name' })),
    demo ? null : h('div', { class: 'field' }, h('label', { for: 'signin-token' }, 'Token'), h('textarea', { id: 'signin-token', name: 'token', rows: 3 })),
    error !== undefined ? h('p', { class: 'banner', role: 'alert', 'data-testid': 'signin-error' }, error) : null,
    h('button', { type: 'submit', 'data-testid': 'signin-submit' }, 'Sign in'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    if (!user.check()) return
    const s: SignIn = { userId: field(form, 'userId'), name: field(form, 'name') || field(form, 'userId') }
    if (!demo) s.token = field(form, 'token')
    sessionStorage.setItem(SIGNIN_KEY, JSON.stringify(s))
    void start(s)
  })
  mount(root, h('main', { class: 'parley signin-page' }, form))
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
  private readonly people: People
  private readonly inbox: Inbox
  private pane: ChatPane | null = null
  private readonly main = h('main', { class: 'main', id: 'main', tabindex: -1 })
  private readonly shell = h('div', { class: 'parley app', 'data-screen': 'list' })

  constructor (session: Session, me: SignIn) {
    this.session = session
    this.me = me
    this.list = session.conversations({ intervalMs: 5000 })
    this.people = createPeople(session.users, () => null)
    const newButton = h('button', { type: 'button', class: 'small', 'data-testid': 'new-open', 'aria-haspopup': 'dialog' }, '+ New')
    newButton.addEventListener('click', () => this.newDialog('new'))
    const guestButton = h('button', { type: 'button', class: 'ghost small', 'data-testid': 'guest-open', 'aria-haspopup': 'dialog' }, 'Open as guest')
    guestButton.addEventListener('click', () => this.newDialog('guest'))
    this.inbox = createInbox(this.list, { userId: me.userId, people: this.people, hrefOf: id => `#/c/${encodeURIComponent(id)}`, search: async q => await session.search(q), tools: h('div', { class: 'row' }, newButton, guestButton) })
  }

  run (): void {
    const signOut = h('button', { class: 'ghost small', type: 'button', 'data-testid': 'signout' }, 'Sign out')
    signOut.addEventListener('click', () => {
      sessionStorage.removeItem(SIGNIN_KEY)
      void this.session.close().then(() => { location.hash = ''; location.reload() })
    })
    const meAvatar = h('span', { class: 'me-avatar' }, this.people.avatar(this.me.userId, 'sm'))
    this.people.onChange(() => mount(meAvatar, this.people.avatar(this.me.userId, 'sm')))
    mount(this.shell,
      // A button, not a `#main` link: the hash is the route.
      h('button', { type: 'button', class: 'skip', onclick: () => { (this.main.querySelector<HTMLElement>('[data-testid=composer-input]') ?? this.main.querySelector<HTMLElement>('[data-testid=messages]') ?? this.main).focus() } }, 'Skip to the conversation'),
      h('nav', { class: 'side', 'aria-label': 'Conversations' },
        h('header', { class: 'side-head' },
          h('h1', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, 'P'), 'Parley'),
          h('span', { class: 'me', 'data-testid': 'me', title: `Signed in as ${this.me.name} (${this.me.userId})` }, meAvatar, h('span', { class: 'sr-only' }, 'Signed in as '), h('span', { class: 'me-name' }, this.me.name)),
          signOut),
        this.inbox.element),
      this.main)
    mount(root, this.shell)
    window.addEventListener('hashchange', () => this.route())
    this.route()
  }

  /** The "new conversation" and "open as guest" dialog. */
  private newDialog (tab: 'new' | 'guest'): void {
    const status = h('p', { class: 'form-status bad', role: 'alert', 'data-testid': 'dialog-error' })
    const id = idField({ name: 'id', label: 'Conversation id', testId: 'new-id', placeholder: 'e.g. support-42' })
    const participants = idField({ name: 'participants', label: 'Participants', testId: 'new-participants', placeholder: 'bob, carol', list: true })
    const newForm = h('form', { class: 'stack', 'data-testid': 'new-conversation', novalidate: true },
      h('h2', {}, 'New conversation'),
      id.el,
      h('div', { class: 'field' }, h('label', { for: 'new-subject' }, 'Subject'), h('input', { id: 'new-subject', name: 'subject', placeholder: 'optional', 'data-testid': 'new-subject' })),
      participants.el,
      h('div', { class: 'field' }, h('label', { for: 'new-guest-access' }, 'Guests'), h('select', { id: 'new-guest-access', name: 'guestAccess', 'data-testid': 'new-guest-access' },
        h('option', { value: 'write' }, 'may write'), h('option', { value: 'read' }, 'may read only'), h('option', { value: 'none' }, 'not allowed'))),
      h('button', { type: 'submit', 'data-testid': 'new-submit' }, 'Create'))
    const guestId = idField({ name: 'id', label: 'Conversation id', testId: 'guest-id', placeholder: 'e.g. support-42' })
    const guestForm = h('form', { class: 'stack', 'data-testid': 'open-guest', novalidate: true },
      h('h2', {}, 'Open as guest'),
      h('p', { class: 'muted' }, 'Watch a conversation you are not a participant of, if it lets guests in.'),
      guestId.el,
      h('button', { type: 'submit', 'data-testid': 'guest-submit' }, 'Open'))
    const dialog = h('dialog', { class: 'parley dialog', 'aria-label': tab === 'new' ? 'New conversation' : 'Open as guest', 'data-testid': 'new-dialog' },
      h('header', { class: 'dialog-head' }, h('span', {}),
        h('button', { type: 'button', class: 'icon', 'aria-label': 'Close', 'data-testid': 'dialog-close', onclick: () => dialog.close() }, '✕')),
      tab === 'new' ? newForm : guestForm, status)
    newForm.addEventListener('submit', ev => {
      ev.preventDefault()
      if (!id.check() || !participants.check()) return
      const cid = field(newForm, 'id')
      const subject = field(newForm, 'subject')
      const guestAccess = field(newForm, 'guestAccess')
      status.textContent = ''
      this.session.getOrCreateConversation(cid, {
        ...(subject !== '' ? { subject } : {}),
        participants: field(newForm, 'participants').split(/[\s,]+/).filter(p => p !== ''),
        guestAccess: guestAccess === 'read' || guestAccess === 'none' ? guestAccess : 'write'
      }).then(() => { dialog.close(); void this.list.refresh(); location.hash = `#/c/${encodeURIComponent(cid)}` }, e => { status.textContent = describeError(e) })
    })
    guestForm.addEventListener('submit', ev => {
      ev.preventDefault()
      if (!guestId.check()) return
      dialog.close()
      location.hash = `#/g/${encodeURIComponent(field(guestForm, 'id'))}`
    })
    dialog.addEventListener('close', () => dialog.remove())
    document.body.append(dialog)
    dialog.showModal()
  }

  private route (): void {
    const route = parseRoute(location.hash)
    void this.openPane(route.kind === 'open' ? route : null).then(() => {
      if (route.kind === 'bad') this.inbox.notice(new Error('This link does not name a conversation (its address is not valid percent-encoding). Pick one from the list.'))
    })
  }

  private async openPane (target: { id: string, asGuest: boolean } | null): Promise<void> {
    const old = this.pane
    this.pane = null
    if (old !== null) await old.destroy()
    this.shell.dataset.screen = target === null ? 'list' : 'chat'
    const subject = this.inbox.setOpen(target?.id ?? null)
    if (target === null) {
      mount(this.main, h('div', { class: 'hint' }, h('p', {}, 'Pick a conversation, start a new one, or open one as a guest.')))
      return
    }
    this.pane = openChatPane(this.session, target.id, { asGuest: target.asGuest, userId: this.me.userId, title: subject ?? target.id, back: '#/' })
    mount(this.main, this.pane.element)
  }
}

const saved = sessionStorage.getItem(SIGNIN_KEY)
if (saved !== null) void start(JSON.parse(saved) as SignIn)
else signInScreen()
