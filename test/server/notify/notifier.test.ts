import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as Y from 'yjs'
import { participantsOf, readsOf } from '../../../shared/doc.ts'
import type { Message, Notify } from '../../../shared/schema.ts'
import { Notifier, type Notification, type NotifierDeps, type NotifierRoom } from '../../../server/notify/notifier.ts'
import { isMentioned } from '../../../server/notify/mentions.ts'
import { createFakeTime, type FakeTime } from '../presence/helpers.ts'

interface Ctx {
  time: FakeTime
  doc: Y.Doc
  viewing: Map<string, boolean>
  typing: Set<string>
  /** Typing-change listeners of the fake presence. */
  listeners: Set<() => void>
  out: Notification[]
  deps: NotifierDeps
  notifier: Notifier
}

const Machine = suite<Ctx>('notifier state machine (fake time)')

Machine.before.each(ctx => {
  ctx.time = createFakeTime()
  ctx.doc = new Y.Doc()
  ctx.viewing = new Map()
  ctx.typing = new Set()
  ctx.out = []
  ctx.listeners = new Set()
  const room: NotifierRoom = {
    doc: ctx.doc,
    presence: {
      participantViewing: () => new Map(ctx.viewing),
      typingUsers: () => new Set(ctx.typing),
      onTypingChange: fn => { ctx.listeners.add(fn); return () => { ctx.listeners.delete(fn) } }
    }
  }
  ctx.deps = {
    timers: ctx.time.timers,
    now: ctx.time.now,
    peek: conv => conv === 'c1' ? room : undefined,
    delaySeconds: () => 30,
    deliver: n => ctx.out.push(n)
  }
  ctx.notifier = new Notifier(ctx.deps)
  for (const u of ['alice', 'bob']) participantsOf(ctx.doc).set(u, { access: 'ReadWrite', notify: true, joinedAt: 0 })
})

/** Starts or stops `user` typing, telling the listeners as the presence hub does. */
const typing = (ctx: Ctx, user: string, on: boolean): void => {
  if (on) ctx.typing.add(user)
  else ctx.typing.delete(user)
  for (const fn of [...ctx.listeners]) fn()
}

let seq = 0
const send = (ctx: Ctx, senderId: string | null, text: string): Message => {
  const m: Message = { id: `m${++seq}`, senderId, text, createdAt: ctx.time.now() + 1, type: senderId === null ? 'SystemMessage' : 'UserMessage' }
  ctx.notifier.handle({ type: 'message.sent', conversationId: 'c1', message: m })
  return m
}

const setNotify = (ctx: Ctx, user: string, notify: Notify): void => {
  participantsOf(ctx.doc).set(user, { access: 'ReadWrite', notify, joinedAt: 0 })
}

Machine('fires once, notificationDelay after the last message, with every missed message', ctx => {
  const m1 = send(ctx, 'bob', 'one')
  ctx.time.advance(20_000)
  const m2 = send(ctx, 'bob', 'two')
  ctx.time.advance(29_000)
  assert.is(ctx.out.length, 0)
  ctx.time.advance(1_000)
  assert.equal(ctx.out.map(n => [n.recipientId, n.messages.map(m => m.id)]), [['alice', [m1.id, m2.id]]])
  ctx.time.advance(120_000)
  assert.is(ctx.out.length, 1)
  assert.is(ctx.time.pending(), 0, 'no timer left once idle')
})

Machine('a participant typing restarts the quiet period; the notification follows the last keystroke by the delay', ctx => {
  participantsOf(ctx.doc).set('carol', { access: 'ReadWrite', notify: false, joinedAt: 0 })
  send(ctx, 'bob', 'one')
  typing(ctx, 'carol', true)
  ctx.time.advance(100_000)
  assert.is(ctx.out.length, 0)
  typing(ctx, 'carol', false)
  ctx.time.advance(29_000)
  assert.is(ctx.out.length, 0)
  ctx.time.advance(1_000)
  assert.is(ctx.out.length, 1)
  assert.is(ctx.listeners.size, 0, 'it stops listening once fired')
})

Machine('the batch is held for the full delay after typing stops, whenever it stops (not sampled)', ctx => {
  ctx.notifier = new Notifier({ ...ctx.deps, delaySeconds: () => 1 })
  send(ctx, 'bob', 'one')
  typing(ctx, 'bob', true)
  ctx.time.advance(1_300)
  typing(ctx, 'bob', false)
  ctx.time.advance(999)
  assert.is(ctx.out.length, 0, 'nothing before a full delay after the last keystroke')
  ctx.time.advance(1)
  assert.is(ctx.out.length, 1)
  send(ctx, 'bob', 'two')
  ctx.time.advance(400)
  typing(ctx, 'alice', true)
  ctx.time.advance(50)
  typing(ctx, 'alice', false)
  ctx.time.advance(999)
  assert.is(ctx.out.length, 1, 'a short burst of a participant\'s typing also restarts the quiet period')
  ctx.time.advance(1)
  assert.is(ctx.out.length, 2)
})

