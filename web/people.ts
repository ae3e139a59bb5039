/**
 * How users are shown: the name and photo of their user record (the client library's
 * `session.users`, fetched once and cached), for participants, guests and past authors alike.
 * A guest with no record is shown by the name it chose, quoted and followed by its id, so that
 * "bob" the guest never reads as participant bob; anyone else with no record by its id.
 * Photos show when the page may load them (this origin or data:, as its CSP says), else initials.
 */
import { initialsOf, type Presence, type UserDirectory } from '../client/index.ts'
import { h } from './dom.ts'

export interface People {
  /** The name to show for `id`. */
  name (id: string): string
  /** The name, marked as a guest's when `id` is a guest here now: "“Bob” (guest bob)". */
  label (id: string): string
  /** Calls `fn` when user records arrived (names may read differently now). */
  onChange (fn: () => void): void
  offChange (fn: () => void): void
  /** A round avatar: the photo, or initials on a colour derived from the id. */
  avatar (id: string, size?: 'sm' | 'md'): HTMLElement
}

const loadable = (url: string): boolean => {
  if (url.startsWith('data:image/')) return true
  try { return new URL(url, location.href).origin === location.origin } catch { return false }
}

/** A hue from the id, so one user keeps one colour everywhere. */
const hueOf = (id: string): number => {
  let x = 0
  for (const c of id) x = (x * 31 + (c.codePointAt(0) ?? 0)) % 360
  return x
}

export const createPeople = (users: UserDirectory, presence: () => Presence | null): People => {
  const name = (id: string): string => {
    const card = users.get(id)
    if (card?.known === true) return card.name
    const p = presence()
    const live = p === null ? undefined : [...p.participants, ...p.guests].find(u => u.id === id)
    if (live?.name !== undefined) return live.nameSource === 'self' ? `“${live.name}” (guest ${id})` : live.name
    return id
  }
  return {
    name,
    onChange (fn) { users.on('change', fn) },
    offChange (fn) { users.off('change', fn) },
    label (id) {
      const p = presence()
      const guest = p?.guests.find(u => u.id === id)
      if (guest === undefined) return name(id)
      const shown = users.get(id)?.known === true ? name(id) : guest.name
      return shown === undefined ? `guest ${id}` : `“${shown}” (guest ${id})`
    },
    avatar (id, size = 'md') {
      const card = users.get(id)
      const shown = name(id)
      const photo = card?.photoUrl
      if (photo != null && loadable(photo)) return h('img', { class: `avatar ${size}`, src: photo, alt: '', 'aria-hidden': 'true' })
      const el = h('span', { class: `avatar ${size}`, 'aria-hidden': 'true' }, initialsOf(card?.known === true ? card.name : shown.replace(/^“|”.*$/g, '')))
      el.style.setProperty('--hue', String(hueOf(id)))
      return el
    }
  }
}
