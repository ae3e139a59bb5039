/**
 * Issue 4 over real sockets: every rule of contract §3/§4/§5 and every fact of the issue, each
 * sent as a crafted update (or awareness update) by a raw y-websocket client to a real server
 * with real LevelDB. Each refusal checks the close code and the auth reason, that the server
 * document and the store are exactly as before, and that a bystander stock provider (carol)
 * keeps exchanging messages and holds exactly what the server holds (nothing was forwarded).
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { startServer, type TestServer } from '../helpers/server.ts'
import { connectPeer, sendMessage, texts, waitFor, type Peer } from '../helpers/clients.ts'
import {
  awarenessFrame, changesOf, connectRawPeer, craft, encodeSyncStep2, encodeSyncUpdate, mapEntryId, messageItemId, msg,
  type RawPeer
} from '../helpers/crafted.ts'
import type { Room } from '../../server/rooms/room.ts'
import type { StoredDoc } from '../../server/storage/port.ts'
import type { ErrorCode } from '../../shared/errors.ts'

const CONV = 'c1'

interface Ctx {
  s: TestServer
  peers: Peer[]
  raws: RawPeer[]
  /** The bystander: a participant on the stock provider. */
  carol: Peer
  exchanges: number
}

const Auth = suite<Ctx>('authorization over real sockets (issue 4)')

/** Fresh Yjs client ids for raw peers, well apart from each other. */
let nextClientId = 10_000
const freshClientId = (): number => (nextClientId += 7)

Auth.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.peers = []
  ctx.raws = []
  ctx.exchanges = 0
  await ctx.s.api('PUT', `/v1/conversations/${CONV}`, { participants: ['alice', 'bob', 'carol'], subject: 'Authz' })
  await ctx.s.api('PUT', `/v1/conversations/${CONV}/participants/reader`, { access: 'Read' })
  ctx.carol = await stockPeer(ctx, 'carol')
  await ctx.carol.synced
})

Auth.after.each(async ctx => {
  for (const r of ctx.raws) r.end()
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
})

// ---------------------------------------------------------------------------------------------
// Helpers

const stockPeer = async (ctx: Ctx, user: string, params: Record<string, string> = {}): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, CONV, await ctx.s.token(user), params)
  ctx.peers.push(p)
  return p
}

/** A raw peer of `user`, synced over the socket, writing as Yjs client `clientId`. */
const rawPeer = async (ctx: Ctx, user: string, clientId = freshClientId(), params: Record<string, string> = {}): Promise<RawPeer> => {
  const query = new URLSearchParams({ token: await ctx.s.token(user), ...params })
  const p = await connectRawPeer(`${ctx.s.wsUrl}/${CONV}?${query.toString()}`, clientId)
  ctx.raws.push(p)
  assert.ok(p.isOpen(), `${user} was admitted`)
  return p
}

const room = (ctx: Ctx): Room => {
  const r = ctx.s.server.rooms.peek(CONV)
  if (r === undefined) throw new Error('the room is not loaded')
  return r
}

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null): boolean =>
  a === null || b === null ? a === b : Buffer.from(a).equals(Buffer.from(b))

const withTimeout = async <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

interface Capture {
  bytes: Uint8Array
  roots: string[]
  stored: StoredDoc
  owners: Array<[number, string]>
}

/** The server document and what the store holds for it, once everything emitted is durable. */
const capture = async (ctx: Ctx): Promise<Capture> => {
  const r = room(ctx)
  await r.whenDurable()
  return {
    bytes: Y.encodeStateAsUpdate(r.doc),
    roots: [...r.doc.share.keys()].sort(),
    stored: await ctx.s.store.loadDoc(CONV),
    owners: [...(await ctx.s.store.loadClientOwners(CONV)).entries()].sort((a, b) => a[0] - b[0])
  }
}

const assertUnchanged = async (ctx: Ctx, before: Capture, what: string): Promise<void> => {
  const after = await capture(ctx)
  assert.equal(after.roots, before.roots, `${what}: no root appeared on the server doc`)
  assert.ok(sameBytes(after.bytes, before.bytes), `${what}: the server doc is unchanged`)
  assert.is(after.stored.lastSeq, before.stored.lastSeq, `${what}: nothing was appended to the store`)
  assert.ok(sameBytes(after.stored.snapshot, before.stored.snapshot), `${what}: the stored snapshot is unchanged`)
  assert.is(after.stored.updates.length, before.stored.updates.length, `${what}: the stored log is unchanged`)
  after.stored.updates.forEach((u, i) => assert.ok(sameBytes(u, before.stored.updates[i]), `${what}: stored update ${i} is unchanged`))
  assert.equal(after.owners, before.owners, `${what}: no client id was bound`)
  const doc = room(ctx).doc
  assert.is(doc.store.pendingStructs, null, `${what}: nothing pending`)
  assert.is(doc.store.pendingDs, null, `${what}: no deletion pending`)
}

const stateVectorOf = (doc: Y.Doc): Array<[number, number]> =>
  [...Y.decodeStateVector(Y.encodeStateVector(doc)).entries()].sort((a, b) => a[0] - b[0])

/**
 * The bystander goes on: carol's message reaches the server, a message posted by the server
 * reaches carol, and carol then holds exactly what the server holds (so nothing of a refused
 * update was forwarded: it would have arrived before the server's message).
 */
