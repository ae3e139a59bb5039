import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runServer, spawnServer } from '../helpers/process.ts'

const Folder = suite<{ dir: string }>('the data folder')
Folder.before.each(async ctx => { ctx.dir = await mkdtemp(join(tmpdir(), 'parley-folder-')) })
Folder.after.each(async ctx => { await rm(ctx.dir, { recursive: true, force: true }) })

Folder('a second process on a folder in use says another Parley process holds it, in one line, and exits 1', async ({ dir }) => {
  const data = join(dir, 'data')
  const first = await spawnServer(['--port', '0', '--data', data])
  try {
    const second = await runServer(['--port', '0', '--data', data])
    assert.is(second.code, 1)
    assert.is(second.stderr.trim().split('\n').length, 1, second.stderr)
    assert.match(second.stderr, `parley: cannot use data folder ${data}: another Parley process is using it`)
    assert.not.match(second.stderr, /Database failed to open/)
  } finally {
    first.child.kill('SIGTERM')
  }
  assert.is((await first.exited).code, 0, 'the first process is undisturbed and stops cleanly')
})

Folder.run()
