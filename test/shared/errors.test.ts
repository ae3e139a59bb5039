import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ERRORS, ChatError, isErrorCode } from '../../shared/errors.ts'

test('every error code is documented in docs/errors.md with its status and close code', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  const rows = new Map<string, [number, number]>()
  for (const m of doc.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (\d+) \|/gm)) rows.set(m[1], [Number(m[2]), Number(m[3])])
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.equal(rows.get(code), [spec.status, spec.closeCode], code)
  }
  assert.is(rows.size, Object.keys(ERRORS).length, 'no documented code is missing from the registry')
})

test('every registered code is raised somewhere (named in the code of the server, client, web UI or shared code)', () => {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const sources = (dir: string): string[] => readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : name.endsWith('.ts') ? [path] : []
  })
  const code = ['server', 'client', 'web', 'shared'].flatMap(d => sources(join(root, d)))
    .filter(f => f !== join(root, 'shared', 'errors.ts'))
    .map(f => readFileSync(f, 'utf8')).join('\n')
  for (const name of Object.keys(ERRORS)) assert.ok(code.includes(`'${name}'`), `${name} is registered but never raised`)
})

test('close codes follow the contract: 44xx for refusals (4429 rate limits), 1001, 1011 and 1013 (try again later) otherwise', () => {
  const allowed = new Set([4400, 4401, 4403, 4404, 4409, 4413, 4429, 1001, 1011, 1013])
  for (const [code, spec] of Object.entries(ERRORS)) assert.ok(allowed.has(spec.closeCode), code)
})

test('a ChatError carries its code, status and close code', () => {
  const e = new ChatError('PARTICIPANT_LIMIT')
  assert.is(e.status, 409)
  assert.is(e.closeCode, 4409)
  assert.equal(e.toJSON(), { code: 'PARTICIPANT_LIMIT', message: ERRORS.PARTICIPANT_LIMIT.message })
  assert.ok(isErrorCode('INVALID_ID'))
  assert.not.ok(isErrorCode('toString'))
})

test.run()
