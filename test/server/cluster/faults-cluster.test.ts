/**
 * Cluster mode under faults (contract §8, docs/cluster.md "When something fails"): a real Redis
 * killed with -9 and started again mid-conversation (a redis-server of the test's own, never the
 * machine's), REST writes racing on two nodes for a conversation's lock, and a flush that fails
 * after judging (PostgreSQL lost mid-transaction). Real `parley` processes, real PostgreSQL.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { connectPeer, connectRaw, sendMessage, texts, waitFor } from '../../helpers/clients.ts'
import { startCluster, type TestCluster } from '../../helpers/cluster.ts'
import type { TestSchema } from '../../helpers/postgres.ts'
import type { RunningServer } from '../../helpers/process.ts'
import { messagesOf } from '../../../shared/doc.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'
import { PG_URL } from '../../helpers/postgres.ts'

const F = suite<{ cluster?: TestCluster }>('cluster mode under faults')
F.after.each(async ctx => {
  const cluster = ctx.cluster
  ctx.cluster = undefined
  await cluster?.stop()
})

/** Waits for an async condition (generous timeouts: the bound is the promise, not the test). */
const until = async (check: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
  const start = Date.now()
  while (!await check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const freePort = async (): Promise<number> => {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as { port: number }
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

/** A redis-server of this test's own on `port` (nothing saved); resolves once it accepts connections. */
const startRedis = async (port: number): Promise<ChildProcess> => {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ready to accept connections')) resolve()
    })
    child.once('exit', code => reject(new Error(`redis-server exited (${code}):\n${out}`)))
  })
  return child
}

const killHard = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

/** Every message as REST on `node` pages them, oldest first. */
const restMessages = async (cluster: TestCluster, node: RunningServer, conv: string): Promise<Array<{ id: string, text: string, senderId: string | null }>> => {
  const out: Array<{ id: string, text: string, senderId: string | null }> = []
  let before = ''
  for (let page = 0; page < 100; page++) {
    const r = await cluster.api(node, 'GET', `/v1/conversations/${conv}/messages?limit=100${before}`)
    assert.is(r.status, 200, JSON.stringify(r.body))
    out.unshift(...r.body.data)
    if (r.body.hasMore !== true || r.body.data.length === 0) return out
    before = `&before=${encodeURIComponent(r.body.data[0].id)}`
  }
  throw new Error('too many pages')
}

/**
 * Runs `statement` in a transaction of the test's own and keeps it open (holding the locks it
 * took) until `release()`, which rolls it back. `blocked()` counts the nodes' backends waiting
 * for it (directly or behind another waiter); `cancelDirectWaiters()` cancels the statements
 * waiting for it directly.
 */
const holdInTransaction = async (schema: TestSchema, statement: string): Promise<{ release: () => Promise<void>, blocked: () => Promise<number>, cancelDirectWaiters: () => Promise<void> }> => {
  let release!: () => void
  const released = new Promise<void>(resolve => { release = resolve })
  let started!: (pid: number) => void
  const pid = new Promise<number>(resolve => { started = resolve })
  const ROLLBACK = new Error('rollback')
  const done = schema.admin.begin(async tx => {
    const [row] = await tx`SELECT pg_backend_pid() AS pid`
    await tx.unsafe(`SET LOCAL search_path TO "${schema.schema}"`)
    await tx.unsafe(statement)
    started(row.pid as number)
    await released
    throw ROLLBACK
  }).catch(e => { if (e !== ROLLBACK) throw e })
  const holder = await pid
  return {
    async release () {
      release()
      await done
    },
    async cancelDirectWaiters () {
      await schema.admin`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE ${holder}::int = ANY(pg_blocking_pids(pid))`
    },
    async blocked () {
      // Waiters queue behind each other: count those the holder blocks, directly or not.
      const [row] = await schema.admin`
        WITH RECURSIVE w(pid) AS (
          SELECT pid FROM pg_stat_activity WHERE ${holder}::int = ANY(pg_blocking_pids(pid))
          UNION SELECT a.pid FROM pg_stat_activity a JOIN w ON w.pid = ANY(pg_blocking_pids(a.pid)))
        SELECT count(*)::int AS n FROM w`
      return row.n as number
    }
  }
}

