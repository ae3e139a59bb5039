import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runServer, spawnServer } from '../helpers/process.ts'
import { logFormatFor } from '../../server/log.ts'

const Logs = suite<{ dir: string }>('process logs')
Logs.before.each(async ctx => { ctx.dir = await mkdtemp(join(tmpdir(), 'parley-logs-')) })
Logs.after.each(async ctx => { await rm(ctx.dir, { recursive: true, force: true }) })

/** Starts the process, waits for its start line, stops it; returns what it printed. */
const startAndStop = async (dir: string, env: Record<string, string>): Promise<string> => {
  const s = await spawnServer(['--port', '0', '--data', join(dir, 'data')], env)
  s.child.kill('SIGTERM')
  assert.is((await s.exited).code, 0)
  return s.output()
}

Logs('pretty on a terminal, JSON otherwise, unless PARLEY_LOG_FORMAT says which', () => {
  assert.is(logFormatFor(undefined, true), 'pretty')
  assert.is(logFormatFor(undefined, false), 'json')
  assert.is(logFormatFor('json', true), 'json')
  assert.is(logFormatFor('pretty', false), 'pretty')
  assert.is(logFormatFor('xml', false), null)
})

Logs('--help names the logging variables', async () => {
  const r = await runServer(['--help'])
  assert.match(r.stdout, /PARLEY_LOG_FORMAT/)
  assert.match(r.stdout, /PARLEY_LOG_LEVEL/)
})

Logs('as JSON, demo mode is announced by one warn line (level 40) and every line is JSON', async ({ dir }) => {
  const out = await startAndStop(dir, {})
  const lines = out.trim().split('\n').map(l => JSON.parse(l) as { level: number, msg: string })
  const demo = lines.filter(l => /demo/i.test(l.msg))
  assert.is(demo.length, 1)
  assert.is(demo[0].level, 40)
  assert.match(demo[0].msg, /DEMO MODE: the web UI can sign in as ANY user/)
})

Logs('pretty logs are readable lines with the level in words', async ({ dir }) => {
  const out = await startAndStop(dir, { PARLEY_LOG_FORMAT: 'pretty' })
  assert.ok(!out.split('\n').some(l => l.startsWith('{')), out)
  assert.match(out, /WARN: DEMO MODE: the web UI can sign in as ANY user/)
  assert.match(out, /INFO: listening on http:\/\/127\.0\.0\.1:\d+/)
  assert.match(out, /INFO: stopped/)
})

Logs.run()
