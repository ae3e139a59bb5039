/**
 * The chat UI at desktop (1280x800) and phone (390x844) sizes (issue 15): layout, identity from
 * user records, edit and delete, settings and their refusal, the empty inbox, sign-in errors in
 * plain words, and axe-core on the main screens. Screenshots of every main screen at both sizes
 * go to test-artifacts/web/ (`ui-<screen>-<size>.png`).
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { startServer, type TestServer, UNLIMITED_RATE } from '../helpers/server.ts'
import { createConversation, DESKTOP, launch, messageAction, messageWith, newPage, openAsGuest, PHONE, sendText, seriousA11yIssues, shot, shownTexts, signIn } from './helpers.ts'

type Ctx = { s: TestServer, browser: Browser, contexts: BrowserContext[] }
const Ui = suite<Ctx>('chat UI at desktop and phone sizes')

Ui.before(async ctx => {
  ctx.s = await startServer({ config: { demo: true }, settings: UNLIMITED_RATE })
  ctx.browser = await launch()
})
Ui.after(async ctx => {
  await ctx.browser.close()
  await ctx.s.stop()
})
Ui.before.each(ctx => { ctx.contexts = [] })
Ui.after.each(async ctx => { for (const c of ctx.contexts) await c.close() })

const SIZES = [['desktop', DESKTOP], ['phone', PHONE]] as const

const open = async (ctx: Ctx, viewport = DESKTOP): Promise<Page> => {
  const p = await newPage(ctx.browser, viewport)
  ctx.contexts.push(p.context)
  return p.page
}

/** Axe finds no serious or critical issue, and the page does not scroll sideways. */
const checkScreen = async (page: Page, name: string): Promise<void> => {
  await shot(page, name)
  assert.equal(await seriousA11yIssues(page), [], `axe on ${name}`)
  const sideways = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
  assert.ok(sideways <= 0, `${name} scrolls sideways by ${sideways} px`)
}

