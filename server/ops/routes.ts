/**
 * REST: `GET /v1/admin/backup` (admin only) streams a backup file (format in `format.ts`) of
 * the whole store, taken from one LevelDB snapshot while the server goes on writing, with the
 * uploaded files its records name (`backup-files.ts`); the files' life cycle waits meanwhile,
 * so none of them is deleted before it is copied. This is how
 * `npm run backup` copies a data folder whose LevelDB lock the running server holds.
 * Registered only when the store can list its raw entries (`BackupSource`); otherwise the route
 * does not exist (404).
 */
import type { FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { requireAdmin } from '../rest/permissions.ts'
import { principalOf, type RestDeps } from '../rest/deps.ts'
import { VERSION } from '../storage/keys.ts'
import { encodeBackupWithFiles } from './backup-files.ts'

/** A store that can list every raw entry from one snapshot (LevelStore, and wrappers that forward it). */
export interface BackupSource {
  rawEntries (): AsyncIterable<[Uint8Array, Uint8Array]>
}

/** Whether a store (or a wrapper forwarding it) offers `rawEntries`. */
export const isBackupSource = (store: unknown): store is BackupSource =>
  typeof (store as { rawEntries?: unknown } | null)?.rawEntries === 'function'

/** Where the running server serves its backup stream. */
export const BACKUP_PATH = '/v1/admin/backup'

/** Adds `GET /v1/admin/backup` when the store is a BackupSource. */
export const registerBackupRoutes = (app: FastifyInstance, deps: RestDeps): void => {
  const store = deps.store
  if (!isBackupSource(store)) return
  app.get(BACKUP_PATH, async (req, reply) => {
    requireAdmin(await principalOf(deps, req))
    // No file is deleted from the snapshot on until the response is over (sent, failed or cut).
    const release = await deps.files.hold()
    reply.raw.once('close', release)
    try {
      const entries = store.rawEntries()
      const createdAt = deps.now()
      void reply
        .header('content-type', 'application/octet-stream')
        .header('content-disposition', `attachment; filename="parley-${new Date(createdAt).toISOString().replace(/[:.]/g, '-')}.parleybk"`)
        .header('cache-control', 'no-store')
      return await reply.send(Readable.from(encodeBackupWithFiles(entries, deps.files.blobs, { createdAt, layout: VERSION })))
    } catch (e) {
      release()
      throw e
    }
  })
}
