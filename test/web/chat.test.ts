import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Browser, BrowserContext } from 'playwright-core'
import { startServer, type TestServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { createConversation, launch, messageAction, messageWith, newPage, openAsGuest, sendText, shot, shownTexts, signIn } from './helpers.ts'

type Ctx = { s: TestServer, browser: Browser, contexts: BrowserContext[] }
const Web = suite<Ctx>('web UI in Chromium')

Web.before(async ctx => {
  ctx.s = await startServer({ config: { demo: true }, settings: UNLIMITED_RATE })
  ctx.browser = await launch()
})
Web.after(async ctx => {
  await ctx.browser.close()
  await ctx.s.stop()
})
Web.before.each(ctx => { ctx.contexts = [] })
Web.after.each(async ctx => { for (const c of ctx.contexts) await c.close() })

const open = async (ctx: Ctx): Promise<Awaited<ReturnType<typeof newPage>>> => {
  const p = await newPage(ctx.browser)
  ctx.contexts.push(p.context)
  return p
}

Web('a participant and a guest exchange messages; the guest shows in presence and vanishes when its page closes', async ctx => {
  const { page: alice } = await open(ctx)
  await signIn(alice, ctx.s.url, 'alice', 'Alice')
  await createConversation(alice, { id: 'support-1', subject: 'Order #1', participants: 'bob' })
  await sendText(alice, 'Hello, how can I help?')
  await alice.locator('[data-testid=message][data-status=sent]').waitFor()
  await shot(alice, '1-participant-sent')

  const { page: guest } = await open(ctx)
  await signIn(guest, ctx.s.url, 'visitor', 'Visitor')
  await openAsGuest(guest, 'support-1')
  await messageWith(guest, 'Hello, how can I help?').waitFor()
  assert.is(await guest.getByTestId('chat-title').innerText(), 'Order #1', 'a guest sees the subject, not the id')
  assert.is(await guest.getByTestId('role').innerText(), 'guest')
  await alice.locator('[data-testid=guests] [data-user=visitor]').waitFor()
  // The name the guest chose is shown as its own choice, with its id: never like a participant's.
  assert.match(await alice.locator('[data-testid=guests] [data-user=visitor]').innerText(), '“Visitor” (guest visitor)')
  assert.match(await alice.getByTestId('guest-count').innerText(), /^1 guest watching/)
  await guest.getByTestId('online').locator('[data-user=alice]').waitFor()
  await sendText(guest, 'Just looking around')
  await messageWith(alice, 'Just looking around').waitFor()
  await shot(guest, '2-guest-view')
  await shot(alice, '3-participant-sees-guest')

  await guest.close()
  await alice.locator('[data-testid=guests] [data-user=visitor]').waitFor({ state: 'detached', timeout: 3000 })
  await alice.getByTestId('guest-count').filter({ hasText: /^0 guests watching/ }).waitFor()
  await shot(alice, '4-guest-left')
  assert.equal(await shownTexts(alice), ['Hello, how can I help?', 'Just looking around'])
})

Web('a read-only guest sees no composer', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/broadcast', { participants: ['alice'], guestAccess: 'read', subject: 'Announcements' })
  await ctx.s.api('POST', '/v1/conversations/broadcast/messages', [{ text: 'Maintenance at noon', sender: 'alice', type: 'UserMessage' }])
  const { page } = await open(ctx)
  await signIn(page, ctx.s.url, 'reader', 'Reader', '#/g/broadcast')
  await messageWith(page, 'Maintenance at noon').waitFor()
  await page.getByTestId('readonly').waitFor()
  assert.is(await page.getByTestId('composer').count(), 0)
  assert.is(await page.getByTestId('role').innerText(), 'guest · read-only')
  await shot(page, '5-read-only-guest')
})

Web('refusals are explained: not a participant, guest access off, conversation full', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/private', { participants: ['alice'], guestAccess: 'none' })
  await ctx.s.api('PUT', '/v1/conversations/busy', { participants: ['alice'] })
  const { page } = await open(ctx)
  await signIn(page, ctx.s.url, 'mallory', 'Mallory', '#/c/private')
  await page.getByTestId('error').filter({ hasText: 'not a participant' }).waitFor()
  await shot(page, '6-refused-not-participant')
  await page.goto(`${ctx.s.url}/#/g/private`)
  await page.getByTestId('error').filter({ hasText: 'Guest access is off' }).waitFor()
  assert.is(await page.getByTestId('composer').count(), 0)
  await ctx.s.api('PATCH', '/v1/settings', { maxGuests: 1 })
  try {
    const { page: first } = await open(ctx)
    await signIn(first, ctx.s.url, 'early', 'Early', '#/g/busy')
    await first.getByTestId('composer').waitFor()
    await page.goto(`${ctx.s.url}/#/g/busy`)
    await page.getByTestId('error').filter({ hasText: 'full' }).waitFor()
    await shot(page, '7-refused-full')
  } finally {
    await ctx.s.api('PATCH', '/v1/settings', { maxGuests: 10000 })
  }
})

