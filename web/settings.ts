/**
 * Conversation settings, in a dialog, with the user's own token (contract §6): the subject,
 * participants (add, remove, access), guest access for those who may change the conversation
 * (with browserSync on, its ReadWrite participants); moderators, bans and guest access for its
 * moderators. Everyone else sees the settings read-only and is told why in plain words.
 */
import type { Access, BanInfo, ConversationInfo, ConversationView, GuestAccess, Session } from '../client/index.ts'
import { field, h, mount } from './dom.ts'
import type { People } from './people.ts'
import { describeError } from './refusals.ts'

const ACCESS: Access[] = ['ReadWrite', 'Read', 'None']
const ACCESS_TEXT: Record<Access, string> = { ReadWrite: 'can write', Read: 'can read', None: 'no access' }
const GUEST_TEXT: Record<GuestAccess, string> = { write: 'Guests may write', read: 'Guests may read only', none: 'No guests' }

export const openSettings = (session: Session, view: ConversationView, people: People): void => {
  const cid = view.conversationId
  const status = h('p', { class: 'form-status', role: 'status', 'data-testid': 'settings-status' })
  const content = h('div', { class: 'settings-body' }, h('p', { class: 'muted' }, 'Loading…'))
  const dialog = h('dialog', { class: 'parley dialog settings', 'aria-labelledby': 'settings-title', 'data-testid': 'settings' },
    h('header', { class: 'dialog-head' }, h('h2', { id: 'settings-title' }, 'Conversation settings'),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Close settings', 'data-testid': 'settings-close', onclick: () => dialog.close() }, '✕')),
    content, status)
  dialog.addEventListener('close', () => dialog.remove())
  document.body.append(dialog)
  dialog.showModal()

  const say = (text: string, bad = false): void => { status.textContent = text; status.classList.toggle('bad', bad) }
  const run = (what: string, p: Promise<unknown>): void => {
    say(`${what}…`)
    // "done" is said once the dialog shows the new state: the reload replaces every form, so
    // saying it earlier would let someone type into a form that is about to be replaced.
    p.then(async () => { await load(); say(`${what}: done.`) }, e => say(describeError(e), true))
  }

  const load = async (): Promise<void> => {
    let info: ConversationInfo
    try { info = await session.getOrCreateConversation(cid) } catch (e) { mount(content, h('p', { class: 'bad', role: 'alert' }, describeError(e))); return }
    const me = info.participants[session.userId]
    const canEdit = me?.access === 'ReadWrite'
    const isMod = me?.role === 'moderator'
    let bans: BanInfo[] = []
    if (isMod) bans = await session.bans(cid).catch(() => [])
    const why = canEdit ? null : h('p', { class: 'note', 'data-testid': 'settings-refusal' },
      me === undefined ? 'Only participants can change this conversation.' : 'You can read this conversation but not change it: only participants who can write may change its settings. Ask one of them.')

    const subjectForm = h('form', { class: 'row' },
      h('label', { for: 'set-subject', class: 'sr-only' }, 'Subject'),
      h('input', { id: 'set-subject', name: 'subject', value: info.subject ?? '', placeholder: 'No subject', disabled: !canEdit, 'data-testid': 'settings-subject' }),
      canEdit ? h('button', { type: 'submit' }, 'Save') : null)
    subjectForm.addEventListener('submit', ev => { ev.preventDefault(); run('Saving the subject', session.getOrCreateConversation(cid, { subject: field(subjectForm, 'subject') || null })) })

    const guestSelect = h('select', { id: 'set-guests', disabled: !(canEdit || isMod), 'data-testid': 'settings-guest-access' },
      ...(['write', 'read', 'none'] as GuestAccess[]).map(g => h('option', { value: g, selected: info.guestAccess === g }, GUEST_TEXT[g])))
    guestSelect.addEventListener('change', () => run('Changing guest access', session.getOrCreateConversation(cid, { guestAccess: guestSelect.value as GuestAccess })))

    const SLOW = [0, 5, 10, 30, 60, 300]
    const slowSelect = h('select', { id: 'set-slow', disabled: !isMod, 'data-testid': 'settings-slow-mode' },
      ...SLOW.map(n => h('option', { value: n, selected: (info.slowMode ?? 0) === n }, n === 0 ? 'Off' : n < 60 ? `One message every ${n} s` : `One message every ${n / 60} min`)))
    slowSelect.addEventListener('change', () => run('Changing slow mode', session.getOrCreateConversation(cid, { slowMode: Number(slowSelect.value) })))

    const rows = Object.entries(info.participants).sort(([a], [b]) => a < b ? -1 : 1).map(([id, p]) => {
      const access = h('select', { 'aria-label': `Access of ${people.name(id)}`, disabled: !canEdit || id === session.userId, 'data-testid': 'participant-access' },
        ...ACCESS.map(a => h('option', { value: a, selected: p.access === a }, ACCESS_TEXT[a])))
      access.addEventListener('change', () => run(`Changing ${people.name(id)}'s access`, session.setParticipant(cid, id, { access: access.value as Access, notify: p.notify })))
      const modBox = h('input', { type: 'checkbox', id: `mod-${id}`, checked: p.role === 'moderator', disabled: !isMod || id === session.userId, 'data-testid': 'participant-moderator' })
      modBox.addEventListener('change', () => run(modBox.checked ? 'Appointing a moderator' : 'Removing a moderator', session.setParticipant(cid, id, { access: p.access, notify: p.notify, role: modBox.checked ? 'moderator' : null })))
      return h('li', { 'data-testid': 'participant', 'data-user': id }, people.avatar(id, 'sm'),
        h('span', { class: 'grow' }, people.name(id), id === session.userId ? h('span', { class: 'muted' }, ' (you)') : null),
        access,
        h('label', { class: 'check', for: `mod-${id}` }, modBox, 'moderator'),
        (canEdit || isMod) && id !== session.userId
          ? h('button', { type: 'button', class: 'ghost', 'aria-label': `Remove ${people.name(id)}`, 'data-testid': 'participant-remove', onclick: () => run(`Removing ${people.name(id)}`, session.removeParticipant(cid, id)) }, 'Remove')
          : null)
    })
    const addForm = h('form', { class: 'row' },
      h('label', { for: 'set-add', class: 'sr-only' }, 'Add a participant by user id'),
      h('input', { id: 'set-add', name: 'user', placeholder: 'Add by user id', required: true, 'data-testid': 'participant-add-id' }),
      h('button', { type: 'submit', 'data-testid': 'participant-add' }, 'Add'))
    addForm.addEventListener('submit', ev => { ev.preventDefault(); run('Adding a participant', session.setParticipant(cid, field(addForm, 'user'))) })

    const banForm = h('form', { class: 'row' },
      h('label', { for: 'set-ban', class: 'sr-only' }, 'Ban a user by id'),
      h('input', { id: 'set-ban', name: 'user', placeholder: 'Ban by user id', required: true, 'data-testid': 'ban-id' }),
      h('label', { for: 'set-ban-reason', class: 'sr-only' }, 'Reason'),
      h('input', { id: 'set-ban-reason', name: 'reason', placeholder: 'Reason (optional)' }),
      h('button', { type: 'submit', class: 'danger', 'data-testid': 'ban-add' }, 'Ban'))
    banForm.addEventListener('submit', ev => {
      ev.preventDefault()
      const reason = field(banForm, 'reason')
      run('Banning', session.ban(cid, field(banForm, 'user'), reason === '' ? {} : { reason }))
    })

    mount(content,
      why,
      h('section', {}, h('h3', {}, 'Subject'), subjectForm),
      h('section', {}, h('h3', {}, h('label', { for: 'set-guests' }, 'Guest access')), guestSelect,
        !canEdit && isMod ? h('p', { class: 'muted' }, 'As a moderator you may change guest access.') : null),
      h('section', {}, h('h3', {}, h('label', { for: 'set-slow' }, 'Slow mode')), slowSelect,
        !isMod ? h('p', { class: 'muted' }, 'Only moderators change slow mode.') : null),
      h('section', {}, h('h3', {}, `Participants (${rows.length})`), h('ul', { class: 'people-list', 'data-testid': 'participants' }, ...rows), canEdit ? addForm : null),
      isMod
        ? h('section', {}, h('h3', {}, 'Bans'),
          bans.length === 0 ? h('p', { class: 'muted' }, 'Nobody is banned.') : h('ul', { class: 'people-list', 'data-testid': 'bans' }, ...bans.map(b => h('li', { 'data-user': b.userId },
            h('span', { class: 'grow' }, people.name(b.userId), b.reason !== null ? h('span', { class: 'muted' }, ` — ${b.reason}`) : null),
            h('button', { type: 'button', class: 'ghost', onclick: () => run('Lifting the ban', session.unban(cid, b.userId)) }, 'Lift')))),
          banForm)
        : null)
  }
  void load()
}
