/**
 * Test doubles for the presence hub: a fake clock with hand-driven timers, and a stock
 * y-protocols `Awareness` behind a fake connection, so tests check what an unmodified
 * y-websocket client would see.
 */
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import { MESSAGE_TYPE } from '../../../shared/protocol.ts'
import type { Role } from '../../../shared/schema.ts'
import type { PresenceHub, PresencePeer, Timers } from '../../../server/presence/presence-hub.ts'

interface Task { due: number, fn: () => void, every: number | null }

/** Timers that fire only inside `advance`, in due order, with `now()` following along. */
export interface FakeTime {
  readonly timers: Timers
  now (): number
  /** Moves time on by `ms`, firing every timer that falls due. */
  advance (ms: number): void
  /** Timers (one-shot and interval) still scheduled. */
  pending (): number
}

export const createFakeTime = (): FakeTime => {
  let now = 0
  let seq = 0
  const tasks = new Map<number, Task>()
  const add = (fn: () => void, ms: number, every: number | null): number => {
    seq++
    tasks.set(seq, { due: now + ms, fn, every })
    return seq
  }
  const cancel = (h: unknown): void => {
    if (typeof h === 'number') tasks.delete(h)
  }
  const timers: Timers = {
    setTimeout: (fn, ms) => add(fn, ms, null),
    clearTimeout: cancel,
    setInterval: (fn, ms) => add(fn, ms, ms),
    clearInterval: cancel
  }
  const advance = (ms: number): void => {
    const target = now + ms
    for (;;) {
      let nextId = -1
      let next: Task | null = null
      for (const [id, t] of tasks) {
        if (t.due <= target && (next === null || t.due < next.due)) { nextId = id; next = t }
      }
      if (next === null) break
      now = next.due
      if (next.every === null) tasks.delete(nextId)
      else next.due += next.every
      next.fn()
    }
    now = target
  }
  return { timers, now: () => now, advance, pending: () => tasks.size }
}

/** A peer whose frames are recorded, and applied to its client while the connection is open. */
export interface FakePeer extends PresencePeer {
  readonly frames: Uint8Array[]
  open: boolean
}

/** The awareness update inside an awareness frame. */
export const awarenessPayload = (frame: Uint8Array): Uint8Array => {
  const decoder = decoding.createDecoder(frame)
  const type = decoding.readVarUint(decoder)
  if (type !== MESSAGE_TYPE.awareness) throw new Error(`expected an awareness frame, got type ${type}`)
  return decoding.readVarUint8Array(decoder)
}

/** Client ids and states in one frame, as sent. */
export const entriesOf = (frame: Uint8Array): Array<{ clientId: number, clock: number, state: unknown }> => {
  const decoder = decoding.createDecoder(awarenessPayload(frame))
  const n = decoding.readVarUint(decoder)
  const out: Array<{ clientId: number, clock: number, state: unknown }> = []
  for (let i = 0; i < n; i++) {
    const clientId = decoding.readVarUint(decoder)
    const clock = decoding.readVarUint(decoder)
    out.push({ clientId, clock, state: JSON.parse(decoding.readVarString(decoder)) })
  }
  return out
}

let nextConnId = 1

/**
 * A stock y-websocket client as far as presence goes: a `Y.Doc` whose client id is the
 * awareness client id, frames applied with `applyAwarenessUpdate`, and the provider's
 * behaviour on open (send its own state) and on close (drop remote states locally).
 */
export class StockClient {
  readonly doc: Y.Doc
  readonly awareness: Awareness
  peer: FakePeer

  constructor (readonly hub: PresenceHub, readonly userId: string, readonly role: Role, clientId: number) {
    this.doc = new Y.Doc()
    this.doc.clientID = clientId
    this.awareness = new Awareness(this.doc)
    this.peer = this.#newPeer()
  }

  get clientId (): number { return this.doc.clientID }

  #newPeer (): FakePeer {
    const frames: Uint8Array[] = []
    const peer: FakePeer = {
      connId: nextConnId++,
      userId: this.userId,
      role: this.role,
      frames,
      open: true,
      send: (frame: Uint8Array) => {
        frames.push(frame)
        if (peer.open) applyAwarenessUpdate(this.awareness, awarenessPayload(frame), 'server')
      }
    }
    return peer
  }

  /** Joins the hub on the current connection. */
  join (): this {
    this.hub.join(this.peer)
    return this
  }

  /** Sets the local state and sends it, as the provider does on a local change. */
  set (state: Record<string, unknown> | null): void {
    this.awareness.setLocalState(state)
    this.sendOwn()
  }

  /** Renews the local state (same state, clock + 1), as the client does every 15 s. */
  renew (): void {
    this.awareness.setLocalState(this.awareness.getLocalState())
    this.sendOwn()
  }

  sendOwn (): void {
    this.hub.receive(this.peer, encodeAwarenessUpdate(this.awareness, [this.clientId]))
  }

  /** The socket dies; the provider drops remote states locally. The hub is not told. */
  drop (): FakePeer {
    const old = this.peer
    old.open = false
    const remote = Array.from(this.awareness.getStates().keys()).filter(id => id !== this.clientId)
    removeAwarenessStates(this.awareness, remote, 'close')
    return old
  }

  /** Opens a new connection: joins and sends its own state, as the provider does on open. */
  reconnect (): void {
    this.peer = this.#newPeer()
    this.hub.join(this.peer)
    if (this.awareness.getLocalState() !== null) this.sendOwn()
  }

  /** Remote states this client currently sees, by client id. */
  seen (): Map<number, unknown> {
    const out = new Map<number, unknown>()
    for (const [id, state] of this.awareness.getStates()) if (id !== this.clientId) out.set(id, state)
    return out
  }

  destroy (): void {
    this.awareness.destroy()
    this.doc.destroy()
  }
}
