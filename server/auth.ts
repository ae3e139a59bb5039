/**
 * Identity (contract §2): user tokens are HS256 JWTs with `sub` and `exp`, signed with the app
 * secret; admin requests carry the secret itself or a JWT with `"scope":"admin"`.
 * Only HS256 is accepted (so `alg: none` and every other algorithm are refused).
 */
import { jwtVerify, SignJWT, errors as joseErrors } from 'jose'
import { timingSafeEqual } from 'node:crypto'
import { ChatError } from '../shared/errors.ts'
import { isValidId } from '../shared/ids.ts'

export type Principal =
  | { kind: 'admin' }
  | { kind: 'user', userId: string }

export interface Authenticator {
  /**
   * Verifies a user token; throws TOKEN_MISSING, TOKEN_INVALID or TOKEN_EXPIRED. `userId` is ''
   * for an admin-scope token without `sub`; `expiresAt` is `exp` in milliseconds.
   */
  verifyUserToken (token: string | null | undefined): Promise<{ userId: string, admin: boolean, expiresAt: number }>
  /**
   * Verifies the token of a sync connection: it must name a user (`sub`), also with admin
   * scope (TOKEN_INVALID otherwise). Answers the user and how long the token stays valid.
   */
  verifySocketToken (token: string | null | undefined): Promise<{ userId: string, expiresInMs: number }>
  /** Reads an `Authorization` header into a principal; throws the same codes. */
  fromAuthorizationHeader (header: string | undefined): Promise<Principal>
  /** Signs a user token (used by demo mode and tests). */
  signUserToken (userId: string, ttlSeconds: number): Promise<string>
}

export const createAuthenticator = (secret: string, now: () => number = Date.now): Authenticator => {
  const key = new TextEncoder().encode(secret)
  // Imported once: given raw bytes, jose would import the HMAC key again on every verification.
  const verifyKey = crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'])
  const secretBytes = Buffer.from(secret)

  const verifyUserToken = async (token: string | null | undefined): Promise<{ userId: string, admin: boolean, expiresAt: number }> => {
    if (token === null || token === undefined || token === '') throw new ChatError('TOKEN_MISSING')
    try {
      const { payload } = await jwtVerify(token, await verifyKey, {
        algorithms: ['HS256'],
        requiredClaims: ['exp'],
        currentDate: new Date(now())
      })
      const admin = payload.scope === 'admin'
      if (!admin && !isValidId(payload.sub)) throw new ChatError('TOKEN_INVALID', 'The token has no valid sub claim')
      return { userId: typeof payload.sub === 'string' ? payload.sub : '', admin, expiresAt: (payload.exp ?? 0) * 1000 }
    } catch (e) {
      if (e instanceof ChatError) throw e
      if (e instanceof joseErrors.JWTExpired) throw new ChatError('TOKEN_EXPIRED')
      throw new ChatError('TOKEN_INVALID')
    }
  }

  const isSecret = (candidate: string): boolean => {
    const b = Buffer.from(candidate)
    return b.length === secretBytes.length && timingSafeEqual(b, secretBytes)
  }

  return {
    verifyUserToken,
    async verifySocketToken (token) {
      const { userId, expiresAt } = await verifyUserToken(token)
      if (!isValidId(userId)) throw new ChatError('TOKEN_INVALID', 'The token names no user (sub)')
      return { userId, expiresInMs: expiresAt - now() }
    },
    async fromAuthorizationHeader (header) {
      if (header === undefined || header === '') throw new ChatError('TOKEN_MISSING')
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
      if (m === null) throw new ChatError('TOKEN_INVALID', 'Use Authorization: Bearer <token>')
      const token = m[1]
      if (isSecret(token)) return { kind: 'admin' }
      const { userId, admin } = await verifyUserToken(token)
      return admin ? { kind: 'admin' } : { kind: 'user', userId }
    },
    async signUserToken (userId, ttlSeconds) {
      const iat = Math.floor(now() / 1000)
      return await new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId).setIssuedAt(iat).setExpirationTime(iat + ttlSeconds).sign(key)
    }
  }
}