const bystanderGoesOn = async (ctx: Ctx): Promise<void> => {
  const n = ++ctx.exchanges
  const r = room(ctx)
  sendMessage(ctx.carol.doc, 'carol', `from carol ${n}`)
  await waitFor(() => texts(r.doc).includes(`from carol ${n}`), 5000, 'the bystander\'s message reaches the server')
  const posted = await ctx.s.api('POST', `/v1/conversations/${CONV}/messages`, [{ text: `to carol ${n}`, sender: 'bob', type: 'UserMessage' }])
  assert.is(posted.status, 201)
  await waitFor(() => texts(ctx.carol.doc).includes(`to carol ${n}`), 5000, 'the bystander receives a message')
  assert.ok(ctx.carol.provider.wsconnected, 'the bystander is still connected')
  assert.equal(ctx.carol.closes, [], 'the bystander was never closed')
  assert.equal(stateVectorOf(ctx.carol.doc), stateVectorOf(r.doc), 'the bystander holds what the server holds')
  for (const root of ['messages', 'participants', 'meta', 'reads']) {
    const get = (d: Y.Doc): unknown => root === 'messages' ? d.getArray(root).toJSON() : d.getMap(root).toJSON()
    assert.equal(get(ctx.carol.doc), get(r.doc), `the bystander's ${root} equal the server's`)
  }
}

/**
 * Sends `frame` on `peer` and expects the connection to be refused: an auth message with
 * `reason`, a close with `closeCode`, the document and the store unchanged, the bystander on.
 */
const expectRefused = async (ctx: Ctx, peer: RawPeer, frame: Uint8Array, closeCode: number, reason: ErrorCode, what: string): Promise<void> => {
  const before = await capture(ctx)
  peer.send(frame)
  // Frames are processed in order: an answer to a later step 1 means the frame was accepted.
  if (await peer.barrier()) {
    const after = await capture(ctx)
    assert.unreachable(`${what}: accepted (the connection stays open; the document ${sameBytes(after.bytes, before.bytes) ? 'is unchanged' : 'CHANGED'}), expected ${reason}`)
  }
  const { code } = await withTimeout(peer.closed, 5000, `${what}: the connection is closed`)
  assert.is(code, closeCode, `${what}: close code (reason ${JSON.stringify(peer.authReason())})`)
  assert.is(peer.authReason()?.code, reason, `${what}: auth reason`)
  await assertUnchanged(ctx, before, what)
  await bystanderGoesOn(ctx)
}

/** Same as `expectRefused` for a sync update. */
const refusedUpdate = async (ctx: Ctx, peer: RawPeer, update: Uint8Array, reason: ErrorCode, what: string, closeCode = 4403): Promise<void> =>
  await expectRefused(ctx, peer, encodeSyncUpdate(update), closeCode, reason, what)

/** Sends `update` and expects it accepted without any change: still open, doc and store as before. */
const acceptedNoChange = async (ctx: Ctx, peer: RawPeer, frame: Uint8Array, what: string): Promise<void> => {
  const before = await capture(ctx)
  peer.send(frame)
  assert.ok(await peer.barrier(), `${what}: the connection stays open (reason ${JSON.stringify(peer.authReason())})`)
  await assertUnchanged(ctx, before, what)
}

/** Sends `update` and expects it accepted and durable; returns nothing. */
const acceptedChange = async (ctx: Ctx, peer: RawPeer, update: Uint8Array, what: string): Promise<void> => {
  const before = await capture(ctx)
  peer.sendUpdate(update)
  assert.ok(await peer.barrier(), `${what}: accepted, the connection stays open (reason ${JSON.stringify(peer.authReason())})`)
  const after = await capture(ctx)
  assert.ok(after.stored.lastSeq > before.stored.lastSeq, `${what}: stored`)
  assert.not.ok(sameBytes(after.bytes, before.bytes), `${what}: applied`)
}

/** Lets `peer` write with its local doc and checks it was accepted. */
const write = async (ctx: Ctx, peer: RawPeer, fn: (doc: Y.Doc) => void, what = 'an honest write'): Promise<void> => {
  await acceptedChange(ctx, peer, changesOf(peer.doc, fn), what)
}

const messages = (doc: Y.Doc): Y.Array<unknown> => doc.getArray('messages')
const ids = (doc: Y.Doc): string[] => messages(doc).toArray().map(m => (m as { id: string }).id)
const push = (...items: unknown[]) => (doc: Y.Doc): void => { messages(doc).push(items) }

/** The next clock of `client` on the server doc. */
const serverState = (ctx: Ctx, client: number): number => Y.getState(room(ctx).doc.store, client)

// ---------------------------------------------------------------------------------------------
// Rules of §4

Auth('only messages and reads are writable: a write to participants or meta is refused with 4403 WRITE_FORBIDDEN', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('participants').set('alice', { access: 'ReadWrite', notify: true, joinedAt: 0, admin: true })), 'WRITE_FORBIDDEN', 'participants.alice')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('participants').set('mallory', { access: 'ReadWrite', notify: true, joinedAt: 0 })), 'WRITE_FORBIDDEN', 'participants.mallory')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('participants').delete('bob')), 'WRITE_FORBIDDEN', 'deleting participants.bob')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('meta').set('guestAccess', 'none')), 'WRITE_FORBIDDEN', 'meta.guestAccess')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('meta').delete('subject')), 'WRITE_FORBIDDEN', 'deleting meta.subject')
  assert.is(room(ctx).doc.getMap('meta').get('subject'), 'Authz')
})