for (const [size, viewport] of SIZES) {
  Ui(`${size}: sign-in explains a bad id; an empty inbox says so; a conversation gets the screen and back leads to the list`, async ctx => {
    const page = await open(ctx, viewport)
    await page.goto(ctx.s.url + '/')
    await checkScreen(page, `ui-signin-${size}`)
    await page.getByTestId('signin-user').fill('no spaces please')
    await page.getByTestId('signin-submit').click()
    await page.getByTestId('signin-user-error').filter({ hasText: 'Letters, digits and _ - . ~ only, no spaces' }).waitFor()
    assert.is(await page.getByTestId('signin-user').getAttribute('aria-invalid'), 'true')

    const user = `newbie-${size}`
    await signIn(page, ctx.s.url, user, 'New Bie')
    await page.getByTestId('list-empty').filter({ hasText: 'No conversations yet' }).waitFor()
    await checkScreen(page, `ui-empty-inbox-${size}`)

    await page.getByTestId('new-open').click()
    await page.getByTestId('new-dialog').waitFor()
    await checkScreen(page, `ui-new-dialog-${size}`)
    await page.getByTestId('dialog-close').click()

    await createConversation(page, { id: `layout-${size}`, subject: 'Layout check', participants: 'bob' })
    await sendText(page, 'A message that should be readable on any screen, wrapping as it needs to.')
    await page.locator('[data-testid=message][data-status=sent]').waitFor()
    const width = await page.getByTestId('messages').evaluate(el => el.getBoundingClientRect().width)
    assert.ok(width > viewport.width * 0.5, `the message column is ${width} px wide`)
    assert.is(await page.getByTestId('chat-title').innerText(), 'Layout check')
    // The skip link (first in tab order) jumps to the composer and keeps the conversation open.
    await page.locator('.skip').focus()
    await page.keyboard.press('Enter')
    assert.is(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'composer-input')
    assert.match(page.url(), new RegExp(`#/c/layout-${size}$`))
    if (size === 'phone') {
      assert.not.ok(await page.getByTestId('conversation-list').isVisible(), 'the list is its own screen')
      await page.getByTestId('back').click()
      await page.getByTestId('conversation').first().waitFor()
      assert.not.ok(await page.getByTestId('chat').isVisible(), 'the chat is its own screen')
      await checkScreen(page, `ui-inbox-${size}`)
      await page.getByTestId('conversation').first().click()
    } else {
      await page.locator('[data-testid=conversation] a[aria-current=page]').waitFor()
      await page.getByTestId('back').waitFor({ state: 'hidden' })
      await page.evaluate(() => { location.hash = '#/' })
      await page.locator('[data-testid=conversation] a[aria-current=page]').waitFor({ state: 'detached' })
      await checkScreen(page, `ui-inbox-${size}`)
      await page.getByTestId('conversation').first().click()
    }
    await page.getByTestId('composer-input').waitFor()
  })

  Ui(`${size}: two users and a guest talk; names come from user records; edit, delete, reply and react; read-only guests`, async ctx => {
    const id = `talk-${size}`
    await ctx.s.api('PUT', '/v1/users/carol', { name: 'Carol Danvers' })
    await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob', 'carol'], subject: 'Weekend trip' })
    // Carol wrote before and is never online: her name still comes from her user record.
    await ctx.s.api('POST', `/v1/conversations/${id}/messages`, [{ text: 'Count me in', sender: 'carol', type: 'UserMessage' }])
    await ctx.s.api('PUT', `/v1/conversations/${id}/participants/alice`, { role: 'moderator' })
    const alice = await open(ctx, viewport)
    const bob = await open(ctx, viewport)
    const guest = await open(ctx, viewport)
    await signIn(alice, ctx.s.url, 'alice', 'Alice', `#/c/${id}`)
    await signIn(bob, ctx.s.url, 'bob', 'Robert Builder', `#/c/${id}`)
    await messageWith(alice, 'Count me in').getByTestId('sender').filter({ hasText: 'Carol Danvers' }).waitFor()
    await sendText(bob, 'Shall we go hiking?')
    await messageWith(alice, 'Shall we go hiking?').getByTestId('sender').filter({ hasText: 'Robert Builder' }).waitFor()
    // Mentions complete from the participants; Shift+Enter starts a new line, Enter sends.
    const input = alice.getByTestId('composer-input')
    await input.fill('')
    await input.pressSequentially('Yes! @ro')
    await alice.getByTestId('mention-option').filter({ hasText: 'Robert Builder' }).waitFor()
    await input.press('Enter')
    assert.is(await input.inputValue(), 'Yes! @bob ')
    await input.pressSequentially('bring the map')
    await input.press('Shift+Enter')
    await input.pressSequentially('and snacks')
    await input.press('Enter')
    await messageWith(alice, 'and snacks').waitFor()
    assert.is(await messageWith(alice, 'and snacks').getByTestId('message-text').innerText(), 'Yes! @Robert Builder bring the map\nand snacks')
    await messageWith(bob, 'bring the map').locator('.mention', { hasText: '@Robert Builder' }).waitFor()

    await signIn(guest, ctx.s.url, 'walker', 'Walker')
    await openAsGuest(guest, id)
    await messageWith(guest, 'Shall we go hiking?').waitFor()
    assert.is(await guest.getByTestId('chat-title').innerText(), 'Weekend trip')
    await sendText(guest, 'Can I join?')
    await messageWith(alice, 'Can I join?').locator('.tag', { hasText: 'guest' }).waitFor()

    await messageAction(bob, 'Can I join?', 'reply')
    await sendText(bob, 'Sure, Saturday 9:00')
    await messageWith(guest, 'Sure, Saturday 9:00').getByTestId('quote').filter({ hasText: 'Can I join?' }).waitFor()
    await messageAction(guest, 'Sure, Saturday 9:00', 'react')
    await messageWith(guest, 'Sure, Saturday 9:00').locator('[data-testid=react-pick][data-reaction="👍"]').click()
    await messageWith(bob, 'Sure, Saturday 9:00').locator('[data-testid=reaction][data-reaction="👍"] [data-testid=reaction-count]').filter({ hasText: '1' }).waitFor()

    await messageAction(bob, 'Shall we go hiking?', 'edit')
    assert.is(await bob.getByTestId('composer-input').inputValue(), 'Shall we go hiking?')
    await bob.getByTestId('composer-input').fill('Shall we go hiking on Saturday?')
    await bob.getByTestId('composer-input').press('Enter')
    await messageWith(alice, 'Shall we go hiking on Saturday?').getByTestId('edited').waitFor()
    await checkScreen(alice, `ui-conversation-${size}`)
    await checkScreen(guest, `ui-guest-${size}`)

    // Bob deletes his own message; alice, a moderator, deletes the guest's.
    await messageAction(bob, 'Sure, Saturday 9:00', 'delete')
    await bob.getByTestId('delete-confirm').click()
    await messageWith(alice, 'Sure, Saturday 9:00').waitFor({ state: 'detached' })
    assert.is(await messageWith(bob, 'Yes! @bob').getByTestId('delete').count(), 0, 'no delete on others\' messages for a non-moderator')
    await messageAction(alice, 'Can I join?', 'delete')
    await alice.getByTestId('delete-confirm').click()
    await messageWith(guest, 'Can I join?').waitFor({ state: 'detached' })
    // Once bob has left, his messages still carry his record's name.
    await bob.close()
    await alice.locator('[data-testid=online] [data-user=bob]').waitFor({ state: 'detached' }).catch(() => {})
    assert.is(await messageWith(alice, 'hiking on Saturday').getByTestId('sender').innerText(), 'Robert Builder')
    assert.equal(await shownTexts(guest), ['Count me in', 'Shall we go hiking on Saturday?', 'Yes! @Robert Builder bring the map\nand snacks'])

    // A moderator removes a guest: the guest is told in plain words and may come back.
    if (size === 'phone') {
      await alice.getByTestId('people-toggle').click()
      await shot(alice, `ui-people-sheet-${size}`)
    }
    await alice.locator('[data-testid=guests] [data-user=walker] [data-testid=kick]').click()
    await guest.getByTestId('error').filter({ hasText: 'A moderator closed your guest view' }).waitFor()
    await alice.locator('[data-testid=guests] [data-user=walker]').waitFor({ state: 'detached' })

    // A read-only guest: no composer, a plain note instead.
    await ctx.s.api('PUT', `/v1/conversations/${id}`, { guestAccess: 'read' })
    await guest.reload()
    await guest.getByTestId('readonly').waitFor()
    // Names in mentions come from the user records too, once they arrive.
    await messageWith(guest, 'and snacks').locator('.mention', { hasText: '@Robert Builder' }).waitFor()
    assert.is(await guest.getByTestId('composer').count(), 0)
    await checkScreen(guest, `ui-read-only-guest-${size}`)
  })

  Ui(`${size}: settings: a ReadWrite participant renames and adds someone; a Read participant is told why not`, async ctx => {
    const id = `settings-${size}`
    await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'], subject: 'Old name' })
    await ctx.s.api('PUT', `/v1/conversations/${id}/participants/bob`, { access: 'Read' })
    const alice = await open(ctx, viewport)
    await signIn(alice, ctx.s.url, 'alice', 'Alice', `#/c/${id}`)
    await alice.getByTestId('settings-open').click()
    await alice.getByTestId('settings-subject').waitFor()
    await checkScreen(alice, `ui-settings-${size}`)
    await alice.getByTestId('settings-subject').fill('New name')
    await alice.getByTestId('settings-subject').press('Enter')
    await alice.getByTestId('settings-status').filter({ hasText: 'done' }).waitFor()
    await alice.getByTestId('participant-add-id').fill('carol')
    await alice.getByTestId('participant-add').click()
    await alice.locator('[data-testid=participants] [data-user=carol]').waitFor()
    await alice.getByTestId('settings-close').click()
    await alice.getByTestId('chat-title').filter({ hasText: 'New name' }).waitFor()
    const stored = await ctx.s.api('GET', `/v1/conversations/${id}`)
    assert.is(stored.body.subject, 'New name')
    assert.is(stored.body.participants.carol.access, 'ReadWrite')

    // A moderator also bans.
    await ctx.s.api('PUT', `/v1/conversations/${id}/participants/alice`, { role: 'moderator' })
    await alice.reload()
    await alice.getByTestId('settings-open').click()
    await alice.getByTestId('ban-id').fill('mallory')
    await alice.getByTestId('ban-add').click()
    await alice.locator('[data-testid=bans] [data-user=mallory]').waitFor()
    assert.equal((await ctx.s.api('GET', `/v1/conversations/${id}/bans`)).body.data.map((b: { userId: string }) => b.userId), ['mallory'])
    await alice.getByTestId('settings-slow-mode').selectOption('30')
    await alice.getByTestId('settings-status').filter({ hasText: 'Changing slow mode: done' }).waitFor()
    assert.is((await ctx.s.api('GET', `/v1/conversations/${id}`)).body.slowMode, 30)
    await alice.getByTestId('settings-close').click()

    const bob = await open(ctx, viewport)
    await signIn(bob, ctx.s.url, 'bob', 'Bob', `#/c/${id}`)
    await bob.getByTestId('settings-open').click()
    await bob.getByTestId('settings-refusal').filter({ hasText: 'not change it' }).waitFor()
    assert.ok(await bob.getByTestId('settings-subject').isDisabled())
    await checkScreen(bob, `ui-settings-refused-${size}`)
  })
}

