import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { messagesOf } from '../../shared/doc.ts'
import { moveEarlyMessages } from '../../shared/order.ts'
import type { Message } from '../../shared/schema.ts'

const Order = suite('moveEarlyMessages')

const msg = (id: string, senderId = 'bob'): Message => ({ id, senderId, text: id, createdAt: 1, type: 'UserMessage' })
const ids = (doc: Y.Doc): string[] => messagesOf(doc).toArray().map(m => m.id)

/** A server document (client id 1000) holding `history`, written one message per transaction. */
const serverWith = (history: string[]): Y.Doc => {
  const doc = new Y.Doc()
  doc.clientID = 1000
  for (const id of history) messagesOf(doc).push([msg(id, 'srv')])
  return doc
}

/** Applies `update` as the server does: one transaction with the move; returns the moved ids. */
const receive = (doc: Y.Doc, update: Uint8Array): string[] => {
  const live = new Set(ids(doc))
  const clients = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(update)).keys()
  let moved: string[] = []
  Y.transact(doc, tr => {
    Y.applyUpdate(doc, update)
    moved = moveEarlyMessages(doc, tr, { clients, wasLive: id => live.has(id) })
  }, 'peer')
  return moved
}

/** A peer document with client id `clientId`, synced from `from` when given. */
const peer = (clientId: number, from?: Y.Doc): Y.Doc => {
  const doc = new Y.Doc()
  doc.clientID = clientId
  if (from !== undefined) Y.applyUpdate(doc, Y.encodeStateAsUpdate(from))
  return doc
}

Order('messages pushed before the first sync move behind the history, in order, as the same objects', () => {
  const server = serverWith(['h1', 'h2', 'h3'])
  const early = peer(1)
  messagesOf(early).push([msg('e1')])
  messagesOf(early).push([msg('e2')])
  assert.equal(receive(server, Y.encodeStateAsUpdate(early)), ['e1', 'e2'])
  assert.equal(ids(server), ['h1', 'h2', 'h3', 'e1', 'e2'])
  assert.equal(messagesOf(server).get(3), msg('e1'))
  // The peer gets the whole result and agrees.
  Y.applyUpdate(early, Y.encodeStateAsUpdate(server))
  assert.equal(ids(early), ids(server))
  assert.is(server.clientID, 1000, 'the server keeps its client id')
})

Order('index operations after a move hit the right elements (the index cache is rebuilt)', () => {
  const server = serverWith(['h1', 'h2', 'h3'])
  const arr = messagesOf(server)
  arr.get(2) // warm the cache
  const early = peer(1)
  messagesOf(early).push([msg('e1'), msg('e2')])
  receive(server, Y.encodeStateAsUpdate(early))
  assert.is(arr.get(1).id, 'h2')
  arr.delete(1, 1)
  assert.equal(ids(server), ['h1', 'h3', 'e1', 'e2'])
  arr.insert(3, [msg('x', 'srv')])
  assert.equal(ids(server), ['h1', 'h3', 'e1', 'x', 'e2'])
})

Order('appends of synced peers, edits in place and writes into an empty array stay where Yjs puts them', () => {
  const server = serverWith(['h1', 'h2'])
  const a = peer(1, server)
  const b = peer(2, server)
  messagesOf(a).push([msg('a')])
  messagesOf(b).push([msg('b')])
  assert.equal(receive(server, Y.encodeStateAsUpdate(b)), [])
  assert.equal(receive(server, Y.encodeStateAsUpdate(a)), [])
  assert.equal(ids(server), ['h1', 'h2', 'a', 'b'])

  const editor = peer(3, server)
  editor.transact(() => {
    messagesOf(editor).delete(0, 1)
    messagesOf(editor).insert(0, [{ ...msg('h1', 'srv'), text: 'edited', editedAt: 2 }])
  })
  assert.equal(receive(server, Y.encodeStateAsUpdate(editor)), [])
  assert.equal(messagesOf(server).get(0).text, 'edited')

  const empty = serverWith([])
  const first = peer(4)
  messagesOf(first).push([msg('f')])
  assert.equal(receive(empty, Y.encodeStateAsUpdate(first)), [])
  assert.equal(ids(empty), ['f'])
})

Order.run()
