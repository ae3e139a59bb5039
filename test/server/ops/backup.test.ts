import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { createAuthenticator } from '../../../server/auth.ts'
import { backupDataFolder } from '../../../server/ops/backup.ts'
import { checkBackupFile, checkDataFolder } from '../../../server/ops/check.ts'
import { writeServerInfo } from '../../../server/server-info.ts'
import { messagesOf } from '../../../shared/doc.ts'
import { connectPeer, sendMessage, waitFor } from '../../helpers/clients.ts'
import { runOps, spawnServer } from '../../helpers/process.ts'
import { startServer, UNLIMITED_RATE, TEST_SECRET, type TestServer } from '../../helpers/server.ts'
import { PNG_1X1, uploadFile } from '../../helpers/uploads.ts'
import { createHash, randomBytes } from 'node:crypto'

const Backup = suite<{ dir: string }>('backup, restore and check')
Backup.before.each(async ctx => { ctx.dir = await mkdtemp(join(tmpdir(), 'parley-backup-')) })
Backup.after.each(async ctx => { await rm(ctx.dir, { recursive: true, force: true }) })

const admin = { authorization: `Bearer ${TEST_SECRET}`, 'content-type': 'application/json' }

/** Every message text of c1 over REST, oldest first. */
const allTexts = async (s: TestServer): Promise<string[]> => {
  const out: string[] = []
  let before: string | undefined
  for (let guard = 0; guard < 1000; guard++) {
    const r = await s.api('GET', `/v1/conversations/c1/messages?limit=100${before === undefined ? '' : `&before=${before}`}`)
    assert.is(r.status, 200)
    out.unshift(...r.body.data.map((m: { text: string }) => m.text))
    if (!r.body.hasMore) return out
    before = r.body.data[0].id
  }
  throw new Error('paging did not end')
}

Backup('a backup of a running server during a burst of writes holds everything acknowledged before it began', async ({ dir }) => {
  const data = join(dir, 'data')
  const srv = await spawnServer(['--port', '0', '--data', data, '--secret', TEST_SECRET, '--demo', 'off'])
  const post = async (path: string, method: string, body: unknown): Promise<Response> =>
    await fetch(srv.url + path, { method, headers: admin, body: JSON.stringify(body) })
  try {
    assert.is((await post('/v1/conversations/c1', 'PUT', { participants: ['alice', 'bob'] })).status, 201)
    assert.is((await post('/v1/settings', 'PATCH', UNLIMITED_RATE)).status, 200)
    const auth = createAuthenticator(TEST_SECRET)
    const writer = connectPeer(srv.wsUrl, 'c1', await auth.signUserToken('alice', 3600))
    const observer = connectPeer(srv.wsUrl, 'c1', await auth.signUserToken('bob', 3600))
    await Promise.all([writer.synced, observer.synced])

    // REST: acknowledged = answered 201. Sync: acknowledged = seen by another peer (the server
    // forwards only what it stored).
    const restAcked: string[] = []
    let stop = false
    const restWriter = async (w: number): Promise<void> => {
      for (let i = 0; i < 400 && !stop; i++) {
        const text = `rest-${w}-${i}`
        const res = await post('/v1/conversations/c1/messages', 'POST', [{ text, sender: 'alice', type: 'UserMessage' }])
        assert.is(res.status, 201)
        restAcked.push(text)
      }
    }
    const syncWriter = async (): Promise<void> => {
      for (let i = 0; i < 400 && !stop; i++) {
        sendMessage(writer.doc, 'alice', `sync-${i}`)
        await new Promise(resolve => setTimeout(resolve, 2))
      }
    }
    const writers = [restWriter(0), restWriter(1), syncWriter()]
    await waitFor(() => restAcked.length >= 40 && messagesOf(observer.doc).length >= 80, 20000, 'writes under way')
    const ackedBefore = [...restAcked, ...messagesOf(observer.doc).toArray().map(m => m.text)]
    const file = join(dir, 'running.parleybk')
    const res = await runOps('backup', ['--data', data, '--to', file, '--secret', TEST_SECRET, '--url', srv.url])
    stop = true
    await Promise.all(writers)
    assert.is(res.code, 0, res.stderr)
    assert.match(res.stdout, 'from the running server')
    writer.destroy()
    observer.destroy()

    const restored = join(dir, 'restored')
    const r = await runOps('restore', ['--from', file, '--data', join(restored, 'db')])
    assert.is(r.code, 0, r.stderr)
    const c = await runOps('check', ['--data', join(restored, 'db')])
    assert.is(c.code, 0, c.stdout + c.stderr)
    assert.match(c.stdout, 'OK')

    const s = await startServer({ dir: restored })
    try {
      const texts = new Set(await allTexts(s))
      const missing = ackedBefore.filter(t => !texts.has(t))
      assert.equal(missing, [], 'every write acknowledged before the backup began is in it')
    } finally {
      await s.stop()
    }
  } finally {
    srv.child.kill('SIGTERM')
    await srv.exited
  }
})