F('Redis killed with -9 and started again mid-conversation: nothing acknowledged is lost, peers converge, and what changed meanwhile reaches the other node', async ctx => {
  const port = await freePort()
  let redis = await startRedis(port)
  try {
    const cluster = ctx.cluster = await startCluster(2, { redis: `redis://127.0.0.1:${port}` })
    const [a, b] = cluster.nodes
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/rr', { participants: ['alice', 'bob', 'carol'], guestAccess: 'write' })).status, 201)
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/gone', { participants: ['erin'] })).status, 201)
    const alice = connectPeer(a.wsUrl, 'rr', await cluster.token('alice'))
    const bob = connectPeer(b.wsUrl, 'rr', await cluster.token('bob'))
    const carol = connectPeer(b.wsUrl, 'rr', await cluster.token('carol'))
    const visitor = connectPeer(b.wsUrl, 'rr', await cluster.token('visitor'), { guest: '1' })
    const erin = connectPeer(b.wsUrl, 'gone', await cluster.token('erin'))
    await Promise.all([alice.synced, bob.synced, carol.synced, visitor.synced, erin.synced])
    sendMessage(alice.doc, 'alice', 'before')
    await waitFor(() => texts(bob.doc).includes('before'), 5000, 'bob on B receives alice on A')

    await killHard(redis)
    // Writes on both nodes while Redis is gone: each is acknowledged once PostgreSQL has it.
    for (let i = 0; i < 5; i++) {
      sendMessage(alice.doc, 'alice', `alice ${i}`)
      sendMessage(bob.doc, 'bob', `bob ${i}`)
    }
    // Changes made on A while Redis is gone; their announcements are lost.
    assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/rr/participants/carol')).status, 204)
    assert.is((await cluster.api(a, 'PATCH', '/v1/settings', { maxTextLength: 1234 })).status, 200)
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/rr/bans/visitor', { reason: 'while Redis was down' })).status, 200)
    assert.is((await cluster.api(a, 'DELETE', '/v1/conversations/gone')).status, 204)
    // Document changes and settings reach B from the store, Redis or not.
    await waitFor(() => carol.closes.length > 0, 10_000, 'carol closed on B while Redis is down')
    assert.equal(carol.closes[0], { code: 4403, reason: 'PARTICIPANT_REMOVED' })
    await until(async () => (await cluster.api(b, 'GET', '/v1/settings')).body.maxTextLength === 1234, 10_000, 'the settings on B while Redis is down')

    redis = await startRedis(port)
    const wanted = ['before', ...Array.from({ length: 5 }, (_, i) => [`alice ${i}`, `bob ${i}`]).flat()]
    const converged = (): boolean => wanted.every(t => texts(alice.doc).includes(t) && texts(bob.doc).includes(t))
    await waitFor(() => converged() && visitor.closes.length > 0 && erin.closes.length > 0, 10_000, 'peers converged, the banned guest and the deleted conversation closed on B')
    assert.equal(visitor.closes[0], { code: 4403, reason: 'BANNED' })
    assert.equal(erin.closes[0], { code: 4404, reason: 'CONVERSATION_DELETED' })
    assert.is((await cluster.api(b, 'GET', '/v1/conversations/gone')).status, 404)
    const again = connectRaw(`${b.wsUrl}/rr?guest=1&token=${await cluster.token('visitor')}`)
    assert.equal(await again.closed, { code: 4403, reason: 'BANNED' })

    // Through Redis again, and the same history everywhere.
    sendMessage(bob.doc, 'bob', 'after')
    await waitFor(() => texts(alice.doc).includes('after'), 5000, 'alice on A receives bob on B after Redis is back')
    await waitFor(() => texts(bob.doc).length === texts(alice.doc).length, 5000, 'the same length')
    assert.equal(texts(bob.doc), texts(alice.doc))
    for (const node of [a, b]) assert.equal((await restMessages(cluster, node, 'rr')).map(m => m.text), texts(alice.doc))
    assert.equal([...alice.closes, ...bob.closes], [])
    for (const p of [alice, bob, carol, visitor, erin]) p.destroy()
  } finally {
    const cluster = ctx.cluster
    ctx.cluster = undefined
    await cluster?.stop()
    await killHard(redis)
  }
})

