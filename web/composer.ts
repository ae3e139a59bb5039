/**
 * The composer: a multi-line text box (Enter sends, Shift+Enter starts a new line), a bar above
 * it while replying to or editing a message (Escape cancels), and mention completion: typing
 * `@` and a few letters lists the matching participants (arrows to move, Enter or Tab to pick).
 */
import type { ViewMessage } from '../client/index.ts'
import { h, mount } from './dom.ts'

export interface ComposerHooks {
  send (text: string, replyTo: ViewMessage | null): void
  /** Files picked, pasted or dropped, with the text typed (sent with the first file). */
  attach (files: File[], text: string, replyTo: ViewMessage | null): void
  edit (message: ViewMessage, text: string): void
  typing (on: boolean): void
  /** Users that can be mentioned: participants, by id and shown name. */
  candidates (): Array<{ id: string, name: string }>
  /** The quote shown in the bar for a message. */
  quote (m: ViewMessage): HTMLElement
}

export interface Composer {
  readonly element: HTMLFormElement
  /** Attaches files as if picked (drag and drop onto the conversation). */
  attachFiles (files: File[]): void
  replyTo (m: ViewMessage | null): void
  edit (m: ViewMessage | null): void
  focus (): void
}

const MENTION = /(^|\s)@([\w.~-]*)$/

let composerCount = 0

export const createComposer = (hooks: ComposerHooks): Composer => {
  const listId = `mentions-${++composerCount}`
  const input = h('textarea', {
    name: 'text', rows: 1, placeholder: 'Write a message…', autocomplete: 'off', maxlength: 10000,
    'aria-label': 'Message', 'data-testid': 'composer-input', 'aria-autocomplete': 'list', 'aria-controls': listId
  })
  const bar = h('div', { class: 'composer-bar', 'data-testid': 'reply-bar', hidden: true })
  const mentions = h('ul', { class: 'mentions', id: listId, role: 'listbox', 'aria-label': 'Mention someone', 'data-testid': 'mentions', hidden: true })
  const sendButton = h('button', { type: 'submit', class: 'send', 'aria-label': 'Send', 'data-testid': 'send' }, '➤')
  const fileInput = h('input', { type: 'file', multiple: true, class: 'sr-only', tabindex: -1, 'aria-hidden': 'true', 'data-testid': 'attach-input' })
  const attachButton = h('button', { type: 'button', class: 'icon attach', 'aria-label': 'Attach files', title: 'Attach files (or paste, or drop them here)', 'data-testid': 'attach' }, '+')
  const element = h('form', { class: 'composer', 'data-testid': 'composer' }, bar, mentions,
    h('div', { class: 'composer-row' }, attachButton, fileInput, input, sendButton),
    h('p', { class: 'composer-hint' }, 'Enter to send · Shift+Enter for a new line'))

  let replying: ViewMessage | null = null
  let editing: ViewMessage | null = null
  let options: Array<{ id: string, name: string }> = []
  let active = 0

  const grow = (): void => {
    input.style.height = 'auto'
    input.style.height = `${Math.min(input.scrollHeight + 2, 200)}px`
  }

  const showBar = (): void => {
    const m = editing ?? replying
    bar.hidden = m === null
    bar.dataset.mode = editing !== null ? 'edit' : 'reply'
    bar.dataset.testid = editing !== null ? 'edit-bar' : 'reply-bar'
    mount(bar, m === null
      ? null
      : h('span', { class: 'bar-label' }, editing !== null ? 'Editing' : 'Replying to'),
    m === null ? null : hooks.quote(m),
    h('button', { class: 'icon', type: 'button', 'aria-label': editing !== null ? 'Cancel editing' : 'Cancel reply', 'data-testid': 'reply-cancel', onclick: () => cancel() }, '✕'))
  }

  const cancel = (): void => {
    if (editing !== null) { input.value = ''; grow() }
    editing = null
    replying = null
    showBar()
    input.focus()
  }

  const closeMentions = (): void => {
    options = []
    mentions.hidden = true
    input.removeAttribute('aria-activedescendant')
  }

  const renderMentions = (): void => {
    mount(mentions, ...options.map((o, i) => h('li', {
      id: `${listId}-${i}`, role: 'option', 'aria-selected': i === active ? 'true' : 'false', 'data-testid': 'mention-option', 'data-user': o.id,
      onmousedown: (ev: Event) => { ev.preventDefault(); pick(i) }
    }, h('b', {}, o.name), o.name !== o.id ? h('span', { class: 'muted' }, ` @${o.id}`) : null)))
    mentions.hidden = options.length === 0
    if (options.length > 0) input.setAttribute('aria-activedescendant', `${listId}-${active}`)
  }

  const updateMentions = (): void => {
    const m = MENTION.exec(input.value.slice(0, input.selectionStart))
    if (m === null) { closeMentions(); return }
    const q = m[2].toLowerCase()
    options = hooks.candidates().filter(c => c.id.toLowerCase().startsWith(q) || c.name.toLowerCase().split(/\s+/).some(w => w.startsWith(q))).slice(0, 6)
    active = 0
    renderMentions()
  }

  const pick = (i: number): void => {
    const o = options[i]
    if (o === undefined) return
    const caret = input.selectionStart
    const before = input.value.slice(0, caret).replace(/@([\w.~-]*)$/, `@${o.id} `)
    input.value = before + input.value.slice(caret)
    input.setSelectionRange(before.length, before.length)
    closeMentions()
    input.focus()
  }

  const submit = (): void => {
    const text = input.value.trim()
    if (text === '') return
    if (editing !== null) hooks.edit(editing, text)
    else hooks.send(text, replying)
    hooks.typing(false)
    input.value = ''
    editing = null
    replying = null
    showBar()
    grow()
    closeMentions()
  }

  const attachFiles = (files: File[]): void => {
    if (files.length === 0) return
    hooks.attach(files, editing === null ? input.value.trim() : '', replying)
    if (editing === null) { input.value = ''; grow() }
    replying = null
    showBar()
  }
  attachButton.addEventListener('click', () => fileInput.click())
  fileInput.addEventListener('change', () => { attachFiles(Array.from(fileInput.files ?? [])); fileInput.value = '' })
  input.addEventListener('paste', ev => {
    const files = Array.from(ev.clipboardData?.files ?? [])
    if (files.length === 0) return
    ev.preventDefault()
    attachFiles(files)
  })
  element.addEventListener('submit', ev => { ev.preventDefault(); submit() })
  input.addEventListener('input', () => { grow(); updateMentions(); hooks.typing(input.value !== '') })
  input.addEventListener('keydown', ev => {
    if (!mentions.hidden && options.length > 0) {
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault()
        active = (active + (ev.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length
        renderMentions()
        return
      }
      if (ev.key === 'Enter' || ev.key === 'Tab') { ev.preventDefault(); pick(active); return }
      if (ev.key === 'Escape') { ev.preventDefault(); closeMentions(); return }
    }
    if (ev.key === 'Escape' && (editing !== null || replying !== null)) { ev.preventDefault(); cancel(); return }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); submit() }
  })
  input.addEventListener('blur', () => closeMentions())

  return {
    element,
    attachFiles,
    replyTo (m) {
      editing = null
      replying = m
      showBar()
      if (m !== null) input.focus()
    },
    edit (m) {
      replying = null
      editing = m
      input.value = m?.text ?? ''
      showBar()
      grow()
      input.focus()
    },
    focus () { input.focus() }
  }
}
