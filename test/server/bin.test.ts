import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnServer } from '../helpers/process.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const Bin = suite('the parley command (package.json bin)')

Bin('package.json bin points at a JavaScript file that runs by its shebang', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }
  assert.is(pkg.bin.parley, 'bin/parley.js')
  const r = spawnSync(join(ROOT, pkg.bin.parley), ['--help'], { cwd: tmpdir(), encoding: 'utf8' })
  assert.is(r.status, 0, r.stderr)
  assert.match(r.stdout, /^Usage: parley \[options\]/)
  assert.match(r.stdout, /--port PORT/)
})

Bin('npx parley --help prints the help in the project folder', () => {
  const r = spawnSync('npx', ['--no-install', 'parley', '--help'], { cwd: ROOT, encoding: 'utf8' })
  assert.is(r.status, 0, r.stderr)
  assert.match(r.stdout, /^Usage: parley \[options\]/)
})

Bin('the command starts the server and stops it cleanly on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-bin-'))
  try {
    const s = await spawnServer(['--port', '0', '--data', join(dir, 'data')], {}, [join(ROOT, 'bin/parley.js')])
    assert.equal(await (await fetch(s.url + '/healthz')).json(), { ok: true })
    s.child.kill('SIGTERM')
    assert.is((await s.exited).code, 0)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

Bin.run()
