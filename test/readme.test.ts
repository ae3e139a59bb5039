/**
 * Every JavaScript/TypeScript code block of README.md runs as printed, in order, against the real
 * `parley` process started in a fresh folder as `npm start` would (`--data ./data`, the secret
 * generated there), on port 0. The one substitution, documented in the README: the address
 * `127.0.0.1:1234` becomes the test server's. Each block is saved as a file in
 * test-artifacts/readme/ (inside the package, so `parley/client/node` resolves as in an app that
 * depends on it) and run with that folder as its working directory; it must exit 0 by itself, and
 * print every line its `// prints: …` comments promise.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnServer, type RunningServer } from './helpers/process.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const OUT = join(ROOT, 'test-artifacts', 'readme')
/** A snippet that has not exited by then is killed and fails (it must end by itself). */
const SNIPPET_BOUND_MS = 30_000

interface Snippet { lang: 'js' | 'ts', code: string, line: number }

/** The ```js and ```ts blocks of a Markdown text, in order, with the line each starts on. */
const codeBlocks = (markdown: string): Snippet[] => [...markdown.matchAll(/^```(js|ts)\n([\s\S]*?)^```$/gm)].map(m => ({
  lang: m[1] as 'js' | 'ts',
  code: m[2],
  line: markdown.slice(0, m.index).split('\n').length
}))

const run = async (file: string, cwd: string, lang: 'js' | 'ts'): Promise<{ code: number | null, out: string, err: string }> => {
  const child = spawn(process.execPath, [...(lang === 'ts' ? ['--import', import.meta.resolve('tsx')] : []), file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const bound = setTimeout(() => { err += `\n(killed: still running after ${SNIPPET_BOUND_MS} ms)`; child.kill('SIGKILL') }, SNIPPET_BOUND_MS)
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  clearTimeout(bound)
  return { code, out, err }
}

const Readme = suite<{ dir: string, server: RunningServer }>('README snippets')

Readme.before(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'parley-readme-'))
  ctx.server = await spawnServer(['--port', '0', '--data', join(ctx.dir, 'data')])
  await mkdir(OUT, { recursive: true })
})
Readme.after(async ctx => {
  ctx.server.child.kill('SIGTERM')
  await ctx.server.exited
  await rm(ctx.dir, { recursive: true, force: true })
})

Readme('the README has code blocks to run, and keeps its two set-up commands', async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  assert.ok(codeBlocks(readme).length >= 3)
  assert.ok(readme.includes('```sh\nnpm ci && npm start\n```'))
  assert.ok(readme.includes('```sh\nnpm ci && npm test\n```'))
})

Readme('every js and ts block of the README runs as printed, exits by itself and prints what it promises', async ({ dir, server }) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const address = new URL(server.url).host
  for (const [i, s] of codeBlocks(readme).entries()) {
    const file = join(OUT, `snippet-${i + 1}.${s.lang === 'ts' ? 'mts' : 'mjs'}`)
    await writeFile(file, s.code.replaceAll('127.0.0.1:1234', address))
    const r = await run(file, dir, s.lang)
    const where = `README.md line ${s.line} (${file})`
    assert.is(r.code, 0, `${where} exited ${String(r.code)}:\n${r.err}`)
    for (const m of s.code.matchAll(/\/\/ prints: (.+)$/gm)) {
      assert.ok(r.out.split('\n').includes(m[1].trim()), `${where} did not print ${JSON.stringify(m[1].trim())}; printed:\n${r.out}`)
    }
  }
})

Readme.run()
