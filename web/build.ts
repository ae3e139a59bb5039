/**
 * Writes the web UI to dist/web/ (index.html with demo sign-in off, app.js), for serving it
 * from elsewhere. The server itself builds the same bundle in memory (server/web/bundle.ts).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildWebAssets } from '../server/web/bundle.ts'

const out = fileURLToPath(new URL('../dist/web/', import.meta.url))
const { html, js } = await buildWebAssets()
await mkdir(out, { recursive: true })
await writeFile(out + 'index.html', html.replace('{{DEMO}}', '0'))
await writeFile(out + 'app.js', js)