Auth('a message must have the pinned shape: unknown keys, missing fields, non-objects and other content kinds are refused with INVALID_MESSAGE', async ctx => {
  const bad: Array<[string, unknown]> = [
    ['an unknown key', msg('s1', 'alice', { admin: true })],
    ['no createdAt', { id: 's2', senderId: 'alice', text: 'x', type: 'UserMessage' }],
    ['a bad id', msg('not an id!', 'alice')],
    ['a string', 'just a string'],
    ['an array', [msg('s3', 'alice')]],
    ['a number text', msg('s4', 'alice', { text: 42 })]
  ]
  for (const [what, value] of bad) {
    const a = await rawPeer(ctx, 'alice')
    await refusedUpdate(ctx, a, changesOf(a.doc, push(value)), 'INVALID_MESSAGE', what)
  }
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(new Y.Map())), 'INVALID_MESSAGE', 'a nested Y.Map')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: freshClientId(), clock: 0, structs: [{ parent: 'messages', content: { string: 'hello' } }] }]), 'INVALID_MESSAGE', 'a Y.Text string in messages')
  assert.is(messages(room(ctx).doc).length, ctx.exchanges * 2)
})

Auth('senderId must be the connection\'s user: a message as someone else is refused with SENDER_MISMATCH', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('x1', 'bob'))), 'SENDER_MISMATCH', 'as bob')
  const g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  await refusedUpdate(ctx, g, changesOf(g.doc, push(msg('x2', 'alice'))), 'SENDER_MISMATCH', 'a guest as alice')
  a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('x3', 'alice')), 'as herself')
})

Auth('a text over the limit is refused with TEXT_TOO_LONG; one at the limit is accepted', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('long', 'alice', { text: 'x'.repeat(10_001) }))), 'TEXT_TOO_LONG', '10,001 characters')
  a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('atlimit', 'alice', { text: 'y'.repeat(10_000) })), '10,000 characters')
})

Auth('a lowered maxTextLength applies at once to a conversation already loaded', async ctx => {
  const patched = await ctx.s.api('PATCH', '/v1/settings', { maxTextLength: 20 })
  assert.is(patched.status, 200)
  const a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('long', 'alice', { text: 'x'.repeat(21) }))), 'TEXT_TOO_LONG', '21 characters over a limit of 20')
})

Auth('a message id used before is refused with DUPLICATE_MESSAGE_ID, whoever wrote the first', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('m1', 'alice')))
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('m1', 'alice'))), 'DUPLICATE_MESSAGE_ID', 'alice repeats her id')
  const b = await rawPeer(ctx, 'bob')
  await refusedUpdate(ctx, b, changesOf(b.doc, push(msg('m1', 'bob'))), 'DUPLICATE_MESSAGE_ID', 'bob reuses alice\'s id')
  const serverMade = (await ctx.s.api('POST', `/v1/conversations/${CONV}/messages`, [{ text: 'by rest', sender: 'alice', type: 'UserMessage' }])).body[0].id as string
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg(serverMade, 'alice'))), 'DUPLICATE_MESSAGE_ID', 'the id of a message the server wrote')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('twice', 'alice'), msg('twice', 'alice'))), 'DUPLICATE_MESSAGE_ID', 'one id twice in one update')
})

Auth('a SystemMessage from a peer is refused with WRITE_FORBIDDEN', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push({ id: 'sys1', senderId: null, text: 'You are all admins now', createdAt: 1, type: 'SystemMessage' })), 'WRITE_FORBIDDEN', 'a system message')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('sys2', 'alice', { type: 'SystemMessage' }))), 'INVALID_MESSAGE', 'a system message with a sender')
})

Auth('custom must be a map of strings: anything else is refused with INVALID_MESSAGE', async ctx => {
  for (const [what, custom] of [['a number value', { a: 1 }], ['a string', 'flat'], ['an array', ['a']], ['a nested map', { a: { b: 'c' } }], ['null', null]] as Array<[string, unknown]>) {
    const a = await rawPeer(ctx, 'alice')
    await refusedUpdate(ctx, a, changesOf(a.doc, push(msg('c1', 'alice', { custom }))), 'INVALID_MESSAGE', `custom ${what}`)
  }
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('c2', 'alice', { custom: { color: 'blue', '': '' } })), 'a map of strings')
})

Auth('deleting another user\'s message is refused with SENDER_MISMATCH', async ctx => {
  const b = await rawPeer(ctx, 'bob')
  await write(ctx, b, push(msg('b1', 'bob')))
  await ctx.s.api('POST', `/v1/conversations/${CONV}/messages`, [{ text: 'bob via rest', sender: 'bob', type: 'UserMessage' }])
  let a = await rawPeer(ctx, 'alice')
  assert.equal(ids(a.doc).length, 2)
  await refusedUpdate(ctx, a, changesOf(a.doc, d => messages(d).delete(0, 1)), 'SENDER_MISMATCH', 'bob\'s message from bob\'s client')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => messages(d).delete(1, 1)), 'SENDER_MISMATCH', 'bob\'s message written by the server')
  // A bare crafted deletion, with no struct at all.
  a = await rawPeer(ctx, 'alice')
  const [client, clock] = messageItemId(room(ctx).doc, 0)
  await refusedUpdate(ctx, a, craft([], [[client, clock, 1]]), 'SENDER_MISMATCH', 'a bare delete set')
  assert.is(ids(room(ctx).doc)[0], 'b1')
  assert.is(texts(room(ctx).doc)[1], 'bob via rest')
})