Machine('a recipient leaves the batch when it writes, views, reads past it, or is removed', ctx => {
  participantsOf(ctx.doc).set('carol', { access: 'ReadWrite', notify: true, joinedAt: 0 })
  participantsOf(ctx.doc).set('dave', { access: 'ReadWrite', notify: true, joinedAt: 0 })
  participantsOf(ctx.doc).set('erin', { access: 'ReadWrite', notify: true, joinedAt: 0 })
  const m = send(ctx, 'bob', 'hello all')
  send(ctx, 'alice', 'I am here') // alice writes: she has seen it
  ctx.viewing.set('carol', true) // carol opens the conversation
  readsOf(ctx.doc).set('dave', m.createdAt + 1)
  ctx.notifier.handle({ type: 'reads.updated', conversationId: 'c1', userId: 'dave', readUpTo: m.createdAt + 1 })
  ctx.notifier.handle({ type: 'participant.removed', conversationId: 'c1', userId: 'erin', by: null })
  participantsOf(ctx.doc).delete('erin')
  ctx.time.advance(31_000)
  assert.equal(ctx.out.map(n => [n.recipientId, n.messages.map(x => x.text)]), [['bob', ['I am here']]])
})

Machine('a guest typing holds no notification: it fires notificationDelay after the message', ctx => {
  send(ctx, 'bob', 'one')
  ctx.typing.add('visitor') // a guest: not a participant
  ctx.time.advance(29_000)
  assert.is(ctx.out.length, 0)
  ctx.time.advance(1_000)
  assert.equal(ctx.out.map(n => n.recipientId), ['alice'])
})

Machine('whatever participants type or send, a batch fires at the latest 10 × notificationDelay after it started', ctx => {
  const first = send(ctx, 'bob', 'one')
  ctx.typing.add('bob')
  for (let i = 0; i < 29; i++) {
    ctx.time.advance(10_000)
    if (i % 5 === 0) send(ctx, 'bob', `more ${i}`)
  }
  assert.is(ctx.out.length, 0, 'held while bob types, up to 290 s')
  ctx.time.advance(10_000)
  assert.is(ctx.out.length, 1, 'fired at 300 s although bob still types')
  assert.is(ctx.out[0].messages[0].id, first.id)
})

Machine('edits and deletes change the pending batch; system messages never notify', ctx => {
  const m1 = send(ctx, 'bob', 'typo')
  const m2 = send(ctx, 'bob', 'oops')
  send(ctx, null, 'Bob changed the subject')
  ctx.notifier.handle({ type: 'message.updated', conversationId: 'c1', message: { ...m1, text: 'fixed', editedAt: 1 }, previous: m1 })
  ctx.notifier.handle({ type: 'message.deleted', conversationId: 'c1', message: m2, deletedBy: 'bob' })
  ctx.time.advance(31_000)
  assert.equal(ctx.out.map(n => n.messages.map(m => m.text)), [['fixed']])
})

Machine('MentionsOnly starts a batch only at a mention, then keeps what follows', ctx => {
  setNotify(ctx, 'alice', 'MentionsOnly')
  send(ctx, 'bob', 'just chatting')
  const m2 = send(ctx, 'bob', 'what do you think, @alice?')
  const m3 = send(ctx, 'bob', 'no rush')
  ctx.time.advance(31_000)
  assert.equal(ctx.out.map(n => n.messages.map(m => m.id)), [[m2.id, m3.id]])
})

Machine('a conversation deleted while pending notifies nobody and leaves no timer', ctx => {
  send(ctx, 'bob', 'one')
  ctx.notifier.handle({ type: 'conversation.deleted', conversationId: 'c1' })
  assert.is(ctx.time.pending(), 0)
  ctx.time.advance(60_000)
  assert.is(ctx.out.length, 0)
})

Machine.run()

const Mentions = suite('mentions')

Mentions('@userId mentions the user unless more id characters follow', () => {
  assert.ok(isMentioned('hi @bob', 'bob'))
  assert.ok(isMentioned('@bob, see this', 'bob'))
  assert.ok(isMentioned('thanks @bob.', 'bob'))
  assert.ok(isMentioned('ask @b.c-d~e now', 'b.c-d~e'))
  assert.not.ok(isMentioned('hi @bobby', 'bob'))
  assert.not.ok(isMentioned('mail bob@bob.example', 'bob'))
  assert.not.ok(isMentioned('@bob.smith', 'bob'))
  assert.not.ok(isMentioned('hi bob', 'bob'))
})

Mentions.run()
