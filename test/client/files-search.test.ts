import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Session } from '../../client/node.ts'
import { startServer, type TestServer } from '../helpers/server.ts'
import { waitFor } from '../helpers/clients.ts'
import { PDF_BYTES, PNG_1X1 } from '../helpers/uploads.ts'
import { convId, sessionFor } from './helpers.ts'

type Ctx = { s: TestServer, sessions: Session[] }
const Client = suite<Ctx>('client attachments and search')

Client.before(async ctx => { ctx.s = await startServer() })
Client.after(async ctx => { await ctx.s.stop() })
Client.before.each(ctx => { ctx.sessions = [] })
Client.after.each(async ctx => { await Promise.all(ctx.sessions.map(async s => { await s.close() })) })

Client('view.attach uploads a file and sends a message carrying it; others can download it from fileUrl', async ctx => {
  const id = convId()
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'] })
  const alice = (await sessionFor(ctx.s, 'alice', {}, ctx.sessions)).open(id)
  const bob = (await sessionFor(ctx.s, 'bob', {}, ctx.sessions)).open(id)
  await Promise.all([alice.whenSynced(), bob.whenSynced()])
  const { message, file } = await alice.attach(PNG_1X1, 'dot.png', { text: 'a dot' })
  assert.is(file.contentType, 'image/png')
  assert.equal(file.width, 1)
  await alice.whenSent(message.id)
  await waitFor(() => bob.messages.some(m => m.id === message.id))
  const got = bob.messages.find(m => m.id === message.id)
  assert.equal(got?.attachment, { fileId: file.fileId, name: 'dot.png', size: PNG_1X1.length, contentType: 'image/png' })
  const res = await fetch(await bob.fileUrl(got!.attachment!))
  assert.is(res.status, 200)
  assert.equal(Buffer.from(await res.arrayBuffer()), PNG_1X1)
  const pdf = await alice.attach(new Blob([PDF_BYTES]), 'report.pdf')
  assert.is(pdf.file.contentType, 'application/pdf')
  await alice.whenSent(pdf.message.id)
})

Client('view.search and session.search find messages, accent- and case-insensitively', async ctx => {
  const a = convId()
  const b = convId()
  await ctx.s.api('PUT', `/v1/conversations/${a}`, { participants: ['alice'] })
  await ctx.s.api('PUT', `/v1/conversations/${b}`, { participants: ['alice'] })
  const session = await sessionFor(ctx.s, 'alice', {}, ctx.sessions)
  const va = session.open(a)
  const vb = session.open(b)
  await Promise.all([va.whenSynced(), vb.whenSynced()])
  await va.whenSent(va.send('Rendez-vous au Café').id)
  await vb.whenSent(vb.send('le cafe est fermé').id)
  assert.equal((await va.search('CAFE')).data.map(m => m.text), ['Rendez-vous au Café'])
  const all = await session.search('café')
  assert.equal(all.data.map(m => m.conversationId), [b, a])
})

Client.run()
