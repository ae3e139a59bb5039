/**
 * The embedding example served at `/embed-example` in demo mode (docs/client.md#embedding):
 * a host page with its own look, a support chatbox in a narrow column and the user's inbox next
 * to it, both mounted from `parley/client/ui` with one session. Query: `?user=<id>&conversation=<id>`
 * (`&guest=1` opens the chatbox as a guest).
 */
import { createSession } from '../client/index.ts'
import { mountChatbox, mountInbox } from './embed.ts'

const q = new URLSearchParams(location.search)
const userId = q.get('user') ?? 'alice'
const conversationId = q.get('conversation') ?? 'support'

const getToken = async (): Promise<string> => {
  const res = await fetch('/demo/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) })
  const body = await res.json() as { token: string }
  return body.token
}

const session = createSession({ serverUrl: location.origin, userId, getToken, profile: { name: q.get('name') ?? userId } })
mountChatbox(document.getElementById('chatbox') as HTMLElement, session, conversationId, { asGuest: q.get('guest') === '1' })
mountInbox(document.getElementById('inbox') as HTMLElement, session)
