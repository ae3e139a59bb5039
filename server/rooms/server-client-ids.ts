/**
 * The server's own Yjs client ids, recognisable as the server's without any stored record.
 *
 * Each load of a conversation picks a fresh client id for the server's writes (system messages,
 * participants, meta). Its binding to the server is stored with its first write, so a restore
 * from an older copy forgets it; a peer that comes back holding those writes must still be told
 * apart from a peer that forges server content under a made-up id (see stale-peer.ts). So a
 * server client id carries a tag: its high 16 bits are random, its low 16 bits the first bytes of
 * HMAC-SHA256(secret, high bits). A made-up id passes with a chance of 1 in 65,536, and passing
 * only earns recovery mode, in which nothing a peer sends is taken but what it may write anyway.
 */
import { createHmac, randomInt } from 'node:crypto'

export interface ServerClientIds {
  /** A new tagged id for which `taken` is false. */
  next (taken: (id: number) => boolean): number
  /** Whether `id` carries this server's tag. */
  isServers (id: number): boolean
}

export const createServerClientIds = (secret: string): ServerClientIds => {
  const tag = (high: number): number => createHmac('sha256', secret).update(`parley-server-client:${high}`).digest().readUInt16BE(0)
  const make = (high: number): number => ((high << 16) | tag(high)) >>> 0
  return {
    next (taken) {
      for (;;) {
        const id = make(randomInt(0, 0x10000))
        if (!taken(id)) return id
      }
    },
    isServers: id => id >>> 0 === id && make(id >>> 16) === id
  }
}