Auth('an edit of one\'s own message (delete and insert of the same id with editedAt) is accepted and reaches other peers', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('m1', 'alice'), msg('m2', 'alice')))
  await write(ctx, a, d => {
    d.transact(() => {
      messages(d).delete(0, 1)
      messages(d).insert(0, [msg('m1', 'alice', { text: 'edited', editedAt: 1_700_000_001_000 })])
    })
  }, 'the edit')
  assert.equal(messages(room(ctx).doc).get(0), msg('m1', 'alice', { text: 'edited', editedAt: 1_700_000_001_000 }))
  await waitFor(() => texts(ctx.carol.doc).includes('edited'), 5000, 'the bystander sees the edit')
  assert.equal(ids(ctx.carol.doc), ['m1', 'm2'])
  await bystanderGoesOn(ctx)
})

Auth('an edit of another user\'s message is refused with SENDER_MISMATCH, as the other or as oneself', async ctx => {
  const b = await rawPeer(ctx, 'bob')
  await write(ctx, b, push(msg('b1', 'bob')))
  for (const sender of ['bob', 'alice']) {
    const a = await rawPeer(ctx, 'alice')
    await refusedUpdate(ctx, a, changesOf(a.doc, d => {
      d.transact(() => {
        messages(d).delete(0, 1)
        messages(d).insert(0, [msg('b1', sender, { text: 'hijacked', editedAt: 2 })])
      })
    }), 'SENDER_MISMATCH', `an edit of bob's message written as ${sender}`)
  }
  assert.equal(messages(room(ctx).doc).get(0), msg('b1', 'bob'))
})

Auth('reads: a participant writes its own key as a number', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, d => d.getMap('reads').set('alice', 1_700_000_000_000))
  await write(ctx, a, d => d.getMap('reads').set('alice', 1_700_000_000_500), 'moving the marker')
  assert.is(room(ctx).doc.getMap('reads').get('alice'), 1_700_000_000_500)
  await waitFor(() => ctx.carol.doc.getMap('reads').get('alice') === 1_700_000_000_500, 5000, 'the bystander sees the marker')
})

Auth('reads: another participant\'s key, a non-number, or a deletion of another\'s marker is refused with WRITE_FORBIDDEN', async ctx => {
  const b = await rawPeer(ctx, 'bob')
  await write(ctx, b, d => d.getMap('reads').set('bob', 5))
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('reads').set('bob', 10)), 'WRITE_FORBIDDEN', 'overwriting bob\'s marker')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('reads').set('carol', 10)), 'WRITE_FORBIDDEN', 'carol\'s key')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('reads').set('alice', 'yesterday')), 'WRITE_FORBIDDEN', 'a string marker')
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('reads').delete('bob')), 'WRITE_FORBIDDEN', 'deleting bob\'s marker')
  assert.is(room(ctx).doc.getMap('reads').get('bob'), 5)
})

Auth('reads: a guest writing reads is refused with WRITE_FORBIDDEN', async ctx => {
  let g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  await refusedUpdate(ctx, g, changesOf(g.doc, d => d.getMap('reads').set('visitor', 1)), 'WRITE_FORBIDDEN', 'its own key')
  g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  await refusedUpdate(ctx, g, changesOf(g.doc, d => d.getMap('reads').set('alice', 1)), 'WRITE_FORBIDDEN', 'a participant\'s key')
  g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  await write(ctx, g, push(msg('g1', 'visitor')), 'a guest message (guestAccess write)')
})

const readOnlyCase = async (ctx: Ctx, user: string, params: Record<string, string>, ownReadMarker: 'accepted' | ErrorCode): Promise<void> => {
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('m1', 'alice'), msg('m2', 'alice')))
  await write(ctx, a, d => d.getMap('reads').set('alice', 3))
  await write(ctx, a, d => messages(d).delete(1, 1), 'a deletion, for the replay\'s delete set')
  const r = await rawPeer(ctx, user, freshClientId(), params)
  assert.equal(ids(r.doc), ['m1'])
  await acceptedNoChange(ctx, r, encodeSyncStep2(Y.encodeStateAsUpdate(r.doc)), 'a full replay as sync step 2')
  await acceptedNoChange(ctx, r, encodeSyncUpdate(Y.encodeStateAsUpdate(r.doc)), 'a full replay as an update')
  await acceptedNoChange(ctx, r, encodeSyncStep2(new Uint8Array([0, 0])), 'an empty step 2')
  await refusedUpdate(ctx, r, changesOf(r.doc, push(msg('ro1', user))), 'READ_ONLY', 'a message of its own')
  const r2 = await rawPeer(ctx, user, freshClientId(), params)
  await refusedUpdate(ctx, r2, changesOf(r2.doc, d => messages(d).delete(0, 1)), 'READ_ONLY', 'a deletion')
  const r3 = await rawPeer(ctx, user, freshClientId(), params)
  if (ownReadMarker === 'accepted') {
    await write(ctx, r3, d => d.getMap('reads').set(user, 9), 'its own read marker (v1.1 §3)')
    assert.is(room(ctx).doc.getMap('reads').get(user), 9)
    await refusedUpdate(ctx, r3, changesOf(r3.doc, d => d.getMap('reads').set('alice', 9)), 'WRITE_FORBIDDEN', 'another user\'s read marker')
  } else {
    await refusedUpdate(ctx, r3, changesOf(r3.doc, d => d.getMap('reads').set(user, 9)), ownReadMarker, 'a read marker')
  }
}

