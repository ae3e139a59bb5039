/** HS256 JWTs for Parley (contract §2): `sub` = the user id, `exp` required. */
import { SignJWT } from 'jose'

export const signUserToken = async (secret: string, userId: string, ttlSeconds = 3600): Promise<string> =>
  await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret))
