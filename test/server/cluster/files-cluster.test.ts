/**
 * Uploaded files in cluster mode (docs/cluster.md): their bytes live in PostgreSQL, so any node
 * serves any file. Real `parley` processes sharing one PostgreSQL schema and the machine's Redis.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { connectPeer, texts, waitFor } from '../../helpers/clients.ts'
import { startCluster, type TestCluster } from '../../helpers/cluster.ts'
import { uploadFile } from '../../helpers/uploads.ts'
import { messagesOf } from '../../../shared/doc.ts'
import type { Message } from '../../../shared/schema.ts'

const F = suite<{ cluster?: TestCluster }>('files in cluster mode')
F.after.each(async ctx => {
  const cluster = ctx.cluster
  ctx.cluster = undefined
  await cluster?.stop()
})

/** Waits for an asynchronous condition (a query, a request), checking every 25 ms. */
const waitUntil = async (check: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

const message = (id: string, sender: string, attachment: Message['attachment']): Message =>
  ({ id, senderId: sender, text: 'see file', createdAt: Date.now(), type: 'UserMessage', attachment })

F('a file uploaded through node A is downloaded (whole and by range) through node B, carried by a message accepted on B, and deleted everywhere', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  const q = cluster.schema.admin
  const s = q(cluster.schema.schema)
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/c1', { participants: ['alice', 'bob'] })).status, 201)
  const alice = `Bearer ${await cluster.token('alice')}`
  const bob = `Bearer ${await cluster.token('bob')}`

  // Over 1 MiB: several chunk rows.
  const bytes = randomBytes(1_300_000)
  const up = await uploadFile(a.url, 'c1', alice, 'data.bin', bytes)
  assert.is(up.status, 201, JSON.stringify(up.body))
  const fileId = up.body.fileId as string
  const [{ n: stored }] = await q`SELECT count(*)::int AS n FROM ${s}.blobs WHERE key = ${`c1/${fileId}`} AND size = ${bytes.length}`
  assert.is(stored, 1, 'the bytes are in PostgreSQL, not on node A\'s disk')

  const whole = await fetch(`${b.url}/v1/conversations/c1/files/${fileId}`, { headers: { authorization: bob } })
  assert.is(whole.status, 200)
  assert.is(whole.headers.get('content-length'), String(bytes.length))
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes), 'node B serves every byte')
  const part = await fetch(`${b.url}/v1/conversations/c1/files/${fileId}`, { headers: { authorization: bob, range: 'bytes=262000-700123' } })
  assert.is(part.status, 206)
  assert.is(part.headers.get('content-range'), `bytes 262000-700123/${bytes.length}`)
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(262_000, 700_124)), 'a range across chunks')
  const tail = await fetch(`${b.url}/v1/conversations/c1/files/${fileId}?token=${await cluster.token('bob')}`, { headers: { range: 'bytes=-10' } })
  assert.is(tail.status, 206)
  assert.ok(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(bytes.length - 10)))

  // Alice's message on node B carries the file she uploaded through node A; Bob on A receives it.
  const attachment = { fileId, name: up.body.name, size: up.body.size, contentType: up.body.contentType }
  const onB = connectPeer(b.wsUrl, 'c1', await cluster.token('alice'))
  const onA = connectPeer(a.wsUrl, 'c1', await cluster.token('bob'))
  await Promise.all([onB.synced, onA.synced])
  messagesOf(onB.doc).push([message('m1', 'alice', attachment)])
  await waitFor(() => texts(onA.doc).includes('see file'), 5000, 'the message reaches bob on node A')
  assert.equal(onB.closes, [], 'accepted on node B')
  const record = async (): Promise<{ attachedTo: string | null } | undefined> => {
    const rows = await q`SELECT value FROM ${s}.sections WHERE section = 'files' AND key = ${`v1!f!c1!${fileId}`}`
    return rows[0]?.value as { attachedTo: string | null } | undefined
  }
  await waitUntil(async () => (await record())?.attachedTo === 'm1', 5000, 'the file is marked as carried by m1')

  // Node A knows the file is taken: a second message carrying it is refused there.
  const thief = connectPeer(a.wsUrl, 'c1', await cluster.token('alice'))
  await thief.synced
  messagesOf(thief.doc).push([message('m2', 'alice', attachment)])
  await waitFor(() => thief.closes.length > 0, 5000, 'the second message is refused')
  assert.is(thief.closes[0].code, 4403)
  thief.destroy()

  // Deleting the message through node A deletes the file: node B no longer serves it.
  assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/c1/messages/m1')).status, 204)
  await waitUntil(async () => (await fetch(`${b.url}/v1/conversations/c1/files/${fileId}`, { headers: { authorization: bob } })).status === 404, 5000, 'node B answers 404')
  await waitUntil(async () => (await q`SELECT 1 FROM ${s}.blobs`).length === 0, 5000, 'the blob is gone')
  const [{ n: chunks }] = await q`SELECT count(*)::int AS n FROM ${s}.blob_chunks`
  assert.is(chunks, 0, 'and its chunks')

  onA.destroy()
  onB.destroy()

  // A conversation deleted through node B takes the files uploaded through node A with it.
  const second = await uploadFile(a.url, 'c1', alice, 'more.bin', randomBytes(5_000))
  assert.is(second.status, 201)
  assert.is((await fetch(`${b.url}/v1/conversations/c1/files/${second.body.fileId as string}`, { headers: { authorization: bob } })).status, 200)
  assert.is((await cluster.api(b, 'DELETE', '/v1/conversations/c1')).status, 204)
  await waitUntil(async () => (await q`SELECT 1 FROM ${s}.blobs`).length === 0, 5000, 'the conversation\'s files are gone')
})

F.run()
