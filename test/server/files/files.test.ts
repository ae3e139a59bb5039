import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { startServer, TEST_SECRET, type TestServer } from '../../helpers/server.ts'
import { connectPeer, waitFor } from '../../helpers/clients.ts'
import { PDF_BYTES, PNG_1X1, streamUpload, uploadFile } from '../../helpers/uploads.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'

const Files = suite<{ s: TestServer, admin: string }>('file uploads, downloads and attachments')
Files.before.each(async ctx => {
  ctx.s = await startServer()
  ctx.admin = `Bearer ${TEST_SECRET}`
  await ctx.s.api('PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })
  await ctx.s.api('PUT', '/v1/conversations/c2', { participants: ['alice'] })
  await ctx.s.api('PUT', '/v1/conversations/c1/participants/rita', { access: 'Read' })
})
Files.after.each(async ctx => { await ctx.s.stop() })

const bearer = async (s: TestServer, user: string): Promise<string> => `Bearer ${await s.token(user)}`
const blobFiles = async (s: TestServer, conv: string): Promise<string[]> => await readdir(join(s.dir, 'db', 'files', `_${conv}`)).catch(() => [])
const records = async (s: TestServer): Promise<unknown[]> => {
  const out: unknown[] = []
  for await (const [k, v] of s.store.section('files').entries({ gte: 'v1!f!', lt: 'v1!f!\xff' })) out.push([k, v])
  return out
}

/** Sends `m` from a synced stock peer of `user`; resolves with the close code, or 0 when it was accepted. */
const sendOverSync = async (s: TestServer, conv: string, user: string, m: Message): Promise<number> => {
  const p = connectPeer(s.wsUrl, conv, await s.token(user))
  await p.synced
  messagesOf(p.doc).push([m])
  const room = s.server.rooms.peek(conv)!
  await waitFor(() => p.closes.length > 0 || messagesOf(room.doc).toArray().some(x => x.id === m.id), 5000, 'verdict')
  const code = p.closes[0]?.code ?? 0
  await room.whenDurable()
  p.destroy()
  return code
}

const message = (id: string, sender: string, attachment: unknown): Message => ({ id, senderId: sender, text: 'see file', createdAt: Date.now(), type: 'UserMessage', attachment } as Message)

Files('a participant uploads an image: the type is sniffed from the bytes, with its size; the file is stored in the data folder', async ({ s }) => {
  const r = await uploadFile(s.url, 'c1', await bearer(s, 'alice'), 'pic.txt', PNG_1X1, 'text/plain')
  assert.is(r.status, 201)
  assert.is(r.body.contentType, 'image/png')
  assert.is(r.body.size, PNG_1X1.length)
  assert.is(r.body.name, 'pic.txt')
  assert.is(r.body.width, 1)
  assert.is(r.body.height, 1)
  assert.equal(await blobFiles(s, 'c1'), [`_${r.body.fileId as string}`])
})

Files('a PDF is downloaded as an attachment with nosniff; an image inline; ?token= works; ranges answer 206', async ({ s }) => {
  const alice = await bearer(s, 'alice')
  const pdf = (await uploadFile(s.url, 'c1', alice, 'doc.pdf', PDF_BYTES, 'image/png')).body
  assert.is(pdf.contentType, 'application/pdf')
  const res = await fetch(`${s.url}/v1/conversations/c1/files/${pdf.fileId as string}`, { headers: { authorization: await bearer(s, 'bob') } })
  assert.is(res.status, 200)
  assert.is(res.headers.get('x-content-type-options'), 'nosniff')
  assert.is(res.headers.get('content-type'), 'application/pdf')
  assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="doc.pdf"/)
  assert.equal(Buffer.from(await res.arrayBuffer()), PDF_BYTES)

  const png = (await uploadFile(s.url, 'c1', alice, 'p.png', PNG_1X1)).body
  const img = await fetch(`${s.url}/v1/conversations/c1/files/${png.fileId as string}?token=${await s.token('rita')}`)
  assert.is(img.status, 200)
  assert.match(img.headers.get('content-disposition') ?? '', /^inline;/)
  assert.is(img.headers.get('x-content-type-options'), 'nosniff')

  const part = await fetch(`${s.url}/v1/conversations/c1/files/${pdf.fileId as string}`, { headers: { authorization: alice, range: 'bytes=5-9' } })
  assert.is(part.status, 206)
  assert.is(part.headers.get('content-range'), `bytes 5-9/${PDF_BYTES.length}`)
  assert.equal(Buffer.from(await part.arrayBuffer()), PDF_BYTES.subarray(5, 10))
  const tailPart = await fetch(`${s.url}/v1/conversations/c1/files/${pdf.fileId as string}`, { headers: { authorization: alice, range: 'bytes=-4' } })
  assert.equal(Buffer.from(await tailPart.arrayBuffer()), PDF_BYTES.subarray(PDF_BYTES.length - 4))
  const bad = await fetch(`${s.url}/v1/conversations/c1/files/${pdf.fileId as string}`, { headers: { authorization: alice, range: `bytes=${PDF_BYTES.length}-` } })
  assert.is(bad.status, 416)
  assert.is((await bad.json()).error.code, 'RANGE_NOT_SATISFIABLE')
})

