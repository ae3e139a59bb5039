/**
 * The browser's local store: IndexedDB (database `parley`, stores `updates` keyed by
 * [docKey, seq] and `meta` keyed by docKey), with the Web Locks API making each claim
 * exclusive across tabs. See `storage.ts` for what is kept and why.
 */
import type { ClientStore, LocalDoc, LocalMeta } from './storage.ts'

const DB_VERSION = 1

const req = async <T>(r: IDBRequest<T>): Promise<T> => await new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result)
  r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'))
})

const done = async (tx: IDBTransaction): Promise<void> => await new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve()
  tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'))
  tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'))
})

const openDb = async (name: string): Promise<IDBDatabase> => {
  const r = indexedDB.open(name, DB_VERSION)
  r.onupgradeneeded = () => {
    const db = r.result
    if (!db.objectStoreNames.contains('updates')) db.createObjectStore('updates')
    if (!db.objectStoreNames.contains('meta')) db.createObjectStore('meta')
  }
  return await req(r)
}

/** Holds a Web Lock until `release` is called; null when another tab holds it. */
const takeLock = async (name: string): Promise<(() => void) | null> => {
  if (typeof navigator === 'undefined' || navigator.locks === undefined) return () => {}
  return await new Promise(resolve => {
    void navigator.locks.request(name, { ifAvailable: true }, async lock => {
      if (lock === null) { resolve(null); return }
      await new Promise<void>(release => resolve(release))
    })
  })
}

/** An IndexedDB-backed store (browser only). */
export const indexedDbStore = (dbName = 'parley'): ClientStore => {
  let db: Promise<IDBDatabase> | null = null
  return {
    async claim (key) {
      const unlock = await takeLock(`${dbName}:${key}`)
      if (unlock === null) return null
      db ??= openDb(dbName)
      const d = await db
      const range = IDBKeyRange.bound([key, 0], [key, Number.MAX_SAFE_INTEGER])
      let seq = 0
      const local: LocalDoc = {
        async load () {
          const tx = d.transaction(['updates', 'meta'], 'readonly')
          const [keys, values, meta] = await Promise.all([
            req(tx.objectStore('updates').getAllKeys(range)),
            req(tx.objectStore('updates').getAll(range)),
            req(tx.objectStore('meta').get(key))
          ])
          const last = keys[keys.length - 1]
          seq = Array.isArray(last) && typeof last[1] === 'number' ? last[1] : 0
          return {
            updates: (values as unknown[]).filter((v): v is Uint8Array => v instanceof Uint8Array),
            meta: (meta ?? null) as LocalMeta | null
          }
        },
        async append (update) {
          const tx = d.transaction('updates', 'readwrite')
          tx.objectStore('updates').put(update, [key, ++seq])
          await done(tx)
        },
        async compact (snapshot) {
          const tx = d.transaction('updates', 'readwrite')
          tx.objectStore('updates').delete(range)
          seq = 1
          tx.objectStore('updates').put(snapshot, [key, seq])
          await done(tx)
        },
        async saveMeta (meta) {
          const tx = d.transaction('meta', 'readwrite')
          tx.objectStore('meta').put(meta, key)
          await done(tx)
        },
        async clear () {
          const tx = d.transaction(['updates', 'meta'], 'readwrite')
          tx.objectStore('updates').delete(range)
          tx.objectStore('meta').delete(key)
          seq = 0
          await done(tx)
        },
        async release () { unlock() }
      }
      return local
    }
  }
}