Web('a participant goes offline, sends, comes back, and the other side gets the message exactly once', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/flaky', { participants: ['alice', 'bob'], subject: 'Flaky network' })
  const a = await open(ctx)
  const { page: bob } = await open(ctx)
  await signIn(a.page, ctx.s.url, 'alice', 'Alice', '#/c/flaky')
  await signIn(bob, ctx.s.url, 'bob', 'Bob', '#/c/flaky')
  await a.page.locator('[data-testid=connection][data-status=synced]').waitFor()
  await bob.locator('[data-testid=connection][data-status=synced]').waitFor()
  await a.context.setOffline(true)
  await a.page.locator('[data-testid=connection][data-status=offline]').waitFor()
  await sendText(a.page, 'sent while offline')
  await a.page.locator('[data-testid=message][data-status=pending]').waitFor()
  // The list's next poll fails: said in plain words (never the browser's "Failed to fetch")...
  await a.page.getByTestId('notice').filter({ hasText: 'Cannot reach the server' }).waitFor()
  await shot(a.page, '8-offline-pending')
  await bob.waitForTimeout(500)
  assert.equal(await shownTexts(bob), [], 'nothing leaks while offline')
  await a.context.setOffline(false)
  await a.page.locator('[data-testid=message][data-status=sent]').waitFor()
  // ...and the notice goes away by itself once the server is back.
  await a.page.getByTestId('notice').waitFor({ state: 'hidden' })
  await a.page.locator('[data-testid=connection]', { hasText: 'live' }).waitFor()
  await messageWith(bob, 'sent while offline').waitFor()
  await bob.waitForTimeout(500)
  assert.equal(await shownTexts(bob), ['sent while offline'])
  await shot(a.page, '9-back-online-sent')
  await shot(bob, '10-other-side-once')
  const stored = await ctx.s.api('GET', '/v1/conversations/flaky/messages')
  assert.equal(stored.body.data.map((m: { text: string }) => m.text), ['sent while offline'])
})

Web('reactions toggle with counts on both sides; a reply shows its quote, also of a message the view does not show (loaded from the server)', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/rich', { participants: ['alice', 'bob'], subject: 'Rich messages' })
  const posted = await ctx.s.api('POST', '/v1/conversations/rich/messages', [{ text: 'An old question from long ago', sender: 'bob', type: 'UserMessage' }])
  const oldId = posted.body[0].id as string
  for (let i = 0; i < 4; i++) await ctx.s.api('POST', '/v1/conversations/rich/messages', Array.from({ length: 10 }, (_, j) => ({ text: `filler ${i * 10 + j}`, sender: 'bob', type: 'UserMessage' })))
  await ctx.s.api('POST', '/v1/conversations/rich/messages', [{ text: 'Lunch at noon?', sender: 'bob', type: 'UserMessage' }])
  const { page: alice } = await open(ctx)
  const { page: bob } = await open(ctx)
  await signIn(alice, ctx.s.url, 'alice', 'Alice', '#/c/rich')
  await signIn(bob, ctx.s.url, 'bob', 'Bob', '#/c/rich')
  const lunch = (page: typeof alice) => page.locator('[data-testid=message]', { hasText: 'Lunch at noon?' })
  await lunch(alice).waitFor()
  await messageAction(alice, 'Lunch at noon?', 'react')
  await lunch(alice).locator('[data-testid=react-pick][data-reaction="👍"]').click()
  await lunch(bob).locator('[data-testid=reaction][data-reaction="👍"] [data-testid=reaction-count]').filter({ hasText: '1' }).waitFor()
  await lunch(bob).locator('[data-testid=reaction][data-reaction="👍"]').click()
  await lunch(alice).locator('[data-testid=reaction][data-reaction="👍"] [data-testid=reaction-count]').filter({ hasText: '2' }).waitFor()
  await messageAction(alice, 'Lunch at noon?', 'react')
  await lunch(alice).locator('[data-testid=react-pick][data-reaction="🎉"]').click()
  assert.is(await lunch(alice).locator('[data-testid=reaction][data-reaction="👍"]').getAttribute('aria-pressed'), 'true')
  await lunch(bob).locator('[data-testid=reaction][data-reaction="🎉"] [data-testid=reaction-count]').waitFor()
  await lunch(alice).locator('[data-testid=reaction][data-reaction="👍"]').click() // toggles alice's off
  await lunch(bob).locator('[data-testid=reaction][data-reaction="👍"] [data-testid=reaction-count]').filter({ hasText: /^ ?1$/ }).waitFor()
  await shot(bob, '11-reactions')

  await messageAction(alice, 'Lunch at noon?', 'reply')
  await alice.getByTestId('reply-quote').filter({ hasText: 'Lunch at noon?' }).waitFor()
  await sendText(alice, 'Yes, see you there')
  await alice.getByTestId('reply-bar').waitFor({ state: 'hidden' })
  const reply = (page: typeof alice) => page.locator('[data-testid=message]', { hasText: 'Yes, see you there' })
  await reply(bob).locator('[data-testid=quote]', { hasText: 'Lunch at noon?' }).waitFor()
  await shot(bob, '12-reply')

  // A reply (over REST) to a message the view does not show: its quote is loaded over REST.
  await ctx.s.api('POST', '/v1/conversations/rich/messages', [{ text: 'About that old question', sender: 'bob', type: 'UserMessage', referencedMessageId: oldId }])
  const late = alice.locator('[data-testid=message]', { hasText: 'About that old question' })
  await late.locator('[data-testid=quote]', { hasText: 'An old question from long ago' }).waitFor()
  assert.is(await alice.getByTestId('message-text').filter({ hasText: /^An old question from long ago$/ }).count(), 0, 'the old message is not shown')
  const stored = await ctx.s.api('GET', '/v1/conversations/rich/messages?limit=3')
  const byText = (t: string) => stored.body.data.find((m: { text: string }) => m.text === t)
  assert.equal(byText('Lunch at noon?').reactions, { '👍': ['bob'], '🎉': ['alice'] })
  assert.is(byText('Yes, see you there').referencedMessageId, byText('Lunch at noon?').id)
})

Web.run()