Backup('the tool finds the server through server.json, and backs up the folder itself once the server is gone', async ({ dir }) => {
  const s = await startServer({ dir, settings: UNLIMITED_RATE })
  const data = join(dir, 'db')
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'before', sender: 'alice', type: 'UserMessage' }])
  await writeServerInfo(data, s.url)
  await writeFile(join(data, 'secret'), TEST_SECRET + '\n')
  const first = await backupDataFolder({ data, to: join(dir, 'a.parleybk') })
  assert.is(first.via, 'server')
  assert.ok(first.entries > 0)
  // Admins only.
  const denied = await s.api('GET', '/v1/admin/backup', undefined, `Bearer ${await s.token('alice')}`)
  assert.is(denied.status, 403)
  assert.is(denied.body.error.code, 'ADMIN_REQUIRED')
  await s.stop(true)

  // server.json is stale now: nobody answers there.
  const second = await backupDataFolder({ data, to: join(dir, 'b.parleybk') })
  assert.is(second.via, 'folder')
  const report = await checkBackupFile(join(dir, 'b.parleybk'))
  assert.ok(report.ok, report.problems.join('\n'))
  assert.is(report.counts.conversations, 1)
  assert.is(report.documents, 1)
  // Nothing but the finished files is left.
  assert.equal((await readdir(dir)).filter(n => n.endsWith('.parleybk') || n.includes('partial')).sort(), ['a.parleybk', 'b.parleybk'])
})

