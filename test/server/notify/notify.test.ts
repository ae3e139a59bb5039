import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'
import type * as Y from 'yjs'
import { connectPeer, waitFor, type Peer } from '../../helpers/clients.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'
import { DEFAULT_DELIVERY_TUNING } from '../../../server/notify/services.ts'
import type { ServerConfig } from '../../../server/app.ts'
import { startReceiver, type Receiver, type Received } from '../webhooks/receiver.ts'
import { startServerOn, type AnyTestServer, type StoreKind } from '../../helpers/store-kind.ts'

/**
 * Every case runs on LevelDB (one node's memory keeps the batches) and on PostgreSQL (the
 * batches shared by the nodes of a cluster live in the database: server/notify/shared-notifier.ts).
 */
interface Ctx { kind: StoreKind, s: AnyTestServer, hook: Receiver, peers: Peer[] }

const FAST: Partial<ServerConfig> = {
  delivery: { ...DEFAULT_DELIVERY_TUNING, outbox: { ...DEFAULT_DELIVERY_TUNING.outbox, retryBaseMs: 50 } }
}

const setup = async (ctx: Ctx, delay: number, config: Partial<ServerConfig> = {}): Promise<void> => {
  ctx.hook = await startReceiver()
  ctx.s = await startServerOn(ctx.kind, { ...FAST, ...config })
  ctx.peers = []
  const r = await ctx.s.api('PATCH', '/v1/settings', { webhookUrl: ctx.hook.url, notificationDelay: delay })
  assert.is(r.status, 200)
  for (const [id, name] of [['alice', 'Alice'], ['bob', 'Bob'], ['carol', 'Carol']]) {
    await ctx.s.api('PUT', `/v1/users/${id}`, { name, email: `${id}@example.test` })
  }
  await ctx.s.api('PUT', '/v1/conversations/c1', { subject: 'Plans', participants: ['alice', 'bob', 'carol'] })
}

const teardown = async (ctx: Ctx): Promise<void> => {
  for (const p of ctx.peers) p.destroy()
  await ctx.s.stop()
  await ctx.hook.close()
}

const join = async (ctx: Ctx, userId: string, opts: { guest?: boolean, viewing?: boolean } = {}): Promise<Peer> => {
  const p = connectPeer(ctx.s.wsUrl, 'c1', await ctx.s.token(userId), opts.guest === true ? { guest: '1' } : {})
  ctx.peers.push(p)
  await p.synced
  if (opts.viewing !== undefined) {
    p.provider.awareness.setLocalStateField('viewing', opts.viewing)
    await waitFor(() => ctx.s.server.rooms.peek('c1')?.presence.participantViewing().get(userId) === opts.viewing, 2000, 'viewing state')
  }
  return p
}

const setTyping = async (ctx: Ctx, p: Peer, userId: string, typing: boolean): Promise<void> => {
  p.provider.awareness.setLocalStateField('typing', typing)
  await waitFor(() => ctx.s.server.rooms.peek('c1')?.presence.typingUsers().has(userId) === typing, 2000, 'typing state')
}

let clock = Date.now()
const say = (doc: Y.Doc, senderId: string, text: string): Message => {
  clock = Math.max(clock + 1, Date.now())
  const m: Message = { id: `m${clock}`, senderId, text, createdAt: clock, type: 'UserMessage' }
  messagesOf(doc).push([m])
  return m
}

interface NotificationData { conversationId: string, subject: string | null, recipient: { id: string, name: string | null, email: string[] }, messages: Message[] }
const notifications = (ctx: Ctx): Array<Received & { n: NotificationData }> =>
  ctx.hook.ok('notification.triggered').map(r => ({ ...r, n: r.body.data as unknown as NotificationData }))
const notified = (ctx: Ctx, userId: string): NotificationData[] => notifications(ctx).filter(x => x.n.recipient.id === userId).map(x => x.n)
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

