import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Session } from '../../client/node.ts'
import type { ChatError } from '../../shared/errors.ts'
import { startServer, type TestServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { waitFor } from '../helpers/clients.ts'
import { reactionsOf } from '../../shared/doc.ts'
import { convId, sessionFor } from './helpers.ts'

const Rich = suite<{ s: TestServer, sessions: Session[] }>('client reactions and replies')
Rich.before.each(async ctx => {
  ctx.s = await startServer({ config: { historyWindow: 10, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  ctx.sessions = []
})
Rich.after.each(async ctx => {
  await Promise.all(ctx.sessions.map(async s => { await s.close() }))
  await ctx.s.stop()
})

Rich('react and unreact show on both sides with reacted events; malformed reactions throw locally', async ctx => {
  const id = convId('react')
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const a = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  const b = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  await Promise.all([a.whenSynced(), b.whenSynced()])
  const m = a.send('react to me')
  await a.whenSent(m.id)
  await waitFor(() => b.messages.length === 1, 5000, 'bob sees it')
  const reacted: Array<Record<string, string[]> | undefined> = []
  a.on('reacted', msg => reacted.push(msg.reactions))
  assert.ok(b.react(m.id, '👍'))
  assert.not.ok(b.react(m.id, '👍'), 'twice is once')
  a.react(m.id, '👍')
  a.react(m.id, '🎉')
  await waitFor(() => JSON.stringify(b.messages[0].reactions) === JSON.stringify({ '👍': ['alice', 'bob'], '🎉': ['alice'] }), 5000, 'bob sees both')
  await waitFor(() => a.messages[0].reactions?.['👍']?.length === 2, 5000, 'alice sees both')
  assert.ok(reacted.length >= 3)
  assert.ok(a.unreact(m.id, '🎉'))
  assert.not.ok(a.unreact(m.id, '🎉'))
  b.unreact(m.id, '👍')
  await waitFor(() => JSON.stringify(b.messages[0].reactions) === JSON.stringify({ '👍': ['alice'] }), 5000, 'removals reach bob')
  const rest = await ctx.s.api('GET', `/v1/conversations/${id}/messages`)
  assert.equal(rest.body.data[0].reactions, { '👍': ['alice'] })
  for (const bad of ['', 'a b', 'x'.repeat(33)]) {
    assert.throws(() => a.react(m.id, bad), (e: ChatError) => e.code === 'INVALID_REACTION')
  }
  assert.throws(() => a.react('unknown', '👍'), (e: ChatError) => e.code === 'MESSAGE_NOT_FOUND')
  assert.is(a.error, null)
  assert.is(b.error, null)
})

Rich('a reply names its message; getReferenced reads it from the view or, archived, from the server', async ctx => {
  const id = convId('reply')
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const a = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id, { pageSize: 5 })
  await a.whenSynced()
  const q = a.send('old question')
  await a.whenSent(q.id)
  a.react(q.id, '😮')
  for (let i = 0; i < 20; i++) await a.whenSent(a.send(`m${i}`).id)
  await waitFor(() => ctx.s.server.rooms.peek(id)!.archivedCount > 0, 5000, 'archived')
  const near = a.messages[a.messages.length - 1]
  const r1 = a.send('reply to a recent one', { replyTo: near.id })
  const r2 = a.send('reply to an archived one', { replyTo: q.id })
  await a.whenSent(r2.id)
  assert.is(r2.referencedMessageId, q.id)
  assert.is((await a.getReferenced(r1.id))?.text, near.text)
  // A fresh view of bob shows only the newest messages: the question comes from the archive.
  const b = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id, { pageSize: 3 })
  await b.whenSynced()
  assert.not.ok(b.messages.some(m => m.id === q.id), 'the question is not shown')
  const referenced = await b.getReferenced(r2.id)
  assert.is(referenced?.text, 'old question')
  assert.equal(referenced?.reactions, { '😮': ['alice'] })
  assert.is(await b.getReferenced(near.id), null, 'not a reply')
  assert.is((await ctx.s.api('DELETE', `/v1/conversations/${id}/messages/${q.id}`)).status, 204)
  assert.is(await b.getReferenced(r2.id), null, 'deleted since')
})

Rich('a reaction to an archived message loaded with loadOlder shows its reactions and can be changed', async ctx => {
  const id = convId('older')
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const a = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  await a.whenSynced()
  const first = a.send('first')
  await a.whenSent(first.id)
  a.react(first.id, '❤️')
  for (let i = 0; i < 20; i++) await a.whenSent(a.send(`m${i}`).id)
  const b = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id, { pageSize: 5 })
  await b.whenSynced()
  while (b.hasMore === true) await b.loadOlder()
  const shown = b.messages.find(m => m.id === first.id)
  assert.equal(shown?.reactions, { '❤️': ['alice'] })
  b.react(first.id, '❤️')
  await waitFor(() => JSON.stringify(reactionsOf(ctx.s.server.rooms.peek(id)!.doc).get(`${first.id}/bob`)) === '["❤️"]', 5000, 'stored')
  assert.equal(b.messages.find(m => m.id === first.id)?.reactions, { '❤️': ['alice', 'bob'] })
  assert.is(b.error, null)
})

Rich.run()
