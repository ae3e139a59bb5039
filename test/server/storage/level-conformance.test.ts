/**
 * The storage port's conformance suite against LevelStore. Its fail-stop case fills a real,
 * tiny tmpfs (needs root to mount, as disk-full.test.ts; CI runs as root).
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelStore } from '../../../server/storage/level-store.ts'
import { runStoreConformance } from './store-conformance.ts'
import { runOutboxQueueConformance } from './outbox-queue-conformance.ts'

/** Writes zeros into `path` until the file system is full. */
const fill = async (path: string): Promise<void> => {
  const file = await open(path, 'w')
  const chunk = Buffer.alloc(64 * 1024)
  try {
    for (let i = 0; i < 10_000; i++) await file.write(chunk)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  } finally {
    await file.close().catch(() => {})
  }
}

runStoreConformance('LevelStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-conf-'))
  const store = await LevelStore.open(join(dir, 'db'))
  return {
    store,
    async cleanup () {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}, async () => {
  const mnt = await mkdtemp(join(tmpdir(), 'parley-conf-tmpfs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt])
  const store = await LevelStore.open(join(mnt, 'db'))
  const filler = join(mnt, 'filler')
  return {
    store,
    fault: {
      start: async () => { await fill(filler) },
      end: async () => { await rm(filler, { force: true }) }
    },
    async cleanup () {
      await store.close().catch(() => {})
      execFileSync('umount', [mnt])
      await rm(mnt, { recursive: true, force: true })
    }
  }
})

runOutboxQueueConformance('LevelStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-conf-'))
  const store = await LevelStore.open(join(dir, 'db'))
  return {
    store,
    other: store, // one process owns the folder: its own claims are the only ones
    async cleanup () {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
})
