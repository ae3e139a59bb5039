/**
 * The app secret when none is given: generated once, kept in `<data>/secret` with mode 0600
 * (readable by the owner only), and read back on every later start.
 */
import { randomBytes } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const SECRET_FILE = 'secret'

/** A new random app secret. */
export const newSecret = (): string => randomBytes(32).toString('base64url')

export const loadOrCreateSecret = async (dataDir: string): Promise<string> => {
  const path = join(dataDir, SECRET_FILE)
  try {
    const existing = (await readFile(path, 'utf8')).trim()
    if (existing.length >= 16) return existing
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const secret = newSecret()
  await writeFile(path, secret + '\n', { mode: 0o600, flag: 'w' })
  await chmod(path, 0o600)
  return secret
}