Auth('a read-only participant (access Read) may send a no-op sync step 2 and move its own read marker; any other change is refused', async ctx => {
  await readOnlyCase(ctx, 'reader', {}, 'accepted')
})

Auth('a read-only guest (guestAccess read) may send a no-op sync step 2 and stays connected; any change is refused with READ_ONLY', async ctx => {
  assert.is((await ctx.s.api('PUT', `/v1/conversations/${CONV}`, { guestAccess: 'read' })).status, 200)
  await readOnlyCase(ctx, 'visitor', { guest: '1' }, 'WRITE_FORBIDDEN')
})

// ---------------------------------------------------------------------------------------------
// Client ids, the server's own id, V2

Auth('a client id first used by alice is refused from bob with CLIENT_ID_TAKEN', async ctx => {
  const shared = freshClientId()
  const a = await rawPeer(ctx, 'alice', shared)
  await write(ctx, a, push(msg('a1', 'alice')))
  const owners = await ctx.s.store.loadClientOwners(CONV)
  assert.is(owners.get(shared), 'alice', 'the binding is stored')
  let b = await rawPeer(ctx, 'bob')
  await refusedUpdate(ctx, b, craft([{ client: shared, clock: serverState(ctx, shared), structs: [{ parent: 'messages', content: { any: [msg('b1', 'bob')] } }] }]), 'CLIENT_ID_TAKEN', 'bob appends under alice\'s id')
  // bob's own Y.Doc with alice's id: what a client that copied alice's local store would send.
  b = await rawPeer(ctx, 'bob', shared)
  await refusedUpdate(ctx, b, changesOf(b.doc, push(msg('b2', 'bob'))), 'CLIENT_ID_TAKEN', 'bob\'s doc under alice\'s id')
  // alice keeps her id.
  await write(ctx, a, push(msg('a2', 'alice')), 'alice writes on under her id')
})

Auth('client ids stay bound to their user after a server restart', async ctx => {
  const shared = freshClientId()
  const a = await rawPeer(ctx, 'alice', shared)
  await write(ctx, a, push(msg('a1', 'alice')))
  const oldServerId = room(ctx).doc.clientID
  for (const p of ctx.peers) p.destroy()
  for (const r of ctx.raws) r.end()
  ctx.peers = []
  ctx.raws = []
  await ctx.s.stop(true)
  ctx.s = await startServer({ dir: ctx.s.dir })
  ctx.carol = await stockPeer(ctx, 'carol')
  await ctx.carol.synced
  assert.equal(ids(room(ctx).doc), ['a1'])
  assert.is.not(room(ctx).doc.clientID, oldServerId, 'the restarted server writes under a new id')
  let b = await rawPeer(ctx, 'bob')
  await refusedUpdate(ctx, b, craft([{ client: shared, clock: serverState(ctx, shared), structs: [{ parent: 'messages', content: { any: [msg('b1', 'bob')] } }] }]), 'CLIENT_ID_TAKEN', 'bob under alice\'s id after the restart')
  b = await rawPeer(ctx, 'bob')
  await refusedUpdate(ctx, b, craft([{ client: oldServerId, clock: serverState(ctx, oldServerId), structs: [{ parent: 'messages', content: { any: [msg('b2', 'bob')] } }] }]), 'CLIENT_ID_TAKEN', 'bob under the previous server\'s id')
  const a2 = await rawPeer(ctx, 'alice', shared)
  await write(ctx, a2, push(msg('a2', 'alice')), 'alice writes on under her id after the restart')
})

Auth('the server\'s own client id is never accepted from a peer', async ctx => {
  const serverId = room(ctx).doc.clientID
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: serverId, clock: serverState(ctx, serverId), structs: [{ parent: 'messages', content: { any: [msg('s1', 'alice')] } }] }]), 'CLIENT_ID_TAKEN', 'an append under the server\'s id')
  a = await rawPeer(ctx, 'alice', serverId)
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getMap('reads').set('alice', 1)), 'CLIENT_ID_TAKEN', 'a read marker from a doc with the server\'s id')
})

Auth('a V2 update is refused with 4400 and changes nothing', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  const sv = Y.encodeStateVector(a.doc)
  messages(a.doc).push([msg('v2', 'alice')])
  await refusedUpdate(ctx, a, Y.encodeStateAsUpdateV2(a.doc, sv), 'MALFORMED_MESSAGE', 'an honest V2 update', 4400)
  a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, encodeSyncStep2(Y.encodeStateAsUpdateV2(room(ctx).doc)), 4400, 'MALFORMED_MESSAGE', 'a V2 replay as step 2')
})

// ---------------------------------------------------------------------------------------------
// Facts 1-10 of issue 4

