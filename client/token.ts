/**
 * The session's user token: a fixed string, or a function that fetches a fresh one. A fetched
 * token is kept until it is within `refreshBeforeMs` of its `exp` claim (read, never verified:
 * the server verifies), so every connection attempt and REST call carries a valid token.
 */

export type TokenSource =
  | { token: string, getToken?: undefined }
  | { getToken: () => Promise<string>, token?: undefined }

/** Refresh a fetched token this long before it expires, in ms. */
export const REFRESH_BEFORE_MS = 60_000

/** The `exp` claim of a JWT in ms since the epoch, or null when it cannot be read. */
export const tokenExpiry = (jwt: string): number | null => {
  const part = jwt.split('.')[1]
  if (part === undefined) return null
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')
    const payload: unknown = JSON.parse(atob(b64))
    if (typeof payload !== 'object' || payload === null) return null
    const exp = (payload as { exp?: unknown }).exp
    return typeof exp === 'number' ? exp * 1000 : null
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof DOMException) return null
    throw e
  }
}

export class TokenKeeper {
  private readonly source: TokenSource
  private readonly now: () => number
  private current: string | null
  private inflight: Promise<string> | null = null

  constructor (source: TokenSource, now: () => number) {
    this.source = source
    this.now = now
    this.current = source.token ?? null
  }

  /** Whether a fresh token can be fetched (so an expired one is worth a retry). */
  get canRefresh (): boolean { return this.source.getToken !== undefined }

  /** A token that is not about to expire; `force` fetches a new one whatever the old one says. */
  async get (force = false): Promise<string> {
    const getToken = this.source.getToken
    if (getToken === undefined) return this.source.token ?? ''
    if (!force && this.current !== null) {
      const exp = tokenExpiry(this.current)
      if (exp === null || exp - this.now() > REFRESH_BEFORE_MS) return this.current
    }
    this.inflight ??= getToken().then(t => { this.current = t; return t }).finally(() => { this.inflight = null })
    return await this.inflight
  }
}
