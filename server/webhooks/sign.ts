/**
 * Webhook signatures. Each POST carries `X-Parley-Timestamp` (seconds since the epoch, the time
 * of that attempt) and `X-Parley-Signature` = lowercase hex HMAC-SHA256(secret, timestamp + "." +
 * raw body), where the secret is the app secret. See docs/webhooks.md for how to verify.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const TIMESTAMP_HEADER = 'x-parley-timestamp'
export const SIGNATURE_HEADER = 'x-parley-signature'

/** Hex HMAC-SHA256 of `timestamp + "." + body`. */
export const signWebhook = (secret: string, timestamp: string, body: string): string =>
  createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')

/**
 * Whether a received webhook is authentic and fresh: the signature matches (compared in
 * constant time) and the timestamp is within `toleranceSeconds` of `nowMs`.
 */
export const verifyWebhook = (
  secret: string, timestamp: string, body: string, signature: string, nowMs: number, toleranceSeconds = 300
): boolean => {
  if (!/^\d{1,12}$/.test(timestamp) || !/^[0-9a-f]{64}$/.test(signature)) return false
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > toleranceSeconds) return false
  const expected = Buffer.from(signWebhook(secret, timestamp, body), 'hex')
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'))
}
