/**
 * `<data>/server.json`: where the server that holds a data folder listens, so tools that cannot
 * open the folder while the server holds its LevelDB lock (`npm run backup`) can ask the server
 * instead. Written at listen, removed at a clean stop; a stale file (after a crash) points at a
 * port nobody answers on, which the tools treat as "no server". Holds no secret.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** The file's name inside the data folder. */
export const SERVER_INFO_FILE = 'server.json'

export interface ServerInfo {
  /** Base URL a tool on this machine can reach the server at. */
  url: string
  pid: number
  startedAt: number
}

/** A wildcard listen address is reached through loopback. */
const reachableUrl = (url: string): string =>
  url.replace(/^http:\/\/0\.0\.0\.0:/, 'http://127.0.0.1:').replace(/^http:\/\/\[::\]:/, 'http://[::1]:')

/** Records (atomically: temp file, then rename) that this process serves `dataDir` at `url`. */
export const writeServerInfo = async (dataDir: string, url: string, startedAt: number = Date.now()): Promise<void> => {
  const info: ServerInfo = { url: reachableUrl(url), pid: process.pid, startedAt }
  const path = join(dataDir, SERVER_INFO_FILE)
  await writeFile(`${path}.tmp`, JSON.stringify(info) + '\n', { mode: 0o600 })
  await rename(`${path}.tmp`, path)
}

/** Removes the file at a clean stop (missing is fine). */
export const removeServerInfo = async (dataDir: string): Promise<void> => {
  await rm(join(dataDir, SERVER_INFO_FILE), { force: true })
}

/** The recorded server, or null when there is none (or the file is unreadable). */
export const readServerInfo = async (dataDir: string): Promise<ServerInfo | null> => {
  let text: string
  try {
    text = await readFile(join(dataDir, SERVER_INFO_FILE), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
  try {
    const v = JSON.parse(text) as Partial<ServerInfo>
    return typeof v.url === 'string' && typeof v.pid === 'number' ? { url: v.url, pid: v.pid, startedAt: Number(v.startedAt ?? 0) } : null
  } catch {
    // Half-written by a crash: as good as no file.
    return null
  }
}
