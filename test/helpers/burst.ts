/**
 * The kill -9 test of a real process, shared by every storage engine: a writer bursts 300
 * messages through the stock provider, the process is killed with SIGKILL half-way, and after a
 * restart a fresh reader must see every message the first reader had received.
 */
import * as assert from 'uvu/assert'
import { SignJWT } from 'jose'
import { messagesOf } from '../../shared/doc.ts'
import { connectPeer, sendMessage, waitFor } from './clients.ts'
import type { RunningServer } from './process.ts'
import { UNLIMITED_RATE } from './server.ts'

/** A user token signed with the app secret, as an app's backend makes it. */
export const signToken = async (secret: string, sub: string): Promise<string> =>
  await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h').sign(new TextEncoder().encode(secret))

/** Creates conversation `conv` (or takes it as it is), bursts into it and kills `s` mid-burst. Returns the ids a reader received. */
export const killMidBurst = async (s: RunningServer, secret: string, conv = 'burst'): Promise<string[]> => {
  const put = await fetch(`${s.url}/v1/conversations/${conv}`, { method: 'PUT', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ participants: ['w', 'r'] }) })
  assert.ok(put.status === 201 || put.status === 200, `PUT answered ${put.status}`)
  // A burst as fast as it goes: the message rate limit (tested in abuse.test.ts) is lifted.
  const patched = await fetch(`${s.url}/v1/settings`, { method: 'PATCH', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify(UNLIMITED_RATE) })
  assert.is(patched.status, 200)
  const writer = connectPeer(s.wsUrl, conv, await signToken(secret, 'w'))
  const reader = connectPeer(s.wsUrl, conv, await signToken(secret, 'r'))
  await Promise.all([writer.synced, reader.synced])
  const seen = new Set<string>()
  messagesOf(reader.doc).observe(() => { for (const m of messagesOf(reader.doc).toArray()) seen.add(m.id) })
  for (let i = 0; i < 300; i++) {
    sendMessage(writer.doc, 'w', `b${i}`, `b${i}`)
    if (i % 10 === 9) await new Promise(resolve => setImmediate(resolve))
    if (i === 150) {
      await waitFor(() => seen.size > 20, 10000, 'reader received part of the burst')
      s.child.kill('SIGKILL')
    }
  }
  await s.exited
  writer.destroy()
  reader.destroy()
  assert.ok(seen.size > 0)
  return [...seen]
}

/** After a restart: a fresh reader of `conv` on `s` has every message of `received`. */
export const assertNothingLost = async (s: RunningServer, secret: string, received: readonly string[], conv = 'burst'): Promise<void> => {
  const fresh = connectPeer(s.wsUrl, conv, await signToken(secret, 'r'))
  await fresh.synced
  await waitFor(() => messagesOf(fresh.doc).length >= received.length, 5000, 'fresh reader syncs')
  const after = new Set(messagesOf(fresh.doc).toArray().map(m => m.id))
  const lost = received.filter(id => !after.has(id))
  fresh.destroy()
  assert.equal(lost, [], `lost ${lost.length} of ${received.length} received messages`)
}
