import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { UpdateJudge } from '../../../shared/update-judge.ts'
import { attachmentProblem, claimOf, SERVER_UPLOADER, type UploadedFile } from '../../../shared/update-judge/attachments.ts'
import { messageShapeProblem } from '../../../shared/schema.ts'

const Attachments = suite('attachments in messages and judged updates')

const file: UploadedFile = { conversationId: 'c1', fileId: 'f1', uploaderId: 'alice', name: 'a.pdf', size: 10, contentType: 'application/pdf', attachedTo: null }
const attachment = { fileId: 'f1', name: 'a.pdf', size: 10, contentType: 'application/pdf' }
const claim = { messageId: 'm1', senderId: 'alice', attachment }

Attachments('a claim matches only its sender\'s upload to the same conversation, with the same metadata, not carried elsewhere', () => {
  assert.is(attachmentProblem(claim, 'c1', file), null)
  assert.is(attachmentProblem(claim, 'c1', { ...file, attachedTo: 'm1' }), null, 'the message that carries it (an edit)')
  assert.match(attachmentProblem(claim, 'c1', undefined) ?? '', /no file/)
  assert.match(attachmentProblem(claim, 'c2', file) ?? '', /no file/)
  assert.match(attachmentProblem({ ...claim, senderId: 'bob' }, 'c1', file) ?? '', /another user/)
  for (const wrong of [{ name: 'b.pdf' }, { size: 11 }, { contentType: 'image/png' }]) {
    assert.match(attachmentProblem({ ...claim, attachment: { ...attachment, ...wrong } }, 'c1', file) ?? '', /does not match/)
  }
  assert.match(attachmentProblem(claim, 'c1', { ...file, attachedTo: 'm0' }) ?? '', /already attached/)
})

Attachments('a system message claims as the server uploader', () => {
  const c = claimOf({ id: 'm', senderId: null, attachment })
  assert.is(c?.senderId, SERVER_UPLOADER)
  assert.is(claimOf({ id: 'm', senderId: 'alice' }), null)
})

Attachments('the message shape allows exactly the four attachment keys', () => {
  const m = { id: 'm', senderId: 'a', text: '', createdAt: 1, type: 'UserMessage' }
  assert.is(messageShapeProblem({ ...m, attachment }, 100), null)
  assert.ok(messageShapeProblem({ ...m, attachment: { ...attachment, url: 'x' } }, 100) !== null)
  assert.ok(messageShapeProblem({ ...m, attachment: { ...attachment, size: -1 } }, 100) !== null)
  assert.ok(messageShapeProblem({ ...m, attachment: { fileId: 'f1' } }, 100) !== null)
  assert.ok(messageShapeProblem({ ...m, attachment: 'f1' }, 100) !== null)
})

Attachments('the judge reports the attachment claims of the messages an update adds', () => {
  const server = new Y.Doc()
  server.clientID = 1
  server.getArray('messages')
  const judge = new UpdateJudge(server, { maxTextLength: 100, clientOwner: () => undefined, reservedClientIds: new Set([1]) })
  const peer = new Y.Doc()
  peer.clientID = 2
  peer.getArray('messages').push([
    { id: 'm1', senderId: 'alice', text: 'x', createdAt: 1, type: 'UserMessage', attachment },
    { id: 'm2', senderId: 'alice', text: 'y', createdAt: 2, type: 'UserMessage' }
  ])
  const v = judge.judge(Y.encodeStateAsUpdate(peer), { userId: 'alice', role: 'participant', canWrite: true })
  assert.ok(v.ok)
  if (v.ok) assert.equal(v.attachments, [claim])
})

Attachments.run()
