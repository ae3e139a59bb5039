/**
 * Posts one webhook event: `POST <url>` with the JSON body, signed (see `sign.ts`), plus
 * `X-Parley-Event-Id` and `X-Parley-Event`. Any 2xx answer is success; anything else, a
 * network error or an abort rejects (the outbox retries). Redirects are not followed.
 */
import { signWebhook } from './sign.ts'
import type { WebhookEvent } from './events.ts'

export class WebhookStatusError extends Error {
  readonly status: number
  constructor (status: number) {
    super(`webhook receiver answered ${status}`)
    this.status = status
  }
}

export const postWebhook = async (url: string, secret: string, event: WebhookEvent, nowMs: number, signal: AbortSignal): Promise<void> => {
  const body = JSON.stringify(event)
  const timestamp = Math.floor(nowMs / 1000).toString()
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'Parley-Webhooks/1',
      'x-parley-event-id': event.id,
      'x-parley-event': event.type,
      'x-parley-timestamp': timestamp,
      'x-parley-signature': signWebhook(secret, timestamp, body)
    },
    body,
    signal,
    redirect: 'manual'
  })
  await res.body?.cancel()
  if (res.status < 200 || res.status > 299) throw new WebhookStatusError(res.status)
}