Auth('fact 1: an item whose origin is participants.bob is refused (ContentDeleted would remove bob, a value would overwrite him)', async ctx => {
  const bobEntry = mapEntryId(room(ctx).doc, 'participants', 'bob')
  const cases: Array<[string, Uint8Array]> = [
    ['ContentDeleted after bob', craft([{ client: freshClientId(), clock: 0, structs: [{ origin: bobEntry, content: { deleted: 1 } }] }])],
    ['a value after bob', craft([{ client: freshClientId(), clock: 0, structs: [{ origin: bobEntry, content: { any: [{ access: 'None', notify: false, joinedAt: 1 }] } }] }])],
    ['ContentDeleted before bob (right origin)', craft([{ client: freshClientId(), clock: 0, structs: [{ rightOrigin: bobEntry, content: { deleted: 1 } }] }])],
    ['a chain after bob', (() => { const c = freshClientId(); return craft([{ client: c, clock: 0, structs: [{ origin: bobEntry, content: { deleted: 1 } }, { origin: [c, 0], content: { deleted: 1 } }] }]) })()]
  ]
  for (const [what, update] of cases) {
    const a = await rawPeer(ctx, 'alice')
    await refusedUpdate(ctx, a, update, 'WRITE_FORBIDDEN', what)
    assert.is((room(ctx).doc.getMap('participants').get('bob') as { access: string }).access, 'ReadWrite', `${what}: bob is still a participant`)
  }
  const conv = await ctx.s.api('GET', `/v1/conversations/${CONV}`)
  assert.equal(conv.body.participants.bob, { access: 'ReadWrite', notify: true })
})

Auth('fact 2: an update naming an unknown root is refused and the root is not created on the server doc', async ctx => {
  const c = freshClientId()
  let a = await rawPeer(ctx, 'alice', c)
  await write(ctx, a, push(msg('m1', 'alice')))
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: freshClientId(), clock: 0, structs: [{ parent: 'evil', content: { any: [1] } }] }]), 'WRITE_FORBIDDEN', 'a new struct in root evil')
  a = await rawPeer(ctx, 'alice', c)
  // A struct the server already has (so Yjs would skip it), naming another root.
  await refusedUpdate(ctx, a, craft([{ client: c, clock: 0, structs: [{ parent: 'evil', content: { any: [1] } }] }]), 'WRITE_FORBIDDEN', 'a known struct naming root evil')
  assert.not.ok(room(ctx).doc.share.has('evil'))
  assert.equal([...room(ctx).doc.share.keys()].sort(), ['messages', 'meta', 'participants', 'reactions', 'reads'])
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, changesOf(a.doc, d => d.getArray('notes').push(['x'])), 'WRITE_FORBIDDEN', 'an honest doc writing root notes')
  assert.not.ok(room(ctx).doc.share.has('notes'))
})

Auth('fact 3: a reconnecting sync step 2 that repeats deletions by others is accepted as no change', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('m1', 'alice'), msg('m2', 'alice')))
  const bobId = freshClientId()
  const b = await rawPeer(ctx, 'bob', bobId)
  await write(ctx, b, push(msg('b1', 'bob')))
  await write(ctx, a, d => messages(d).delete(0, 1), 'alice deletes m1')
  await waitFor(() => !ids(b.doc).includes('m1'), 5000, 'bob receives alice\'s deletion')
  b.end()
  await b.closed
  // bob comes back with his local store: his step 2 carries every deletion he knows.
  const b2 = await rawPeer(ctx, 'bob', bobId)
  Y.applyUpdate(b2.doc, Y.encodeStateAsUpdate(b.doc))
  const step2 = Y.encodeStateAsUpdate(b2.doc, Y.encodeStateVector(room(ctx).doc))
  assert.ok(Y.decodeUpdate(step2).ds.clients.size > 0, 'the step 2 carries deletions')
  await acceptedNoChange(ctx, b2, encodeSyncStep2(step2), 'bob\'s reconnect step 2')
  await write(ctx, b2, push(msg('b2', 'bob')), 'bob writes on after reconnecting')
  assert.equal(ids(room(ctx).doc).filter(id => !id.startsWith('m-')), ['m2', 'b1', 'b2'])
  await bystanderGoesOn(ctx)
})

Auth('fact 4: replays of structs the server already has are accepted as no change, from the writer or anyone else', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  await write(ctx, a, push(msg('m1', 'alice')))
  await write(ctx, a, d => d.getMap('reads').set('alice', 1))
  const replay = Y.encodeStateAsUpdate(a.doc)
  await acceptedNoChange(ctx, a, encodeSyncUpdate(replay), 'alice replays her whole store')
  const b = await rawPeer(ctx, 'bob')
  await acceptedNoChange(ctx, b, encodeSyncUpdate(replay), 'bob replays alice\'s store')
  await acceptedNoChange(ctx, b, encodeSyncStep2(Y.encodeStateAsUpdate(room(ctx).doc)), 'bob replays the server\'s own structs')
  const g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  await acceptedNoChange(ctx, g, encodeSyncStep2(replay), 'a guest replays alice\'s store')
  await bystanderGoesOn(ctx)
})