Backup('restore refuses a folder that is not empty, with one line, and leaves it alone', async ({ dir }) => {
  const s = await startServer({ dir, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/users/alice', { name: 'Alice' })
  await s.stop(true)
  const file = join(dir, 'x.parleybk')
  assert.is((await runOps('backup', ['--data', join(dir, 'db'), '--to', file])).code, 0)
  const target = join(dir, 'busy')
  await mkdir(target)
  await writeFile(join(target, 'keep.txt'), 'mine')
  const r = await runOps('restore', ['--from', file, '--data', target])
  assert.is(r.code, 1)
  assert.match(r.stderr, 'not empty')
  assert.is(r.stderr.trim().split('\n').length, 1)
  assert.equal(await readdir(target), ['keep.txt'])
  // An empty folder is fine.
  const empty = join(dir, 'empty')
  await mkdir(empty)
  assert.is((await runOps('restore', ['--from', file, '--data', empty])).code, 0)
  assert.ok((await checkDataFolder(empty)).ok)
})

Backup('check finds a damaged or cut backup, and restore of it leaves nothing behind', async ({ dir }) => {
  const s = await startServer({ dir, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  for (let i = 0; i < 5; i++) await s.api('POST', '/v1/conversations/c1/messages', [{ text: `m${i}`, sender: 'alice', type: 'UserMessage' }])
  await s.stop(true)
  const file = join(dir, 'good.parleybk')
  assert.is((await runOps('backup', ['--data', join(dir, 'db'), '--to', file])).code, 0)
  const ok = await runOps('check', ['--backup', file])
  assert.is(ok.code, 0, ok.stdout)

  const bytes = await readFile(file)
  const flipped = Buffer.from(bytes)
  flipped[Math.floor(bytes.length / 2)] ^= 0x04
  await writeFile(join(dir, 'flipped.parleybk'), flipped)
  const bad = await runOps('check', ['--backup', join(dir, 'flipped.parleybk')])
  assert.is(bad.code, 1)
  assert.match(bad.stdout, /problem: .*(checksum mismatch|damaged)/)

  await writeFile(join(dir, 'cut.parleybk'), bytes.subarray(0, bytes.length - 40))
  const cut = await runOps('check', ['--backup', join(dir, 'cut.parleybk')])
  assert.is(cut.code, 1)
  assert.match(cut.stdout, 'incomplete')

  const r = await runOps('restore', ['--from', join(dir, 'flipped.parleybk'), '--data', join(dir, 'r')])
  assert.is(r.code, 1)
  await stat(join(dir, 'r')).then(() => assert.unreachable('a damaged backup left a folder'), () => {})
  assert.equal((await readdir(dir)).filter(n => n.includes('restoring')), [])
})

Backup('check reads every archive page and finds a damaged archive entry', async ({ dir }) => {
  const s = await startServer({ dir, config: { historyWindow: 5, archiveChunk: 5 }, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  for (let i = 0; i < 4; i++) {
    const batch = Array.from({ length: 10 }, (_, j) => ({ text: `m${i * 10 + j}`, sender: 'alice', type: 'UserMessage' }))
    assert.is((await s.api('POST', '/v1/conversations/c1/messages', batch)).status, 201)
  }
  await s.stop(true)
  const data = join(dir, 'db')
  const good = await checkDataFolder(data)
  assert.ok(good.ok, good.problems.join('\n'))
  assert.ok(good.counts.archivedMessages > 0, 'some messages were archived')
  assert.is(good.counts.conversations, 1)

  const db = new Level<string, string>(data)
  await db.open()
  const archived: string[] = []
  for await (const key of db.keys({ gte: '!json!v1!arch!', lt: '!json!v1!arch"' })) archived.push(key)
  await db.put(archived[0], '{"id": "m0", "text": ')
  await db.put('!json!v1!archid!c1!ghost', '3')
  await db.close()

  const r = await runOps('check', ['--data', data])
  assert.is(r.code, 1)
  assert.match(r.stdout, `json v1!arch!c1!${archived[0].split('!').pop() ?? ''}: value is not JSON`)
  assert.match(r.stdout, 'archid index entries point at no archived message')
})

Backup('a backup holds the uploaded files (from the running server and from the folder); restore puts them back and check verifies them', async ({ dir }) => {
  const s = await startServer({ dir, settings: UNLIMITED_RATE })
  const data = join(dir, 'db')
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  const alice = `Bearer ${await s.token('alice')}`
  const pic = (await uploadFile(s.url, 'c1', alice, 'pic.png', PNG_1X1)).body
  const attachment = { fileId: pic.fileId, name: pic.name, size: pic.size, contentType: pic.contentType }
  assert.is((await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'look', sender: 'alice', type: 'UserMessage', attachment }])).status, 201)
  const bigBytes = randomBytes(300_000)
  const big = (await uploadFile(s.url, 'c1', alice, 'data.bin', bigBytes)).body
  // A file whose message was deleted is gone, and in no backup.
  const gone = (await uploadFile(s.url, 'c1', alice, 'gone.bin', randomBytes(1000))).body
  const sent = await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'oops', sender: 'alice', type: 'UserMessage', attachment: { fileId: gone.fileId, name: gone.name, size: gone.size, contentType: gone.contentType } }])
  assert.is((await s.api('DELETE', `/v1/conversations/c1/messages/${sent.body[0].id as string}`)).status, 204)
  await s.server.files.settled()
  await writeServerInfo(data, s.url)
  await writeFile(join(data, 'secret'), TEST_SECRET + '\n')

  const fromServer = await runOps('backup', ['--data', data, '--to', join(dir, 'server.parleybk')])
  assert.is(fromServer.code, 0, fromServer.stderr)
  assert.match(fromServer.stdout, /entries, 2 files, .*\(from the running server\)/, fromServer.stdout)
  await s.stop(true)
  const fromFolder = await backupDataFolder({ data, to: join(dir, 'folder.parleybk') })
  assert.is(fromFolder.via, 'folder')
  assert.is(fromFolder.files, 2)

  for (const name of ['server', 'folder']) {
    const restored = join(dir, `restored-${name}`)
    const r = await runOps('restore', ['--from', join(dir, `${name}.parleybk`), '--data', join(restored, 'db')])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /and 2 files from/)
    const c = await runOps('check', ['--data', join(restored, 'db')])
    assert.is(c.code, 0, c.stdout + c.stderr)
    assert.match(c.stdout, 'files 2,')
    const again = await startServer({ dir: restored })
    try {
      const get = async (fileId: string, range?: string): Promise<Response> =>
        await fetch(`${again.url}/v1/conversations/c1/files/${fileId}`, { headers: { authorization: `Bearer ${await again.token('alice')}`, ...(range === undefined ? {} : { range }) } })
      assert.ok(Buffer.from(await (await get(pic.fileId)).arrayBuffer()).equals(PNG_1X1), `${name}: the attached image`)
      assert.ok(Buffer.from(await (await get(big.fileId)).arrayBuffer()).equals(bigBytes), `${name}: the large file`)
      const part = await get(big.fileId, 'bytes=100000-100099')
      assert.is(part.status, 206)
      assert.ok(Buffer.from(await part.arrayBuffer()).equals(bigBytes.subarray(100_000, 100_100)))
      assert.is((await get(gone.fileId)).status, 404)
      assert.is((await again.server.files.get('c1', pic.fileId))?.attachedTo !== null, true, 'still carried by its message')
    } finally {
      await again.stop(true)
    }
  }
  const checked = await checkBackupFile(join(dir, 'folder.parleybk'))
  assert.ok(checked.ok, checked.problems.join('\n'))
  assert.is(checked.counts.files, 2)

  // check finds a file whose bytes are lost.
  await rm(join(dir, 'restored-folder', 'db', 'files', '_c1', `_${big.fileId as string}`))
  const lost = await runOps('check', ['--data', join(dir, 'restored-folder', 'db')])
  assert.is(lost.code, 1)
  assert.match(lost.stdout, `problem: file c1/${big.fileId as string}: its bytes are missing (300000 bytes recorded)`)
})