Ui('a refusal replaces the pane: no "Loading…", no "0 guests watching", and a way forward', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/closed-room', { participants: ['alice'], guestAccess: 'none' })
  for (const [size, viewport] of SIZES) {
    const page = await open(ctx, viewport)
    await signIn(page, ctx.s.url, 'mallory', 'Mallory', '#/c/closed-room')
    await page.getByTestId('error').filter({ hasText: 'not a participant' }).waitFor()
    assert.is(await page.getByTestId('refusal-action').getAttribute('href'), '#/g/closed-room')
    assert.is(await page.getByTestId('guest-count').count(), 0)
    assert.is(await page.getByText('Loading').count(), 0)
    await checkScreen(page, `ui-refused-${size}`)
  }
})

Ui('unread divider, "Seen by", system messages apart, jump to newest', async ctx => {
  const id = 'reading'
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice', 'bob'], subject: 'Reading' })
  await ctx.s.api('POST', `/v1/conversations/${id}/messages`, [{ text: 'Read before', sender: 'alice', type: 'UserMessage' }])
  const bob = await open(ctx)
  await signIn(bob, ctx.s.url, 'bob', 'Bob', `#/c/${id}`)
  await messageWith(bob, 'Read before').waitFor()
  // Bob's marker moves once he has seen it; what comes after it is new to him next time.
  const until = Date.now() + 5000
  while (Date.now() < until && (await ctx.s.api('GET', '/v1/users/bob/conversations')).body.data.find((c: { id: string }) => c.id === id)?.unreadCount !== 0) await bob.waitForTimeout(100)
  await bob.goto(ctx.s.url + '/#/')
  await ctx.s.api('POST', `/v1/conversations/${id}/messages`, [{ text: 'Alice joined the project', type: 'SystemMessage' }])
  await ctx.s.api('POST', `/v1/conversations/${id}/messages`, Array.from({ length: 10 }, (_, i) => ({ text: `news ${i}`, sender: 'alice', type: 'UserMessage' })))
  await bob.locator('[data-testid=conversation][data-id=reading] [data-testid=unread]').filter({ hasText: /^1[01]$/ }).waitFor()
  await bob.locator('[data-testid=conversation][data-id=reading] a').click()
  await messageWith(bob, 'news 9').waitFor()
  const order = await bob.locator('[data-testid=messages] > li').evaluateAll(els => els.map(e => e.getAttribute('data-testid') === 'message' ? (e.querySelector('[data-testid=message-text]')?.textContent ?? '') : e.getAttribute('data-testid')))
  assert.equal(order.slice(0, 4), ['day', 'Read before', 'unread-divider', 'Alice joined the project'])
  assert.ok(await messageWith(bob, 'Alice joined the project').evaluate(el => el.classList.contains('system')))
  // Bob answers; once Alice has read it, Bob sees "Seen by Alice".
  await sendText(bob, 'Thanks for the news')
  const alice = await open(ctx)
  await signIn(alice, ctx.s.url, 'alice', 'Alice', `#/c/${id}`)
  await messageWith(alice, 'Thanks for the news').waitFor()
  await bob.getByTestId('seen-by').filter({ hasText: 'Seen by Alice' }).waitFor()
  // Scrolled up, new messages show a "jump to newest" button that brings the reader back down.
  await bob.getByTestId('messages').evaluate(el => { el.scrollTop = 0 })
  await ctx.s.api('POST', `/v1/conversations/${id}/messages`, Array.from({ length: 10 }, (_, i) => ({ text: `more ${i}\n\nwith\nseveral\nlines`, sender: 'alice', type: 'UserMessage' })))
  await bob.getByTestId('jump').waitFor()
  await bob.getByTestId('jump').click()
  await bob.getByTestId('jump').waitFor({ state: 'hidden' })
  await shot(bob, 'ui-reading-desktop')
})