Auth('fact 5: a forward self-reference is refused with 4400 and the document is untouched', async ctx => {
  let c = freshClientId()
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: c, clock: 0, structs: [{ origin: [c, 0], content: { any: [msg('m1', 'alice')] } }] }]), 'MALFORMED_MESSAGE', 'origin is itself', 4400)
  c = freshClientId()
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: c, clock: 0, structs: [{ rightOrigin: [c, 5], content: { deleted: 1 } }] }]), 'MALFORMED_MESSAGE', 'right origin later in its own client', 4400)
  c = freshClientId()
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: c, clock: 0, structs: [{ parent: [c, 3], content: { deleted: 1 } }] }]), 'MALFORMED_MESSAGE', 'parent later in its own client', 4400)
  assert.is(messages(room(ctx).doc).length, ctx.exchanges * 2)
})

Auth('fact 6: a message whose senderId comes from a __proto__ key is refused with INVALID_MESSAGE', async ctx => {
  const forged = JSON.parse('{"id":"p1","text":"x","createdAt":1,"type":"UserMessage","__proto__":{"senderId":"alice"}}') as Record<string, unknown>
  let a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: freshClientId(), clock: 0, structs: [{ parent: 'messages', content: { any: [forged] } }] }]), 'INVALID_MESSAGE', 'an inherited senderId')
  const nested = JSON.parse('{"id":"p2","senderId":"alice","text":"x","createdAt":1,"type":"UserMessage","custom":{"__proto__":"x"}}') as Record<string, unknown>
  a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: freshClientId(), clock: 0, structs: [{ parent: 'messages', content: { any: [nested] } }] }]), 'INVALID_MESSAGE', 'a __proto__ key in custom')
})

Auth('fact 7: many offline appends merged into one item are accepted; one bad element refuses them all', async ctx => {
  const c = freshClientId()
  const a = await rawPeer(ctx, 'alice', c)
  const good = changesOf(a.doc, d => { for (let i = 0; i < 5; i++) push(msg(`off${i}`, 'alice'))(d) })
  assert.is(Y.decodeUpdate(good).structs.filter(s => s.id.client === c).length, 1, 'five appends merged into one item')
  await acceptedChange(ctx, a, good, 'five offline appends')
  assert.equal(ids(room(ctx).doc), ['off0', 'off1', 'off2', 'off3', 'off4'])
  await waitFor(() => ids(ctx.carol.doc).includes('off4'), 5000, 'the bystander receives them')
  const bad = changesOf(a.doc, d => {
    push(msg('off5', 'alice'))(d)
    push(msg('off6', 'bob'))(d)
    push(msg('off7', 'alice'))(d)
  })
  assert.is(Y.decodeUpdate(bad).structs.length, 1, 'three appends merged into one item')
  await refusedUpdate(ctx, a, bad, 'SENDER_MISMATCH', 'one element as bob among alice\'s')
  assert.not.ok(ids(room(ctx).doc).includes('off5'), 'not even the good elements are kept')
  const a2 = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a2, changesOf(a2.doc, d => { for (let i = 0; i < 50; i++) push(msg(`o${i}`, 'alice', i === 49 ? { text: 'x'.repeat(10_001) } : {}))(d) }), 'TEXT_TOO_LONG', 'the last of fifty is too long')
})

Auth('fact 8: an array item that carries a map key is refused', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  await refusedUpdate(ctx, a, craft([{ client: freshClientId(), clock: 0, structs: [{ parent: 'messages', parentSub: 'hidden', content: { any: [msg('h1', 'alice')] } }] }]), 'WRITE_FORBIDDEN', 'messages.hidden')
  assert.not.ok(room(ctx).doc.getArray('messages')._map.has('hidden'))
})

Auth('fact 9: missing dependencies (a clock gap, an unknown origin, a Skip, a deletion beyond the state) are refused and nothing is pending', async ctx => {
  const serverId = room(ctx).doc.clientID
  // Built when sent: the bystander's exchanges move the server's own clock on.
  const cases: Array<[string, () => Uint8Array]> = [
    ['a clock gap', () => craft([{ client: freshClientId(), clock: 3, structs: [{ parent: 'messages', content: { any: [msg('g1', 'alice')] } }] }])],
    ['an unknown origin', () => craft([{ client: freshClientId(), clock: 0, structs: [{ origin: [424242, 0], content: { any: [msg('g2', 'alice')] } }] }])],
    ['an origin beyond the server\'s state', () => craft([{ client: freshClientId(), clock: 0, structs: [{ origin: [serverId, serverState(ctx, serverId) + 10], content: { any: [msg('g3', 'alice')] } }] }])],
    ['a Skip before a struct', () => craft([{ client: freshClientId(), clock: 0, structs: [{ content: { skip: 2 } }, { parent: 'messages', content: { any: [msg('g4', 'alice')] } }] }])],
    ['a deletion of an unknown client', () => craft([], [[424243, 0, 1]])],
    ['a deletion past the state', () => craft([], [[serverId, 0, serverState(ctx, serverId) + 5]])]
  ]
  for (const [what, update] of cases) {
    const a = await rawPeer(ctx, 'alice')
    await refusedUpdate(ctx, a, update(), 'MISSING_DEPENDENCIES', what)
    assert.is(room(ctx).doc.store.pendingStructs, null, `${what}: no pending structs`)
    assert.is(room(ctx).doc.store.pendingDs, null, `${what}: no pending deletions`)
  }
})

