/**
 * Sends one flush of presence changes to the connections of a hub: one shared frame per
 * audience (participants, guests), each encoded once, so the cost is one encode per audience
 * plus one `send` per receiver. A participant whose own change is in the flush gets a copy
 * without it (participants are few, so these copies stay few); guests never author an entry
 * of the guest audience, so they always share one buffer.
 */
import type { Role } from '../../shared/schema.ts'
import { encodeAwareness } from '../../shared/protocol.ts'
import { writeAwarenessUpdate, type AwarenessEntry } from './awareness-codec.ts'

/** The author of entries no connection owns: the server state, removals by a closed connection. */
export const NO_CONN = -1

/** One entry of an outgoing flush with what routing needs. */
export interface Outgoing extends AwarenessEntry {
  /** The connection whose change it is (it never receives it back), or `NO_CONN`. */
  readonly author: number
  readonly toParticipants: boolean
  readonly toGuests: boolean
}

/** What `fanOut` needs of a connection. */
export interface Receiver {
  readonly peer: {
    readonly connId: number
    readonly role: Role
    send (frame: Uint8Array): void
  }
}

const encode = (entries: readonly Outgoing[]): Uint8Array => encodeAwareness(writeAwarenessUpdate(entries))

/** Sends `out` to `receivers`, each receiving at most one frame. Entries keep their order. */
export const fanOut = (out: readonly Outgoing[], receivers: Iterable<Receiver>): void => {
  const forParticipants = out.filter(e => e.toParticipants)
  const forGuests = out.filter(e => e.toGuests)
  const same = forGuests.length === forParticipants.length && forGuests.every((e, i) => e === forParticipants[i])
  const authors = new Set<number>()
  for (const e of forParticipants) if (e.author !== NO_CONN) authors.add(e.author)
  let participantFrame: Uint8Array | null = null
  let guestFrame: Uint8Array | null = null
  const frameFor = (role: Role): Uint8Array => {
    if (same || role === 'participant') {
      participantFrame ??= encode(forParticipants)
      return participantFrame
    }
    guestFrame ??= encode(forGuests)
    return guestFrame
  }
  for (const { peer } of receivers) {
    if (peer.role === 'guest') {
      if (forGuests.length > 0) peer.send(frameFor('guest'))
    } else if (authors.has(peer.connId)) {
      const others = forParticipants.filter(e => e.author !== peer.connId)
      if (others.length > 0) peer.send(encode(others))
    } else if (forParticipants.length > 0) {
      peer.send(frameFor('participant'))
    }
  }
}
