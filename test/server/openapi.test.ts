import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readFile } from 'node:fs/promises'
import { startServer } from '../helpers/server.ts'

const OpenApi = suite('OpenAPI description')

/** Method and path (`:param` as `{param}`) of every row of docs/api.md's REST table. */
const documentedRoutes = async (): Promise<Array<{ method: string, path: string }>> => {
  const doc = await readFile(new URL('../../docs/api.md', import.meta.url), 'utf8')
  const table = doc.slice(doc.indexOf('| method and path |'))
  const rows = table.split('\n').slice(2)
  const routes: Array<{ method: string, path: string }> = []
  for (const row of rows) {
    if (!row.startsWith('|')) break
    const cell = row.split('|')[1]
    const path = /(\/v1\/[^\s`?]+)/.exec(cell)?.[1]
    if (path === undefined) continue
    for (const m of cell.matchAll(/\b(GET|PUT|POST|PATCH|DELETE)\b/g)) routes.push({ method: m[1].toLowerCase(), path: path.replace(/:(\w+)/g, '{$1}') })
  }
  return routes
}

OpenApi('GET /v1/openapi.json describes every route of the REST table in docs/api.md, with its body schema', async () => {
  const s = await startServer()
  try {
    const res = await fetch(s.url + '/v1/openapi.json')
    assert.is(res.status, 200)
    const api = await res.json() as { openapi: string, paths: Record<string, Record<string, { requestBody?: unknown, parameters?: Array<{ name: string, in: string }> }>> }
    assert.match(api.openapi, /^3\./)
    const routes = await documentedRoutes()
    assert.ok(routes.length >= 15, `found ${routes.length} routes in docs/api.md`)
    for (const { method, path } of routes) {
      const op = api.paths[path]?.[method]
      assert.ok(op !== undefined, `${method.toUpperCase()} ${path} is missing from the OpenAPI description`)
      for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
        assert.ok(op.parameters?.some(p => p.in === 'path' && p.name === name), `${method.toUpperCase()} ${path} describes its parameter ${name}`)
      }
    }
    assert.ok(api.paths['/v1/conversations/{id}/messages'].post.requestBody !== undefined, 'bodies come from the route schemas')
    assert.is(api.paths['/'], undefined, 'the web UI is not part of the REST description')
  } finally {
    await s.stop()
  }
})

OpenApi.run()
