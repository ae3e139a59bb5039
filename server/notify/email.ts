/**
 * Notification emails over SMTP (nodemailer), sent when the server runs with `--smtp URL`.
 * The URL is nodemailer's (`smtp://user:pass@host:port`, `smtps://` for implicit TLS); a
 * `from` query parameter sets the sender (default `Parley <parley@localhost>`).
 * An email job is plain JSON so that the outbox can store and retry it.
 */
import nodemailer from 'nodemailer'
import { isPlainObject } from '../../shared/schema.ts'
import type { Notification } from './notifier.ts'

export interface EmailJob {
  to: string[]
  subject: string
  text: string
}

export const isEmailJob = (v: unknown): v is EmailJob =>
  isPlainObject(v) && Array.isArray(v.to) && v.to.every(a => typeof a === 'string') &&
  typeof v.subject === 'string' && typeof v.text === 'string'

/** Sends email jobs; `close` ends its connections. */
export interface Mailer {
  send (job: EmailJob, messageId: string, signal: AbortSignal): Promise<void>
  close (): void
}

const DEFAULT_FROM = 'Parley <parley@localhost>'

export const createMailer = (smtpUrl: string): Mailer => {
  const url = new URL(smtpUrl)
  const from = url.searchParams.get('from') ?? DEFAULT_FROM
  url.searchParams.delete('from')
  const transport = nodemailer.createTransport(url.toString(), {
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000
  })
  return {
    async send (job, messageId, signal) {
      if (signal.aborted) throw new Error('aborted')
      // nodemailer takes no signal: an aborted send is simply not waited for (the outbox retries).
      await Promise.race([
        transport.sendMail({ from, to: job.to, subject: job.subject, text: job.text, messageId: `<${messageId}@parley>` }),
        new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))
      ])
    },
    close () { transport.close() }
  }
}

/** The email telling `names.get(recipientId)` about a notification; `names` maps user ids to display names. */
export const composeNotificationEmail = (n: Notification, to: string[], names: ReadonlyMap<string, string>): EmailJob => {
  const where = n.subject ?? n.conversationId
  const count = n.messages.length
  const lines = n.messages.map(m => `${m.senderId === null ? '' : `${names.get(m.senderId) ?? m.senderId}: `}${m.text}`)
  return {
    to,
    subject: `${count} new message${count === 1 ? '' : 's'} in ${where}`,
    text: `You have ${count} unread message${count === 1 ? '' : 's'} in ${where}:\n\n${lines.join('\n')}\n`
  }
}
