/**
 * Builds the web UI (`web/main.ts` and the client library it imports) into one browser ESM
 * bundle with esbuild, in memory. The server builds it on the first request for `/app.js`;
 * `npm run build` writes the same bundle to `dist/web/` (see `web/build.ts`).
 */
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

/** The folder holding the web UI sources. */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url))

export interface WebAssets {
  /** The bundled script. */
  js: string
  /** The page's HTML shell, `{{STYLES}}` filled in, `{{DEMO}}` left for the server. */
  html: string
  /** The inlined stylesheet, for the page's Content-Security-Policy (its hash). */
  styles: string
}

/** Bundles the UI; throws esbuild's error (with file and line) when the sources do not build. */
export const buildWebAssets = async (opts: { minify?: boolean } = {}): Promise<WebAssets> => {
  const result = await build({
    entryPoints: [WEB_DIR + 'main.ts'],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: opts.minify ?? true,
    write: false,
    logLevel: 'silent',
    legalComments: 'none'
  })
  const js = result.outputFiles[0]?.text ?? ''
  const [template, styles] = await Promise.all([
    readFile(WEB_DIR + 'index.html', 'utf8'),
    readFile(WEB_DIR + 'styles.css', 'utf8')
  ])
  return { js, html: template.replace('{{STYLES}}', () => styles), styles }
}
