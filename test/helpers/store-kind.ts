/**
 * One server on either store, for suites that pin behaviour both must have: LevelDB (the
 * embedded default) or PostgreSQL (a schema of its own; what every node of a cluster runs on,
 * e.g. the outbox claims and the shared notification batches).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DocStore } from '../../server/storage/port.ts'
import { PgStore } from '../../server/storage/pg-store.ts'
import { FsBlobStore } from '../../server/storage/fs-blob-store.ts'
import type { ServerConfig } from '../../server/app.ts'
import { startServer, type TestServer } from './server.ts'
import { createTestSchema, type TestSchema } from './postgres.ts'

export type StoreKind = 'LevelDB' | 'PostgreSQL'

export type AnyTestServer = Omit<TestServer, 'store'> & {
  store: DocStore
  /** Its data, to start again on after `stop(true)`. */
  kept: Kept
}

/** Where a server's data stays across a restart: the folder (LevelDB) or the schema (PostgreSQL). */
export interface Kept { dir?: string, schema?: TestSchema }

/** Starts a server on `kind`; with `kept` (of a server stopped with `stop(true)`), on that data again. */
export const startServerOn = async (kind: StoreKind, config: Partial<ServerConfig>, kept: Kept = {}): Promise<AnyTestServer> => {
  if (kind === 'LevelDB') {
    const s = await startServer({ dir: kept.dir, config })
    return { ...s, kept: { dir: s.dir } }
  }
  const schema = kept.schema ?? await createTestSchema()
  const store = await PgStore.open({ url: schema.url, heartbeatMs: 0 })
  const files = await mkdtemp(join(tmpdir(), 'parley-files-'))
  const s = await startServer({ config, deps: { store, blobs: await FsBlobStore.open(files) } })
  return {
    ...s,
    store,
    kept: { schema },
    async stop (keep = false) {
      await s.stop()
      await store.close()
      await rm(files, { recursive: true, force: true })
      if (!keep) await schema.drop()
    }
  }
}
