/**
 * Acknowledged means on disk: the real process under strace, counting the sync calls LevelDB
 * makes while REST writes are acknowledged, with the default and with `--fsync off`.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnServer } from '../../helpers/process.ts'

const Fsync = suite('storage: fsync')
const SECRET = 'fsync-secret-0123456789abc'
const WRITES = 20

const syncCalls = async (trace: string): Promise<number> =>
  (await readFile(trace, 'utf8')).split('\n').filter(l => /\b(fsync|fdatasync)\(/.test(l) && !l.includes('resumed>')).length

/** Sync calls made while `WRITES` REST writes were acknowledged one after the other. */
const syncsPerWrites = async (flags: string[], search = false): Promise<number> => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-fsync-'))
  const trace = join(dir, 'trace')
  const server = await spawnServer(['--port', '0', '--data', join(dir, 'data'), '--secret', SECRET, '--demo', 'off', ...flags], {},
    undefined, ['strace', '-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', trace])
  try {
    const call = async (method: string, path: string, body: unknown): Promise<number> => (await fetch(server.url + path, {
      method, headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' }, body: JSON.stringify(body)
    })).status
    assert.is(await call('PUT', '/v1/conversations/c1', { participants: ['alice'] }), 201)
    const before = await syncCalls(trace)
    for (let i = 0; i < WRITES; i++) {
      assert.is(await call('POST', '/v1/conversations/c1/messages', [{ text: `m${i}`, sender: 'alice', type: 'UserMessage' }]), 201)
      // A search expands the index's log at once: that write is redone from the log, never synced on its own.
      if (search) assert.is((await fetch(`${server.url}/v1/conversations/c1/messages?q=m${i}`, { headers: { authorization: `Bearer ${SECRET}` } })).status, 200)
    }
    return (await syncCalls(trace)) - before
  } finally {
    // strace ignores SIGTERM while tracing: stop the server it runs (its child) instead.
    execFileSync('pkill', ['-TERM', '-P', String(server.child.pid)])
    await server.exited
    await rm(dir, { recursive: true, force: true })
  }
}

Fsync('by default every acknowledged write was synced to disk first', async () => {
  const syncs = await syncsPerWrites([])
  assert.ok(syncs >= WRITES, `${syncs} sync calls for ${WRITES} acknowledged writes`)
})

Fsync('the search index costs no sync per message: its log entry rides in the message\'s batch, its expansion is not synced', async () => {
  const without = await syncsPerWrites([])
  const withSearch = await syncsPerWrites([], true)
  assert.ok(withSearch - without < WRITES / 4, `${withSearch} sync calls with a search after each of ${WRITES} writes, ${without} without`)
})

Fsync('--fsync off acknowledges writes without syncing them', async () => {
  const syncs = await syncsPerWrites(['--fsync', 'off'])
  assert.ok(syncs < WRITES / 4, `${syncs} sync calls for ${WRITES} acknowledged writes`)
})

Fsync.run()
