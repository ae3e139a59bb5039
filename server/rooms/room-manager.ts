/**
 * Loads conversations on demand and unloads them when idle.
 *
 * A room is held by references: each live connection and each REST request in flight holds one.
 * When the last reference goes, the room is unloaded after `idleUnloadMs` unless someone takes
 * it again. Concurrent loads of one conversation share one load.
 */
import { ChatError } from '../../shared/errors.ts'
import { Room, type RoomDeps } from './room.ts'

interface Entry {
  loading: Promise<Room>
  room: Room | null
  refs: number
  idleTimer: unknown
}

export interface RoomManagerDeps extends Omit<RoomDeps, 'onClosed'> {
  idleUnloadMs: number
  /** Loads a room: `Room.load` (default), or a cluster room (server/cluster/), chosen at startup. */
  loadRoom?: (id: string, deps: RoomDeps) => Promise<Room>
}

export class RoomManager {
  private readonly deps: RoomManagerDeps
  private readonly entries = new Map<string, Entry>()
  /** Rooms being unloaded or deleted: a new load of the same id waits for that to finish. */
  private readonly unloading = new Map<string, Promise<void>>()

  constructor (deps: RoomManagerDeps) {
    this.deps = deps
  }

  /**
   * Takes a reference on a conversation's room, loading it if needed. Pair with `release`.
   * `strict` (the default): the room first holds everything committed before the call, on any
   * node of a cluster (`Room.caughtUp`); a sync connection asks for less.
   */
  async acquire (id: string, { strict = true }: { strict?: boolean } = {}): Promise<Room> {
    let entry = this.entries.get(id)
    while (entry === undefined && this.unloading.has(id)) {
      await this.unloading.get(id)
      entry = this.entries.get(id)
    }
    if (entry === undefined) {
      const created: Entry = { loading: Promise.resolve(null as unknown as Room), room: null, refs: 0, idleTimer: null }
      const load = this.deps.loadRoom ?? Room.load
      created.loading = load(id, { ...this.deps, onClosed: room => this.forget(room) })
        .then(room => {
          created.room = room
          this.deps.metrics.loadedConversations.set(this.loadedCount())
          return room
        })
      created.loading.catch(() => { if (this.entries.get(id) === created) this.entries.delete(id) })
      this.entries.set(id, created)
      entry = created
    }
    entry.refs++
    this.cancelIdle(entry)
    try {
      const room = await entry.loading
      const caughtUp = room.caughtUp(strict)
      if (caughtUp !== undefined) await caughtUp
      if (room.closed) throw new ChatError('CONVERSATION_NOT_FOUND')
      return room
    } catch (e) {
      entry.refs--
      throw e
    }
  }

  /** Drops a reference taken by `acquire`. */
  release (room: Room): void {
    const entry = this.entries.get(room.id)
    if (entry === undefined || entry.room !== room) return
    entry.refs = Math.max(0, entry.refs - 1)
    if (entry.refs === 0) {
      entry.idleTimer = this.deps.timers.setTimeout(() => {
        entry.idleTimer = null
        if (entry.refs === 0 && this.entries.get(room.id) === entry) {
          this.entries.delete(room.id)
          const done = room.unload()
            .catch(err => this.deps.logger.error({ err, conversation: room.id }, 'unload failed'))
            .finally(() => { if (this.unloading.get(room.id) === done) this.unloading.delete(room.id) })
          this.unloading.set(room.id, done)
        }
      }, this.deps.idleUnloadMs)
    }
  }

  /** Runs `fn` with the room held, releasing it afterwards. */
  async withRoom<T> (id: string, fn: (room: Room) => Promise<T> | T): Promise<T> {
    const room = await this.acquire(id)
    try {
      return await fn(room)
    } finally {
      this.release(room)
    }
  }

  /** The room if it is loaded now (no reference taken). */
  peek (id: string): Room | undefined {
    const room = this.entries.get(id)?.room
    return room !== null && room !== undefined && !room.closed ? room : undefined
  }

  /** Every loaded room. */
  loaded (): Room[] {
    const out: Room[] = []
    for (const e of this.entries.values()) if (e.room !== null && !e.room.closed) out.push(e.room)
    return out
  }

  /** Closes a room's connections with `error` and forgets it, whoever holds it. */
  evict (id: string, error: ChatError): Room | undefined {
    const entry = this.entries.get(id)
    if (entry === undefined) return undefined
    this.entries.delete(id)
    this.cancelIdle(entry)
    entry.room?.close(error)
    this.deps.metrics.loadedConversations.set(this.loadedCount())
    return entry.room ?? undefined
  }

  /**
   * Closes a room's connections with `error`, forgets it, and runs `wipe` (deleting its data)
   * while no load of the same id may start: a load waits until `wipe` is done.
   */
  async remove (id: string, error: ChatError, wipe: () => Promise<void>): Promise<void> {
    const room = this.evict(id, error)
    const done = (async () => {
      await room?.settled()
      await wipe()
    })()
    const barrier = done.catch(() => {}).finally(() => { if (this.unloading.get(id) === barrier) this.unloading.delete(id) })
    this.unloading.set(id, barrier)
    await done
  }

  /**
   * After storage was reopened: checks that it holds every log entry each loaded room wrote
   * (what its peers may have seen). Returns one line per conversation that lost any.
   */
  async findLostWrites (): Promise<string[]> {
    const lost: string[] = []
    for (const room of this.loaded()) {
      const { lastSeq } = await this.deps.store.loadDoc(room.id)
      if (lastSeq < room.durableSeq) lost.push(`${room.id}: stored up to entry ${lastSeq}, acknowledged up to ${room.durableSeq}`)
    }
    return lost
  }

  /** Storage accepts writes again: every stalled room writes what it kept. */
  resumeWrites (): void {
    for (const room of this.loaded()) room.resumeWrites()
  }

  /** Flushes and unloads every room (shutdown). */
  async unloadAll (): Promise<void> {
    const pending = [...this.entries.values()].map(async e => {
      this.cancelIdle(e)
      const room = await e.loading.catch(() => null)
      if (room !== null) await room.unload()
    })
    this.entries.clear()
    await Promise.all([...pending, ...this.unloading.values()])
    this.deps.metrics.loadedConversations.set(0)
  }

  private forget (room: Room): void {
    const entry = this.entries.get(room.id)
    if (entry !== undefined && entry.room === room) {
      this.cancelIdle(entry)
      this.entries.delete(room.id)
    }
    this.deps.metrics.loadedConversations.set(this.loadedCount())
  }

  private cancelIdle (entry: Entry): void {
    if (entry.idleTimer !== null) {
      this.deps.timers.clearTimeout(entry.idleTimer)
      entry.idleTimer = null
    }
  }

  private loadedCount (): number {
    let n = 0
    for (const e of this.entries.values()) if (e.room !== null && !e.room.closed) n++
    return n
  }
}