const runNotifySuites = (kind: StoreKind): void => {
  const Notify = suite<Ctx>(`notifications (${kind})`, { kind } as Ctx)
  Notify.after.each(teardown)

  Notify('a participant with no connection gets one notification holding every message it missed', async ctx => {
    await setup(ctx, 1)
    const b = await join(ctx, 'bob')
    const m1 = say(b.doc, 'bob', 'one')
    const m2 = say(b.doc, 'bob', 'two')
    await sleep(200)
    const m3 = say(b.doc, 'bob', 'three')
    await waitFor(() => notified(ctx, 'alice').length === 1, 5000, 'alice notified')
    const n = notified(ctx, 'alice')[0]
    assert.equal(n.messages.map(m => m.id), [m1.id, m2.id, m3.id])
    assert.is(n.conversationId, 'c1')
    assert.is(n.subject, 'Plans')
    assert.equal(n.recipient, { id: 'alice', name: 'Alice', email: ['alice@example.test'] })
    await waitFor(() => notified(ctx, 'carol').length === 1, 2000, 'carol notified')
    await sleep(300)
    assert.is(notified(ctx, 'alice').length, 1)
    assert.is(notified(ctx, 'bob').length, 0, 'the sender is not notified of its own messages')
  })

  Notify('a participant viewing the conversation is not notified; one connected but not viewing is', async ctx => {
    await setup(ctx, 0)
    await join(ctx, 'alice', { viewing: true })
    await join(ctx, 'carol', { viewing: false })
    const b = await join(ctx, 'bob')
    const m = say(b.doc, 'bob', 'are you there?')
    await waitFor(() => notified(ctx, 'carol').length === 1, 3000, 'carol notified')
    assert.equal(notified(ctx, 'carol')[0].messages.map(x => x.id), [m.id])
    await sleep(300)
    assert.is(notified(ctx, 'alice').length, 0)
  })

  Notify('typing that stops between two seconds still holds the batch for the full delay after it stops', async ctx => {
    await setup(ctx, 1, { delivery: DEFAULT_DELIVERY_TUNING })
    const b = await join(ctx, 'bob', { viewing: false })
    say(b.doc, 'bob', 'first')
    await waitFor(() => messagesOf(ctx.s.server.rooms.peek('c1')!.doc).length === 1, 2000, 'the message stored')
    await setTyping(ctx, b, 'bob', true)
    await sleep(1300)
    await setTyping(ctx, b, 'bob', false)
    const stoppedAt = Date.now()
    await waitFor(() => notified(ctx, 'alice').length === 1, 4000, 'alice notified')
    const arrived = notifications(ctx).find(x => x.n.recipient.id === 'alice')?.at ?? 0
    assert.ok(arrived - stoppedAt >= 900, `notified ${arrived - stoppedAt} ms after typing stopped`)
  })

  Notify('the notification waits until every participant has stopped typing for notificationDelay; a guest typing holds nothing', async ctx => {
    await setup(ctx, 1)
    const b = await join(ctx, 'bob', { viewing: false })
    const g = await join(ctx, 'visitor', { guest: true })
    const m1 = say(b.doc, 'bob', 'first')
    await setTyping(ctx, g, 'visitor', true)
    await waitFor(() => notified(ctx, 'alice').length === 1, 4000, 'alice notified although a guest types')
    assert.equal(notified(ctx, 'alice')[0].messages.map(m => m.id), [m1.id])
    const m2 = say(g.doc, 'visitor', 'a guest writes too')
    await setTyping(ctx, b, 'bob', true)
    await setTyping(ctx, g, 'visitor', false)
    await sleep(1200)
    assert.is(notified(ctx, 'alice').length, 1, 'nothing new while bob types')
    await setTyping(ctx, b, 'bob', false)
    const stoppedAt = Date.now()
    await waitFor(() => notified(ctx, 'alice').length === 2, 4000, 'alice notified again')
    const arrived = notifications(ctx).filter(x => x.n.recipient.id === 'alice')[1]?.at ?? 0
    assert.ok(arrived - stoppedAt >= 900, `notified ${arrived - stoppedAt} ms after typing stopped`)
    assert.equal(notified(ctx, 'alice')[1].messages.map(m => m.id), [m2.id])
    // Each recipient's notification is its own webhook post: they may arrive in any order.
    await waitFor(() => notified(ctx, 'bob').length === 1, 4000, 'bob notified')
    const forBob = notified(ctx, 'bob')
    assert.equal(forBob.map(n => n.messages.map(m => m.id)), [[m2.id]], 'the guest message notifies bob, who is not viewing')
    assert.ok(notifications(ctx).every(x => x.n.recipient.id !== 'visitor'), 'a guest is never notified')
  })

  Notify('MentionsOnly notifies only from the first message that mentions the user', async ctx => {
    await setup(ctx, 0)
    await ctx.s.api('PATCH', '/v1/conversations/c1/participants/alice', { notify: 'MentionsOnly' })
    await ctx.s.api('PATCH', '/v1/conversations/c1/participants/carol', { notify: false })
    const b = await join(ctx, 'bob')
    say(b.doc, 'bob', 'nothing for alice, not even @alicia')
    await sleep(400)
    assert.is(notified(ctx, 'alice').length, 0)
    const m = say(b.doc, 'bob', 'hey @alice, lunch?')
    await waitFor(() => notified(ctx, 'alice').length === 1, 3000, 'alice notified')
    assert.equal(notified(ctx, 'alice')[0].messages.map(x => x.id), [m.id])
    assert.is(notified(ctx, 'carol').length, 0, 'notify false is never notified')
  })

  Notify('system messages never notify, and a read marker past the batch cancels it', async ctx => {
    await setup(ctx, 1)
    const r = await ctx.s.api('POST', '/v1/conversations/c1/messages', [{ text: 'Welcome', type: 'SystemMessage' }])
    assert.is(r.status, 201)
    const b = await join(ctx, 'bob')
    const m = say(b.doc, 'bob', 'read me')
    const a = await join(ctx, 'alice', { viewing: false })
    a.doc.getMap('reads').set('alice', m.createdAt)
    await waitFor(() => notified(ctx, 'carol').length === 1, 4000, 'carol notified')
    assert.equal(notified(ctx, 'carol')[0].messages.map(x => x.text), ['read me'])
    await sleep(300)
    assert.is(notified(ctx, 'alice').length, 0)
  })

  Notify('a notification still pending when the server stops is sent after it starts again', async ctx => {
    await setup(ctx, 2)
    const b = await join(ctx, 'bob')
    const m = say(b.doc, 'bob', 'before the restart')
    await waitFor(() => ctx.s.server.eventServices.notifier.pendingConversations === 1, 2000, 'pending')
    b.destroy()
    ctx.peers = []
    const kept = ctx.s.kept
    await ctx.s.stop(true)
    assert.is(notified(ctx, 'alice').length, 0, 'nothing was sent before the stop')
    ctx.s = await startServerOn(ctx.kind, FAST, kept)
    await waitFor(() => notified(ctx, 'alice').length === 1, 8000, 'alice notified after the restart')
    assert.equal(notified(ctx, 'alice')[0].messages.map(x => x.id), [m.id])
    await sleep(300)
    assert.is(notified(ctx, 'alice').length, 1, 'once')
  })

  Notify.run()

  const Email = suite<Ctx & { smtp: SMTPServer, mails: string[] }>(`notification email (${kind})`, { kind } as Ctx & { smtp: SMTPServer, mails: string[] })

  Email.after.each(async ctx => {
    await teardown(ctx)
    await new Promise<void>(resolve => ctx.smtp.close(() => resolve()))
  })

  Email('with an SMTP URL, a notification is also emailed through a real SMTP server', async ctx => {
    ctx.mails = []
    const envelopes: string[][] = []
    ctx.smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData (stream, session, callback) {
        let data = ''
        stream.setEncoding('utf8')
        stream.on('data', (c: string) => { data += c })
        stream.on('end', () => {
          envelopes.push(session.envelope.rcptTo.map(a => a.address))
          ctx.mails.push(data)
          callback()
        })
      }
    })
    await new Promise<void>(resolve => ctx.smtp.listen(0, '127.0.0.1', () => resolve()))
    const port = (ctx.smtp.server.address() as AddressInfo).port
    await setup(ctx, 0, { smtpUrl: `smtp://127.0.0.1:${port}?from=Parley%20%3Cnoreply%40parley.test%3E` })
    await ctx.s.api('PATCH', '/v1/conversations/c1/participants/carol', { notify: false })
    const b = await join(ctx, 'bob')
    say(b.doc, 'bob', 'see you at noon')
    await waitFor(() => ctx.mails.length === 1, 5000, 'an email')
    assert.equal(envelopes[0], ['alice@example.test'])
    const mail = ctx.mails[0]
    assert.match(mail, /^Subject: 1 new message in Plans$/m)
    assert.match(mail, /^From: Parley <noreply@parley.test>$/m)
    assert.match(mail, /Bob: see you at noon/)
    await sleep(200)
    assert.is(ctx.mails.length, 1)
  })

  Email.run()
}

runNotifySuites('LevelDB')
runNotifySuites('PostgreSQL')
