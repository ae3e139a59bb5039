import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { mentionedMessageIds } from '../../../shared/update-judge/mentioned-ids.ts'

const Mentioned = suite('message ids an update mentions (read from its bytes)')

const message = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ id, senderId: 'alice', text: `text of ${id}`, createdAt: 1, type: 'UserMessage', ...extra })

/** The update `change` makes to a document that holds `before`. */
const updateOf = (before: (doc: Y.Doc) => void, change: (doc: Y.Doc) => void): Uint8Array => {
  const doc = new Y.Doc()
  before(doc)
  const sv = Y.encodeStateVector(doc)
  change(doc)
  return Y.encodeStateAsUpdate(doc, sv)
}

Mentioned('new messages, the messages they reply to, and reaction targets', () => {
  const update = updateOf(() => {}, doc => {
    doc.getArray('messages').push([message('m1'), message('m2', { referencedMessageId: 'old-1' })])
    doc.getMap('reactions').set('old-2/bob', ['👍'])
  })
  assert.equal(mentionedMessageIds(update).sort(), ['m1', 'm2', 'old-1', 'old-2'])
})

Mentioned('an edit mentions the message it replaces; a deletion alone mentions nothing', () => {
  const edit = updateOf(doc => { doc.getArray('messages').push([message('m1')]) }, doc => {
    const arr = doc.getArray('messages')
    doc.transact(() => { arr.delete(0, 1); arr.insert(0, [message('m1', { text: 'edited' })]) })
  })
  assert.equal(mentionedMessageIds(edit), ['m1'])
  const del = updateOf(doc => { doc.getArray('messages').push([message('m2')]) }, doc => { doc.getArray('messages').delete(0, 1) })
  assert.equal(mentionedMessageIds(del), [])
})

Mentioned('other roots, non-objects and malformed bytes mention nothing', () => {
  const other = updateOf(() => {}, doc => {
    doc.getMap('meta').set('subject', 'hello')
    doc.getArray('messages').push(['not an object', 3])
    doc.getMap('reactions').set('no-slash', ['x'])
  })
  assert.equal(mentionedMessageIds(other), [])
  assert.equal(mentionedMessageIds(new Uint8Array([1, 2, 3])), [])
  assert.equal(mentionedMessageIds(new Uint8Array(0)), [])
})

Mentioned.run()
