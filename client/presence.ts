/**
 * Presence as the app sees it, computed from awareness states (contract §5). Pure.
 *
 * Each peer's state is `{ user: { id, name?, nameSource?, role }, typing? }`, with `id`, `role`
 * and `nameSource` set by the server (a guest's name is `nameSource: 'self'`: chosen by itself). The server's own entry holds `{ parley: { guestCount, participantCount } }`: guests
 * see no other guest, so that count is how they know how many watch. Participants also see the
 * guests' own states, so `guests` is filled for them.
 */

export interface PresenceUser {
  id: string
  name?: string
  /** `'self'`: the name was chosen by a guest itself (the server marks it); show it as such. */
  nameSource?: 'self'
  role: 'participant' | 'guest'
}

export interface Presence {
  /** Participants online (distinct users, this one included when it is one), sorted by id. */
  participants: PresenceUser[]
  /** Distinct guest users online: the server's count, or the visible guests when more (the count lags up to 1 s). */
  guestCount: number
  /** The guests this peer can see (participants see them, guests do not), sorted by id. */
  guests: PresenceUser[]
  /** Other users typing now, sorted by id. */
  typing: string[]
}

export const EMPTY_PRESENCE: Readonly<Presence> = Object.freeze({ participants: [], guestCount: 0, guests: [], typing: [] })

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * Presence from the awareness `states` (client id to state). `self` is this peer's client id
 * and user: a participant counts itself among the participants online (the server never echoes
 * a peer's own state back); a guest is counted in `guestCount` by the server only.
 */
export const presenceOf = (
  states: ReadonlyMap<number, unknown>,
  self: { clientId: number, user: PresenceUser | null }
): Presence => {
  const participants = new Map<string, PresenceUser>()
  const guests = new Map<string, PresenceUser>()
  const typing = new Set<string>()
  let serverGuestCount: number | null = null
  for (const [clientId, state] of states) {
    if (!isRecord(state)) continue
    const summary = state.parley
    if (isRecord(summary) && typeof summary.guestCount === 'number') {
      serverGuestCount = summary.guestCount
      continue
    }
    if (clientId === self.clientId) continue
    const user = state.user
    if (!isRecord(user) || typeof user.id !== 'string') continue
    const role = user.role === 'guest' ? 'guest' : user.role === 'participant' ? 'participant' : null
    if (role === null) continue
    const entry: PresenceUser = { id: user.id, role }
    if (typeof user.name === 'string' && user.name !== '') {
      entry.name = user.name
      if (user.nameSource === 'self' || role === 'guest') entry.nameSource = 'self'
    }
    ;(role === 'guest' ? guests : participants).set(user.id, entry)
    if (state.typing === true && user.id !== self.user?.id) typing.add(user.id)
  }
  if (self.user?.role === 'participant') participants.set(self.user.id, self.user)
  const sorted = (m: Map<string, PresenceUser>): PresenceUser[] => [...m.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  return {
    participants: sorted(participants),
    guestCount: Math.max(serverGuestCount ?? 0, guests.size),
    guests: sorted(guests),
    typing: [...typing].sort()
  }
}