F('a REST edit on node B and a REST delete on node A of one message, racing for the lock: the deleted message never comes back', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/race', { participants: ['alice'] })).status, 201)
  const watcher = connectPeer(b.wsUrl, 'race', await cluster.token('alice'))
  await watcher.synced
  for (let round = 0; round < 3; round++) {
    const posted = await cluster.api(a, 'POST', '/v1/conversations/race/messages', [{ text: `round ${round}`, sender: 'alice', type: 'UserMessage' }])
    assert.is(posted.status, 201)
    const id = posted.body[0].id as string
    assert.is((await cluster.api(b, 'GET', `/v1/conversations/race/messages/${id}`)).status, 200, 'B holds it')
    // Both writes wait for the conversation's lock, each node sure the message is live.
    const lock = await holdInTransaction(cluster.schema, "SELECT last_seq FROM doc_heads WHERE conv = 'race' FOR UPDATE")
    const deleted = cluster.api(a, 'DELETE', `/v1/conversations/race/messages/${id}`)
    const edited = cluster.api(b, 'PATCH', `/v1/conversations/race/messages/${id}`, { text: `edited ${round}` })
    // Handled here too: a failing wait below must report itself, not these requests cut by the teardown.
    for (const p of [deleted, edited]) p.catch(() => {})
    await until(async () => await lock.blocked() >= 2, 10_000, 'both writes wait for the lock')
    await lock.release()
    const [d, e] = await Promise.all([deleted, edited])
    assert.is(d.status, 204, JSON.stringify(d.body))
    // Whichever got the lock first: an edit that came second found nothing (404); one that came
    // first was deleted with the message.
    assert.ok(e.status === 200 || e.status === 404, JSON.stringify(e))
    for (const node of [a, b]) {
      assert.is((await cluster.api(node, 'GET', `/v1/conversations/race/messages/${id}`)).status, 404, 'deleted on every node')
      assert.not.ok((await restMessages(cluster, node, 'race')).some(m => m.id === id))
    }
    await waitFor(() => !messagesOf(watcher.doc).toArray().some(m => m.id === id), 5000, 'and at a peer')
  }
  assert.equal(watcher.closes, [])
  watcher.destroy()
})

/**
 * Node B's flush is stopped after it judged and applied `write` (its insert waits for a row the
 * test holds), while A's write (`meanwhile`, started at once) waits for the conversation's lock
 * B holds. Then B's statement is cancelled: a storage failure after judging (query_canceled is
 * an engine failure, as a connection lost mid-transaction is), and A commits first. B resumes
 * by itself once it proved it can write again.
 */
const failAfterJudging = async (cluster: TestCluster, b: RunningServer, conv: string, write: () => void, meanwhile: () => Promise<void>): Promise<void> => {
  const [head] = await cluster.schema.admin.unsafe(`SELECT last_seq FROM "${cluster.schema.schema}".doc_heads WHERE conv = '${conv}'`)
  const row = await holdInTransaction(cluster.schema, `INSERT INTO doc_log (conv, seq, bytes) VALUES ('${conv}', ${Number(head.last_seq) + 1}, '\\x00')`)
  write()
  await until(async () => await row.blocked() >= 1, 10_000, 'B’s flush waits for the held row, after judging')
  const other = meanwhile()
  other.catch(() => {}) // awaited below
  await until(async () => await row.blocked() >= 2, 10_000, 'A’s write waits for the lock B holds')
  await row.cancelDirectWaiters()
  await row.release()
  await other
  await until(async () => (await cluster.api(b, 'GET', '/healthz')).status === 200, 20_000, 'B resumed by itself')
}

F('a flush that failed after judging is judged again on resume: a message id another node took meanwhile is not stored twice', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/taken', { participants: ['alice', 'bob'] })).status, 201)
  const alice = connectPeer(a.wsUrl, 'taken', await cluster.token('alice'))
  const bob = connectPeer(b.wsUrl, 'taken', await cluster.token('bob'))
  await Promise.all([alice.synced, bob.synced])
  await failAfterJudging(cluster, b, 'taken', () => { sendMessage(bob.doc, 'bob', 'bob’s, judged before alice’s was committed', 'same-id') }, async () => {
    sendMessage(alice.doc, 'alice', 'alice’s, committed first', 'same-id')
    await until(async () => (await restMessages(cluster, a, 'taken')).some(m => m.id === 'same-id'), 20_000, 'alice’s message committed on A')
  })
  // Bob was told to retry (1013); his provider comes back and sends his message again: judged
  // now, against alice's, it is refused as on one node.
  await waitFor(() => bob.closes.some(c => c.code === 4403), 20_000, 'bob’s message judged again')
  assert.ok(bob.closes.slice(0, -1).every(c => c.code === 1013), JSON.stringify(bob.closes))
  assert.equal(bob.closes.at(-1), { code: 4403, reason: 'DUPLICATE_MESSAGE_ID' })
  for (const node of [a, b]) {
    const stored = (await restMessages(cluster, node, 'taken')).filter(m => m.id === 'same-id')
    assert.equal(stored.map(m => m.text), ['alice’s, committed first'], 'one message with that id, the one committed first')
  }
  // B serves the conversation again, from what the store holds.
  const carol = connectPeer(b.wsUrl, 'taken', await cluster.token('alice'))
  await carol.synced
  assert.equal(texts(carol.doc), texts(alice.doc))
  alice.destroy()
  bob.destroy()
  carol.destroy()
})

