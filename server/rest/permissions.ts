/**
 * Who may do what over REST (contract §6; the table is in docs/api.md). Admins may do
 * everything. A user token reads what that user may read; with `browserSync` on it may also
 * create and update users and conversations and add or remove participants. Parley adds guards
 * the contract leaves open: a user changes an existing conversation only as one of its
 * `ReadWrite` participants, and only a moderator (v1.1) moderates: deletes others' messages,
 * bans, kicks guests, sets `slowMode`, and removes, demotes or appoints moderators. A moderator
 * moderates whatever `browserSync` says.
 */
import type * as Y from 'yjs'
import { ChatError } from '../../shared/errors.ts'
import { getGuestAccess, getParticipant, isModerator } from '../../shared/doc.ts'
import type { Settings } from '../../shared/settings.ts'
import type { Principal } from '../auth.ts'

export const requireAdmin = (p: Principal): void => {
  if (p.kind !== 'admin') throw new ChatError('ADMIN_REQUIRED')
}

/** Admin, or the user itself. */
export const requireSelfOrAdmin = (p: Principal, userId: string): void => {
  if (p.kind === 'admin') return
  if (p.userId !== userId) throw new ChatError('FORBIDDEN', 'A user token may only read its own user')
}

/** Admin, or a user while browserSync is on. */
export const requireBrowserSync = (p: Principal, settings: Settings): void => {
  if (p.kind === 'admin') return
  if (!settings.browserSync) throw new ChatError('BROWSER_SYNC_OFF')
}

/** Admin, or a participant whose access is not None. */
export const requireReader = (p: Principal, doc: Y.Doc): void => {
  if (p.kind === 'admin') return
  const me = getParticipant(doc, p.userId)
  if (me === undefined) throw new ChatError('NOT_PARTICIPANT')
  if (me.access === 'None') throw new ChatError('ACCESS_NONE')
}

/**
 * Admin, a participant whose access is not None, or a user who could join as a guest right now
 * (browserSync on and guestAccess not none): a guest reads the whole history over sync anyway,
 * so it may page older messages over REST too.
 */
export const requireHistoryReader = (p: Principal, doc: Y.Doc, settings: Settings): void => {
  if (p.kind === 'admin') return
  const me = getParticipant(doc, p.userId)
  if (me === undefined && settings.browserSync && getGuestAccess(doc) !== 'none') return
  requireReader(p, doc)
}

/** Admin, or (with browserSync on) a ReadWrite participant. */
export const requireEditor = (p: Principal, doc: Y.Doc, settings: Settings): void => {
  requireBrowserSync(p, settings)
  if (p.kind === 'admin') return
  const me = getParticipant(doc, p.userId)
  if (me === undefined) throw new ChatError('NOT_PARTICIPANT')
  if (me.access !== 'ReadWrite') throw new ChatError('READ_ONLY', 'Only ReadWrite participants may change the conversation')
}

/** Admin, or a moderator of the conversation. */
export const requireModerator = (p: Principal, doc: Y.Doc): void => {
  if (p.kind === 'admin') return
  if (!isModerator(doc, p.userId)) throw new ChatError('FORBIDDEN', 'Only a moderator of this conversation (or an admin) may do this')
}

/** True for admin credentials and for a moderator of the conversation. */
export const moderates = (p: Principal, doc: Y.Doc): boolean =>
  p.kind === 'admin' || isModerator(doc, p.userId)

/** The user a request acts for, as events name it: null for admin credentials. */
export const actorOf = (p: Principal): string | null => p.kind === 'admin' ? null : p.userId
