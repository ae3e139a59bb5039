/**
 * Builds the web UI (`web/main.ts` and the client library it imports) into one browser ESM
 * bundle with esbuild, in memory. The server builds it on the first request for `/app.js`;
 * `npm run build` writes the same bundle to `dist/web/` (see `web/build.ts`).
 */
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { scopedStyles } from '../../web/scope-css.ts'

/** The folder holding the web UI sources. */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url))

export interface WebAssets {
  /** The bundled script. */
  js: string
  /** The page's HTML shell, `{{STYLES}}` filled in (web/page.css, then the chat's web/styles.css), `{{DEMO}}` left for the server. */
  html: string
  /** The inlined stylesheet, for the page's Content-Security-Policy (its hash). */
  styles: string
}

const bundle = async (entry: string, minify: boolean): Promise<string> => {
  const result = await build({
    entryPoints: [WEB_DIR + entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify,
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    loader: { '.css': 'text' }
  })
  return result.outputFiles[0]?.text ?? ''
}

export interface ExampleAssets extends WebAssets {
  /** The stylesheet the embedded chat adds to the page at run time (its hash goes in the CSP too). */
  injected: string
}

/** The embedding example (`/embed-example`, demo mode): web/embed-example.{ts,html,css}. */
export const buildEmbedExample = async (): Promise<ExampleAssets> => {
  const [js, template, styles, chat] = await Promise.all([
    bundle('embed-example.ts', true),
    readFile(WEB_DIR + 'embed-example.html', 'utf8'),
    readFile(WEB_DIR + 'embed-example.css', 'utf8'),
    readFile(WEB_DIR + 'styles.css', 'utf8')
  ])
  return { js, html: template.replace('{{STYLES}}', () => styles), styles, injected: scopedStyles(chat) }
}

/** Bundles the UI; throws esbuild's error (with file and line) when the sources do not build. */
export const buildWebAssets = async (opts: { minify?: boolean } = {}): Promise<WebAssets> => {
  const js = await bundle('main.ts', opts.minify ?? true)
  const [template, page, chat] = await Promise.all([
    readFile(WEB_DIR + 'index.html', 'utf8'),
    readFile(WEB_DIR + 'page.css', 'utf8'),
    readFile(WEB_DIR + 'styles.css', 'utf8')
  ])
  const styles = page + chat
  return { js, html: template.replace('{{STYLES}}', () => styles), styles }
}