Files('a non-participant may not download (guest access off), nor a user without a token; an unknown file is 404', async ({ s }) => {
  const f = (await uploadFile(s.url, 'c1', await bearer(s, 'alice'), 'doc.pdf', PDF_BYTES)).body
  await s.api('PUT', '/v1/conversations/c1', { guestAccess: 'none' })
  const path = `/v1/conversations/c1/files/${f.fileId as string}`
  assert.is((await s.api('GET', path, undefined, await bearer(s, 'mallory'))).body.error.code, 'NOT_PARTICIPANT')
  assert.is((await fetch(s.url + path)).status, 401)
  assert.is((await s.api('GET', '/v1/conversations/c1/files/nope')).status, 404)
  // The file belongs to c1: asking c2 for it finds nothing.
  assert.is((await s.api('GET', `/v1/conversations/c2/files/${f.fileId as string}`, undefined, await bearer(s, 'alice'))).status, 404)
})

Files('who may upload: a Read participant and a read-only guest may not, a guest where guestAccess is write may', async ({ s }) => {
  assert.is((await uploadFile(s.url, 'c1', await bearer(s, 'rita'), 'a.pdf', PDF_BYTES)).body.error.code, 'READ_ONLY')
  assert.is((await uploadFile(s.url, 'c1', await bearer(s, 'gus'), 'a.pdf', PDF_BYTES)).status, 201)
  await s.api('PUT', '/v1/conversations/c1', { guestAccess: 'read' })
  assert.is((await uploadFile(s.url, 'c1', await bearer(s, 'gus'), 'a.pdf', PDF_BYTES)).body.error.code, 'READ_ONLY')
  await s.api('PATCH', '/v1/settings', { browserSync: false })
  assert.is((await uploadFile(s.url, 'c1', await bearer(s, 'gus'), 'a.pdf', PDF_BYTES)).body.error.code, 'GUEST_ACCESS_OFF')
})

Files('a guest\'s uploads count toward its daily quota', async ({ s }) => {
  await s.api('PATCH', '/v1/settings', { maxUploadBytesPerUserPerDay: PDF_BYTES.length + 10 })
  const gus = await bearer(s, 'gus')
  assert.is((await uploadFile(s.url, 'c1', gus, 'a.pdf', PDF_BYTES)).status, 201)
  const second = await uploadFile(s.url, 'c1', gus, 'b.pdf', PDF_BYTES)
  assert.is(second.status, 429)
  assert.is(second.body.error.code, 'UPLOAD_QUOTA_EXCEEDED')
  assert.is((await blobFiles(s, 'c1')).length, 1, 'the refused upload kept nothing')
  assert.is((await uploadFile(s.url, 'c1', await bearer(s, 'alice'), 'a.pdf', PDF_BYTES)).status, 201, 'another user has its own quota')
})