F('a flush that failed after judging is judged again on resume: the write of a user made a reader meanwhile is not stored', async ctx => {
  const cluster = ctx.cluster = await startCluster(2)
  const [a, b] = cluster.nodes
  assert.is((await cluster.api(a, 'PUT', '/v1/conversations/revoked', { participants: ['alice', 'bob'] })).status, 201)
  const alice = connectPeer(a.wsUrl, 'revoked', await cluster.token('alice'))
  const bob = connectPeer(b.wsUrl, 'revoked', await cluster.token('bob'))
  await Promise.all([alice.synced, bob.synced])
  await failAfterJudging(cluster, b, 'revoked', () => { sendMessage(bob.doc, 'bob', 'judged before the revocation was committed') }, async () => {
    const r = await cluster.api(a, 'PATCH', '/v1/conversations/revoked/participants/bob', { access: 'Read' })
    assert.is(r.status, 200, JSON.stringify(r.body))
  })
  // Bob was told to retry (1013); his provider comes back as a reader and sends his message
  // again: judged now, it is refused as on one node.
  await waitFor(() => bob.closes.some(c => c.code === 4403), 20_000, 'bob’s message judged again')
  assert.ok(bob.closes.slice(0, -1).every(c => c.code === 1013), JSON.stringify(bob.closes))
  assert.equal(bob.closes.at(-1), { code: 4403, reason: 'READ_ONLY' })
  for (const node of [a, b]) {
    assert.not.ok((await restMessages(cluster, node, 'revoked')).some(m => m.text === 'judged before the revocation was committed'), 'never stored')
  }
  // Bob reads through B again, what the store holds.
  sendMessage(alice.doc, 'alice', 'alice after')
  const reader = connectPeer(b.wsUrl, 'revoked', await cluster.token('bob'))
  await waitFor(() => texts(reader.doc).includes('alice after'), 10_000, 'bob reads again through B')
  assert.equal(texts(reader.doc), texts(alice.doc))
  alice.destroy()
  bob.destroy()
  reader.destroy()
})

F('PostgreSQL cut while a flush waits inside its transaction: the node survives, refuses writes meanwhile and resumes by itself', async ctx => {
  const cluster = ctx.cluster = await startCluster(1)
  const pg = new URL(PG_URL)
  const proxy = await startTcpProxy(Number(pg.port || 5432), pg.hostname)
  try {
    const a = cluster.nodes[0]
    const b = await cluster.spawn({ postgres: cluster.schema.urlVia(proxy.port) })
    assert.is((await cluster.api(a, 'PUT', '/v1/conversations/cut-mid', { participants: ['alice', 'bob'] })).status, 201)
    const bob = connectPeer(b.wsUrl, 'cut-mid', await cluster.token('bob'))
    await bob.synced
    const [head] = await cluster.schema.admin.unsafe(`SELECT last_seq FROM "${cluster.schema.schema}".doc_heads WHERE conv = 'cut-mid'`)
    const row = await holdInTransaction(cluster.schema, `INSERT INTO doc_log (conv, seq, bytes) VALUES ('cut-mid', ${Number(head.last_seq) + 1}, '\\x00')`)
    const sent = sendMessage(bob.doc, 'bob', 'sent while B’s flush waits')
    await until(async () => await row.blocked() >= 1, 10_000, 'B’s flush waits inside its transaction')
    // The connection dies under the waiting transaction (the client library then writes its
    // ROLLBACK to a closed socket: upstream porsager/postgres#1154).
    await proxy.stop()
    await row.release()
    await waitFor(() => bob.closes.some(c => c.code === 1013), 10_000, 'bob asked to retry later')
    assert.is(b.child.exitCode, null, `B is still running:\n${b.output().slice(-2000)}`)
    assert.is((await cluster.api(b, 'GET', '/healthz')).status, 503)
    await proxy.start()
    await until(async () => (await cluster.api(b, 'GET', '/healthz')).status === 200, 20_000, 'B resumed by itself')
    await until(async () => (await restMessages(cluster, a, 'cut-mid')).some(m => m.id === sent.id), 20_000, 'bob’s message, sent again, stored')
    assert.is(b.child.exitCode, null)
    bob.destroy()
  } finally {
    await proxy.start()
    ctx.cluster = undefined
    await cluster.stop()
    await proxy.stop()
  }
})

F.run()