Auth('fact 10: the server handles sync itself: a forbidden write sent as sync step 2 is refused like an update', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, encodeSyncStep2(changesOf(a.doc, d => d.getMap('participants').set('mallory', { access: 'ReadWrite', notify: true, joinedAt: 0 }))), 4403, 'WRITE_FORBIDDEN', 'participants via step 2')
  a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, encodeSyncStep2(changesOf(a.doc, push(msg('s2', 'bob')))), 4403, 'SENDER_MISMATCH', 'a message as bob via step 2')
  assert.is(room(ctx).doc.getMap('participants').get('mallory'), undefined)
})

// ---------------------------------------------------------------------------------------------
// Awareness (§5)

interface AwState { user?: { id?: string, role?: string, name?: string }, typing?: boolean, parley?: { guestCount: number } }
const seen = (p: Peer, clientId: number): AwState | undefined => p.provider.awareness.getStates().get(clientId) as AwState | undefined

Auth('awareness: user.id and user.role are set by the server; a forged id and role are corrected as another stock peer sees them', async ctx => {
  const a = await rawPeer(ctx, 'alice')
  const before = await capture(ctx)
  a.send(awarenessFrame([{ clientId: 4242, clock: 1, state: { user: { id: 'bob', role: 'admin', name: 'Not Bob' }, typing: true } }]))
  await waitFor(() => seen(ctx.carol, 4242) !== undefined, 5000, 'carol sees alice\'s state')
  assert.equal(seen(ctx.carol, 4242), { user: { name: 'Not Bob', id: 'alice', role: 'participant' }, typing: true })
  const g = await rawPeer(ctx, 'visitor', freshClientId(), { guest: '1' })
  g.send(awarenessFrame([{ clientId: 4343, clock: 1, state: { user: { id: 'alice', role: 'participant' } } }]))
  await waitFor(() => seen(ctx.carol, 4343) !== undefined, 5000, 'carol sees the guest\'s state')
  assert.equal(seen(ctx.carol, 4343)?.user, { id: 'visitor', role: 'guest' })
  assert.ok(await a.barrier() && await g.barrier(), 'both stay connected')
  await assertUnchanged(ctx, before, 'awareness')
  await bystanderGoesOn(ctx)
})

Auth('awareness: entries for client ids of other connections (and the server\'s) are dropped, not applied', async ctx => {
  const b = await stockPeer(ctx, 'bob')
  await b.synced
  const bobAw = b.provider.awareness.clientID
  b.provider.awareness.setLocalState({ user: { name: 'Bob' }, typing: false })
  await waitFor(() => seen(ctx.carol, bobAw)?.user?.name === 'Bob', 5000, 'carol sees bob')
  await waitFor(() => seen(ctx.carol, room(ctx).doc.clientID)?.parley !== undefined, 5000, 'carol sees the server state')
  const serverState0 = JSON.stringify(seen(ctx.carol, room(ctx).doc.clientID))
  const a = await rawPeer(ctx, 'alice')
  a.send(awarenessFrame([
    { clientId: bobAw, clock: 1000, state: { user: { name: 'Evil' }, typing: true } },
    { clientId: room(ctx).doc.clientID, clock: 1000, state: { parley: { guestCount: 99, participantCount: 99 } } },
    { clientId: 5151, clock: 1, state: { user: { name: 'A1' } } }
  ]))
  await waitFor(() => seen(ctx.carol, 5151)?.user?.name === 'A1', 5000, 'carol sees alice\'s own entry')
  assert.equal(seen(ctx.carol, bobAw), { user: { name: 'Bob', id: 'bob', role: 'participant' }, typing: false }, 'bob\'s state is untouched')
  assert.is(JSON.stringify(seen(ctx.carol, room(ctx).doc.clientID)), serverState0, 'the server state is untouched')
  a.send(awarenessFrame([
    { clientId: bobAw, clock: 2000, state: null },
    { clientId: 5151, clock: 2, state: { user: { name: 'A2' } } }
  ]))
  await waitFor(() => seen(ctx.carol, 5151)?.user?.name === 'A2', 5000, 'carol sees alice\'s next state')
  assert.is(seen(ctx.carol, bobAw)?.user?.name, 'Bob', 'bob was not removed by alice')
  assert.ok(await a.barrier(), 'dropped, not refused: alice stays connected')
  await bystanderGoesOn(ctx)
})

Auth('awareness: an oversized state, or more states than the cap, closes the connection with 4400', async ctx => {
  let a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, awarenessFrame([{ clientId: 6161, clock: 1, state: { user: { name: 'big' }, blob: 'x'.repeat(5000) } }]), 4400, 'MALFORMED_MESSAGE', 'a 5 kB state')
  a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, awarenessFrame([1, 2, 3, 4, 5].map(i => ({ clientId: 6200 + i, clock: 1, state: { user: { name: `n${i}` } } }))), 4400, 'MALFORMED_MESSAGE', 'five states on one connection')
  a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, awarenessFrame([{ clientId: 6300, clock: 1, state: { raw: '{"user":' } }]), 4400, 'MALFORMED_MESSAGE', 'a state that is not JSON')
  a = await rawPeer(ctx, 'alice')
  await expectRefused(ctx, a, awarenessFrame([{ clientId: 6301, clock: 1, state: [1, 2] }]), 4400, 'MALFORMED_MESSAGE', 'a state that is an array')
  for (const id of [6161, 6201, 6202, 6203, 6204, 6205, 6300, 6301]) assert.is(seen(ctx.carol, id), undefined, `carol never sees ${id}`)
})

Auth.run()