Files('a 26 MiB upload is refused with 413 FILE_TOO_LARGE and nothing is kept', async ({ s }) => {
  const r = await streamUpload(s.url, 'c1', await bearer(s, 'alice'), 26 * 1024 * 1024)
  assert.is(r.status, 413)
  assert.is(r.body.error.code, 'FILE_TOO_LARGE')
  assert.equal(await blobFiles(s, 'c1'), [])
  assert.equal(await records(s), [])
  assert.equal(await readdir(join(s.dir, 'db', 'files', '.tmp')), [])
})

Files('an upload cut off half-way leaves nothing visible and no temp file', async ({ s }) => {
  const r = await streamUpload(s.url, 'c1', await bearer(s, 'alice'), 4 * 1024 * 1024, 1024 * 1024)
  assert.is(r.status, 0)
  const tmp = join(s.dir, 'db', 'files', '.tmp')
  let left: string[] = ['?']
  for (let i = 0; i < 200 && left.length > 0; i++) {
    await new Promise(resolve => setTimeout(resolve, 20))
    left = await readdir(tmp)
  }
  assert.equal(left, [], 'temp file removed')
  assert.equal(await blobFiles(s, 'c1'), [])
  assert.equal(await records(s), [])
})

Files('a message may carry an attachment that matches its sender\'s upload to this conversation', async ({ s }) => {
  const f = (await uploadFile(s.url, 'c1', await bearer(s, 'alice'), 'doc.pdf', PDF_BYTES)).body
  const attachment = { fileId: f.fileId, name: f.name, size: f.size, contentType: f.contentType }
  assert.is(await sendOverSync(s, 'c1', 'alice', message('m1', 'alice', attachment)), 0)
  await s.server.files.settled()
  assert.is((await s.server.files.get('c1', f.fileId))?.attachedTo, 'm1')
  // The same file cannot be carried by a second message.
  assert.is(await sendOverSync(s, 'c1', 'alice', message('m2', 'alice', attachment)), 4403)
})

Files('attachments naming another user\'s file, another conversation\'s file, or the wrong metadata are refused (sync 4403, REST 400)', async ({ s }) => {
  const alice = await bearer(s, 'alice')
  const mine = (await uploadFile(s.url, 'c1', alice, 'doc.pdf', PDF_BYTES)).body
  const elsewhere = (await uploadFile(s.url, 'c2', alice, 'doc.pdf', PDF_BYTES)).body
  const att = (f: any): Record<string, unknown> => ({ fileId: f.fileId, name: f.name, size: f.size, contentType: f.contentType })
  assert.is(await sendOverSync(s, 'c1', 'bob', message('b1', 'bob', att(mine))), 4403, 'another user\'s file')
  assert.is(await sendOverSync(s, 'c1', 'alice', message('a1', 'alice', att(elsewhere))), 4403, 'another conversation\'s file')
  assert.is(await sendOverSync(s, 'c1', 'alice', message('a2', 'alice', { ...att(mine), size: mine.size + 1 })), 4403, 'size mismatch')
  assert.is(await sendOverSync(s, 'c1', 'alice', message('a3', 'alice', { ...att(mine), contentType: 'image/png' })), 4403, 'type mismatch')
  assert.is(await sendOverSync(s, 'c1', 'alice', message('a4', 'alice', { ...att(mine), name: 'other.pdf' })), 4403, 'name mismatch')
  assert.is(messagesOf(s.server.rooms.peek('c1')!.doc).length, 0)

  const rest = await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'bob', type: 'UserMessage', attachment: att(mine) }])
  assert.is(rest.status, 400)
  assert.is(rest.body.error.code, 'INVALID_ATTACHMENT')
  const ok = await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'alice', type: 'UserMessage', attachment: att(mine) }])
  assert.is(ok.status, 201)
  assert.equal(ok.body[0].attachment, att(mine))
})

