/**
 * Runs every uvu test file under test/ in one process and ends with the plain summary line
 * `N passed, N failed` that CI reads. Exit code 1 when anything failed.
 */
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = fileURLToPath(new URL('.', import.meta.url))
const only = process.argv.slice(2)

const collect = (dir: string): string[] => readdirSync(dir).sort().flatMap(name => {
  const path = join(dir, name)
  if (statSync(path).isDirectory()) return name === 'helpers' ? [] : collect(path)
  return name.endsWith('.test.ts') ? [path] : []
})

const files = collect(root).filter(f => only.length === 0 || only.some(o => relative(root, f).includes(o)))

// uvu reports per file through its global state; `uvu.exec` would re-import, so run the same
// way its CLI does: import each file with autorun off, then execute the queued suites.
const uvu = globalThis as unknown as { UVU_DEFER?: number, UVU_INDEX?: number, UVU_QUEUE?: unknown[][] }
uvu.UVU_DEFER = 1
uvu.UVU_QUEUE = []
const { exec } = await import('uvu')
for (const [i, f] of files.entries()) {
  uvu.UVU_INDEX = i
  uvu.UVU_QUEUE.push([relative(root, f)])
  await import(pathToFileURL(f).href)
}

// Count results from uvu's own summary by wrapping stdout.
let out = ''
const write = process.stdout.write.bind(process.stdout)
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()
  return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest)
}) as typeof process.stdout.write
await exec(false)
process.stdout.write = write
const plain = out.replace(/\x1b\[[0-9;]*m/g, '')
const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0)
const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0)
const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0)
const failed = total - passed - skipped
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`)
process.exit(failed > 0 || process.exitCode === 1 || total === 0 ? 1 : 0)
