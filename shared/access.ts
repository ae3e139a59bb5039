/**
 * Who gets into a conversation, and as what (contract §3). Pure: the caller supplies the
 * participant entry (if any), the guest flag and the settings; the result is the role and the
 * write right of the connection, or a ChatError to refuse it with.
 */
import { ChatError } from './errors.ts'
import type { Access, GuestAccess, Role } from './schema.ts'

export interface AdmissionInput {
  /** The user's participant entry, when it is a participant. */
  participant: { access: Access } | undefined
  /** The connection asked `guest=1`. */
  asGuest: boolean
  /** Setting `browserSync`. */
  browserSync: boolean
  /** The conversation's `meta.guestAccess`. */
  guestAccess: GuestAccess
  /** The user is banned from the conversation (v1.1): it joins in no role. */
  banned?: boolean
}

export interface Admission {
  role: Role
  /** The connection may change the document (within section 4). */
  canWrite: boolean
}

/** Decides the role and write right of a connection, or throws the refusal. */
export const decideAdmission = (input: AdmissionInput): Admission => {
  const { participant } = input
  if (input.banned === true) throw new ChatError('BANNED')
  if (participant !== undefined) {
    if (participant.access === 'None') throw new ChatError('ACCESS_NONE')
    return { role: 'participant', canWrite: participant.access === 'ReadWrite' }
  }
  if (!input.asGuest) throw new ChatError('NOT_PARTICIPANT')
  if (!input.browserSync || input.guestAccess === 'none') throw new ChatError('GUEST_ACCESS_OFF')
  return { role: 'guest', canWrite: input.guestAccess === 'write' }
}
