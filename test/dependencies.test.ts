import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import semver from 'semver'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** What ships and runs: the server, the client library, shared code, the web UI and the command. */
const RUNTIME = ['server', 'client', 'shared', 'web', 'bin']
/** Dependencies run by the install itself (`postinstall`), never imported. */
const INSTALL_TOOLS = ['patch-package']

const sources = (dir: string): string[] => readdirSync(dir).flatMap(name => {
  const path = join(dir, name)
  if (statSync(path).isDirectory()) return sources(path)
  return /\.(ts|js)$/.test(name) ? [path] : []
})

/** Package names imported (statically or dynamically) by a source file. */
const importsOf = (file: string): string[] => [...readFileSync(file, 'utf8').matchAll(/(?:\bfrom|\bimport)\s*\(?\s*'(@?[a-z0-9][a-z0-9._/:-]*)'/g)]
  .map(m => m[1])
  .filter(s => !s.startsWith('node:'))
  .map(s => s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0])

test('runtime code imports only dependencies, and every dependency is used at runtime (tests use devDependencies)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  const used = new Set(RUNTIME.flatMap(d => sources(join(ROOT, d))).flatMap(importsOf))
  for (const name of used) assert.ok(name in pkg.dependencies, `${name} is imported by runtime code but is not a dependency`)
  for (const name of Object.keys(pkg.dependencies)) assert.ok(used.has(name) || INSTALL_TOOLS.includes(name), `${name} is a dependency that no runtime code imports`)
})

test('the install applies the patches of patches/ (postgres: a write to a closed socket no longer crashes the process)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.is(pkg.scripts.postinstall, 'patch-package')
  for (const dir of ['src', 'cjs/src']) {
    assert.match(readFileSync(join(ROOT, 'node_modules/postgres', dir, 'connection.js'), 'utf8'), 'porsager/postgres#1154', `postgres/${dir} is patched`)
  }
})

interface LockEntry { version: string, engines?: { node?: string }, hasInstallScript?: boolean }
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }
const installed = Object.entries(lock.packages).filter(([path]) => path !== '').map(([path, entry]) => ({ name: path.slice(path.lastIndexOf('node_modules/') + 13), ...entry }))

test('every locked package accepts the oldest Node that package.json promises, and this one (npm ci warns of none)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }
  const floor = semver.minVersion(pkg.engines.node)
  assert.ok(floor !== null)
  for (const p of installed) {
    if (p.engines?.node === undefined) continue
    assert.ok(semver.satisfies(floor, p.engines.node), `${p.name}@${p.version} needs node ${p.engines.node}, past the floor ${floor.version}`)
    assert.ok(semver.satisfies(process.version, p.engines.node), `${p.name}@${p.version} needs node ${p.engines.node}`)
  }
})

test('every install script in the lockfile is reviewed in package.json allowScripts (npm ci warns of none)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> }
  const reviewed = Object.keys(pkg.allowScripts ?? {})
  for (const p of installed.filter(e => e.hasInstallScript === true)) {
    assert.ok(reviewed.includes(p.name) || reviewed.includes(`${p.name}@${p.version}`), `${p.name}@${p.version} has an install script that allowScripts does not mention`)
  }
})

test.run()