Backup('a backup file of format version 1 (before files were included) still restores', async ({ dir }) => {
  const s = await startServer({ dir, settings: UNLIMITED_RATE })
  await s.api('PUT', '/v1/conversations/c1', { participants: ['alice'] })
  await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'old', sender: 'alice', type: 'UserMessage' }])
  await s.stop(true)
  const v2 = join(dir, 'v2.parleybk')
  assert.is((await runOps('backup', ['--data', join(dir, 'db'), '--to', v2])).code, 0)
  // Version 1 is version 2 without file records: the same bytes with version 1 and its checksum.
  const bytes = await readFile(v2)
  const body = Buffer.from(bytes.subarray(0, bytes.length - 32))
  assert.is(body.readUInt16LE(8), 2)
  body.writeUInt16LE(1, 8)
  await writeFile(join(dir, 'v1.parleybk'), Buffer.concat([body, createHash('sha256').update(body).digest()]))
  const r = await runOps('restore', ['--from', join(dir, 'v1.parleybk'), '--data', join(dir, 'r', 'db')])
  assert.is(r.code, 0, r.stderr)
  const again = await startServer({ dir: join(dir, 'r') })
  try {
    assert.equal(await allTexts(again), ['old'])
  } finally {
    await again.stop(true)
  }
})

Backup.run()
