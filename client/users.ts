/**
 * The users a session shows: names and photos from user records (`GET /v1/users/:id`; another
 * user's answer is its public profile), fetched once per user and cached for the session, for
 * participants, guests and past authors alike. `get` answers at once from the cache (null until
 * loaded) and starts a fetch; `change` tells when records arrive. A user with no record (404) is
 * cached as such and shown by its id; a failed fetch is retried on the next `get`.
 */
import { ObservableV2 } from 'lib0/observable'
import { ChatError } from '../shared/errors.ts'
import type { RestClient } from './rest.ts'

export interface UserCard {
  id: string
  /** The record's name, or the id when the user has no record. */
  name: string
  photoUrl: string | null
  /** Whether the name comes from a user record. */
  known: boolean
}

export interface UserDirectoryEvents {
  /** Records arrived for these users. */
  change: (ids: string[]) => void
}

/** Up to two initials of a name: "Ada Lovelace" → "AL", "carol" → "C". Pure. */
export const initialsOf = (name: string): string => {
  const words = name.trim().split(/[\s._-]+/).filter(w => w !== '')
  const letters = (words.length > 1 ? [words[0], words[words.length - 1]] : words.slice(0, 1)).map(w => [...w][0] ?? '')
  return letters.join('').toUpperCase() || '?'
}

export class UserDirectory extends ObservableV2<UserDirectoryEvents> {
  private readonly rest: RestClient
  private readonly cards = new Map<string, UserCard>()
  private readonly loading = new Map<string, Promise<UserCard>>()

  constructor (rest: RestClient) {
    super()
    this.rest = rest
  }

  /** The cached card of `id`, or null while it loads (a fetch starts if none runs). */
  get (id: string): UserCard | null {
    const card = this.cards.get(id)
    if (card !== undefined) return card
    void this.load(id).catch(() => { /* retried on the next get */ })
    return null
  }

  /** The card of `id`, fetched once. */
  async load (id: string): Promise<UserCard> {
    const cached = this.cards.get(id)
    if (cached !== undefined) return cached
    let p = this.loading.get(id)
    if (p === undefined) {
      p = this.fetch(id).finally(() => this.loading.delete(id))
      this.loading.set(id, p)
    }
    return await p
  }

  /** Caches a record the app just wrote (`syncProfile` does), so it shows at once. */
  remember (user: { id: string, name: string, photoUrl?: string | null }): void {
    this.cards.set(user.id, { id: user.id, name: user.name !== '' ? user.name : user.id, photoUrl: user.photoUrl ?? null, known: user.name !== '' })
    this.emit('change', [[user.id]])
  }

  private async fetch (id: string): Promise<UserCard> {
    let card: UserCard
    try {
      const u = await this.rest.getUser(id)
      card = { id, name: u.name !== '' ? u.name : id, photoUrl: u.photoUrl ?? null, known: u.name !== '' }
    } catch (e) {
      if (!(e instanceof ChatError) || (e.code !== 'USER_NOT_FOUND' && e.code !== 'INVALID_ID')) throw e
      card = { id, name: id, photoUrl: null, known: false }
    }
    // A record remembered meanwhile (written by this session) is newer than this answer.
    const newer = this.cards.get(id)
    if (newer !== undefined) return newer
    this.cards.set(id, card)
    this.emit('change', [[id]])
    return card
  }
}