Ui('1,000 messages: scrolling up loads the archive page by page until the first message', async ctx => {
  const id = 'long-history'
  await ctx.s.api('PUT', `/v1/conversations/${id}`, { participants: ['alice'], subject: 'Long history' })
  for (let i = 0; i < 100; i++) {
    await ctx.s.api('POST', `/v1/conversations/${id}/messages`, Array.from({ length: 10 }, (_, j) => ({ text: `message ${i * 10 + j}`, sender: 'alice', type: 'UserMessage' })))
  }
  const page = await open(ctx)
  await signIn(page, ctx.s.url, 'alice', 'Alice', `#/c/${id}`)
  await messageWith(page, 'message 999').waitFor()
  const list = page.getByTestId('messages')
  for (let i = 0; i < 60 && await page.getByTestId('load-older').count() > 0; i++) {
    const before = await page.getByTestId('message').count()
    await list.hover()
    await page.mouse.wheel(0, -100_000)
    await page.waitForFunction(n => document.querySelectorAll('[data-testid=message]').length > n || document.querySelector('[data-testid=load-older]') === null, before)
  }
  assert.is(await page.getByTestId('message').count(), 1000)
  assert.is(await page.getByTestId('message-text').first().innerText(), 'message 0')
  // Old messages are left to the browser to skip while off screen; the newest are laid out.
  assert.ok(await page.locator('[data-testid=message].far').count() >= 900)
  assert.is(await messageWith(page, 'message 999').evaluate(el => el.classList.contains('far')), false)
})

Ui.run()
