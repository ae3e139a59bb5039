/**
 * Builds the client library for apps that import it as `parley/client` (package.json
 * `exports`): ESM JavaScript in dist/client/ (esbuild; yjs, lib0, y-protocols and ws stay
 * external so the app shares one Yjs) and declarations in dist/types/ (tsc). Run by
 * `npm run build`, which `npm ci` runs through `prepare`.
 */
import { build } from 'esbuild'
import { spawnSync } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

await rm(root + 'dist/client', { recursive: true, force: true })
await rm(root + 'dist/types', { recursive: true, force: true })
await build({
  absWorkingDir: root,
  entryPoints: { index: 'client/index.ts', node: 'client/node.ts', ui: 'client/ui.ts' },
  // The chat UI's stylesheet goes into parley/client/ui as a string (see web/embed.ts).
  loader: { '.css': 'text' },
  outdir: 'dist/client',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  packages: 'external',
  external: ['node:*'],
  logLevel: 'warning'
})
const tsc = spawnSync(process.execPath, [root + 'node_modules/typescript/bin/tsc', '-p', root + 'client/tsconfig.build.json'], { stdio: 'inherit' })
if (tsc.status !== 0) process.exit(tsc.status ?? 1)