Files('deleting the message that carries a file deletes the file; deleting the conversation deletes its files', async ({ s }) => {
  const alice = await bearer(s, 'alice')
  const f = (await uploadFile(s.url, 'c1', alice, 'doc.pdf', PDF_BYTES)).body
  const other = (await uploadFile(s.url, 'c1', alice, 'keep.pdf', PDF_BYTES)).body
  const sent = await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'alice', type: 'UserMessage', attachment: { fileId: f.fileId, name: f.name, size: f.size, contentType: f.contentType } }])
  await s.api('DELETE', `/v1/conversations/c1/messages/${sent.body[0].id as string}`)
  await s.server.files.settled()
  assert.is((await s.api('GET', `/v1/conversations/c1/files/${f.fileId as string}`)).status, 404)
  assert.equal(await blobFiles(s, 'c1'), [`_${other.fileId as string}`])
  await s.api('DELETE', '/v1/conversations/c1')
  await s.server.files.settled()
  assert.equal(await blobFiles(s, 'c1'), [])
  assert.equal(await records(s), [])
})

Files('while the life cycle is held (a backup streams), a deleted message\'s file stays; once released it goes', async ({ s }) => {
  const f = (await uploadFile(s.url, 'c1', await bearer(s, 'alice'), 'doc.pdf', PDF_BYTES)).body
  const sent = await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'alice', type: 'UserMessage', attachment: { fileId: f.fileId, name: f.name, size: f.size, contentType: f.contentType } }])
  await s.server.files.settled()
  const release = await s.server.files.hold()
  assert.is((await s.api('DELETE', `/v1/conversations/c1/messages/${sent.body[0].id as string}`)).status, 204)
  let settled = false
  const done = s.server.files.settled().then(() => { settled = true })
  // Not a timing promise: nothing may happen however long this waits; 300 ms gives it a chance to.
  await new Promise(resolve => setTimeout(resolve, 300))
  assert.is(settled, false, 'the deletion waits')
  assert.equal(await blobFiles(s, 'c1'), [`_${f.fileId as string}`])
  release()
  release()
  await done
  assert.equal(await blobFiles(s, 'c1'), [])
  assert.equal(await records(s), [])
})

Files('files no message carried within the orphan age are collected by the periodic sweep; attached ones stay', async () => {
  let clock = Date.now()
  const s = await startServer({ config: { fileOrphanMs: 60_000, fileSweepMs: 20 }, deps: { now: () => clock } })
  try {
    await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
    const alice = await bearer(s, 'alice')
    const orphan = (await uploadFile(s.url, 'c1', alice, 'a.pdf', PDF_BYTES)).body
    const kept = (await uploadFile(s.url, 'c1', alice, 'b.pdf', PDF_BYTES)).body
    await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'x', sender: 'alice', type: 'UserMessage', attachment: { fileId: kept.fileId, name: kept.name, size: kept.size, contentType: kept.contentType } }])
    await s.server.files.settled()
    assert.is(await s.server.files.sweep(), 0, 'nothing is old enough yet')
    clock += 61_000
    const status = async (fileId: string): Promise<number> => (await fetch(`${s.url}/v1/conversations/c1/files/${fileId}`, { headers: { authorization: alice } })).status
    for (let i = 0; i < 250 && await status(orphan.fileId) === 200; i++) await new Promise(resolve => setTimeout(resolve, 20))
    assert.is(await status(orphan.fileId), 404)
    assert.is(await status(kept.fileId), 200)
    assert.equal(await blobFiles(s, 'c1'), [`_${kept.fileId as string}`])
  } finally {
    await s.stop()
  }
})

Files.run()
