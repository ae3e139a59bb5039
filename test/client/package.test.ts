import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const Package = suite('client package')

Package('the built client is importable as parley/client and parley/client/node in plain Node', () => {
  if (!existsSync(ROOT + 'dist/client/node.js') || !existsSync(ROOT + 'dist/client/ui.js') || !existsSync(ROOT + 'dist/types/client/index.d.ts')) {
    const built = spawnSync(process.execPath, ['--import', 'tsx', 'client/build.ts'], { cwd: ROOT, encoding: 'utf8' })
    assert.is(built.status, 0, built.stderr)
  }
  const script = "import('parley/client/node').then(async n => { const c = await import('parley/client'); " +
    "console.log(typeof n.createSession, typeof n.fileStore, c.ChatError === n.ChatError, new c.ChatError('READ_ONLY').closeCode) })"
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' })
  assert.is(run.status, 0, run.stderr)
  assert.is(run.stdout.trim(), 'function function true 4403')
  // The embeddable UI is its own entry (browser only; importing it in Node touches no DOM).
  const ui = spawnSync(process.execPath, ['--input-type=module', '-e', "import('parley/client/ui').then(u => console.log(typeof u.mountChatbox, typeof u.mountInbox, u.parleyStyles.includes('@scope (.parley)')))"], { cwd: ROOT, encoding: 'utf8' })
  assert.is(ui.status, 0, ui.stderr)
  assert.is(ui.stdout.trim(), 'function function true')
})

Package.run()
