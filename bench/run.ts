/**
 * `npm run bench`: runs every benchmark in turn, each in its own process, and prints their
 * reports. A benchmark never asserts: it measures and prints (see docs/benchmarks.md).
 *
 *   npm run bench                 all of them
 *   npm run bench -- history      only those whose name contains "history"
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const BENCHES = ['judge', 'history', 'storage', 'guests', 'many-rooms', 'search', 'abuse', 'cluster']
const only = process.argv.slice(2)
let failed = 0
for (const name of BENCHES) {
  if (only.length > 0 && !only.some(o => name.includes(o))) continue
  const file = `bench/${name}.ts`
  if (!existsSync(`${root}/${file}`)) continue
  process.stdout.write(`\n# ${name}  (node --expose-gc --import tsx ${file})\n`)
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', file], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) failed++
}
process.exit(failed > 0 ? 1 : 0)
