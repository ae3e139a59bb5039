import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Browser, BrowserContext } from 'playwright-core'
import { startServer, type TestServer } from '../helpers/server.ts'
import { PDF_BYTES, PNG_1X1 } from '../helpers/uploads.ts'
import { launch, messageWith, newPage, sendText, shot, signIn } from './helpers.ts'

type Ctx = { s: TestServer, browser: Browser, contexts: BrowserContext[] }
const Web = suite<Ctx>('web UI attachments and search in Chromium')

Web.before(async ctx => {
  ctx.s = await startServer({ config: { demo: true } })
  ctx.browser = await launch()
})
Web.after(async ctx => {
  await ctx.browser.close()
  await ctx.s.stop()
})
Web.before.each(ctx => { ctx.contexts = [] })
Web.after.each(async ctx => { for (const c of ctx.contexts) await c.close() })

Web('a participant attaches an image and a PDF, another sees the image inline and the PDF as a card; search lists hits', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/files-1', { participants: ['alice', 'bob'], subject: 'Files' })
  const a = await newPage(ctx.browser)
  const b = await newPage(ctx.browser)
  ctx.contexts.push(a.context, b.context)
  await signIn(a.page, ctx.s.url, 'alice', 'Alice', '#/c/files-1')
  await signIn(b.page, ctx.s.url, 'bob', 'Bob', '#/c/files-1')
  await a.page.getByTestId('composer-input').waitFor()

  await a.page.getByTestId('composer-input').fill('the screenshot')
  await a.page.getByTestId('attach-input').setInputFiles({ name: 'shot.png', mimeType: 'image/png', buffer: PNG_1X1 })
  await a.page.getByTestId('attach-input').page().locator('[data-testid=message][data-status=sent] [data-testid=attachment-image]').waitFor()
  await a.page.getByTestId('attach-input').setInputFiles({ name: 'report.pdf', mimeType: 'application/pdf', buffer: PDF_BYTES })

  const img = b.page.locator('[data-testid=attachment-image]')
  await img.waitFor()
  // The image really loaded from the server (its natural size is the PNG's).
  await b.page.waitForFunction(() => {
    const el = document.querySelector('[data-testid=attachment-image]') as HTMLImageElement | null
    return el !== null && el.complete && el.naturalWidth === 1
  })
  const card = b.page.locator('[data-testid=attachment-link]')
  await card.waitFor()
  assert.match(await card.innerText(), /report\.pdf\s+\d+ B/)
  await b.page.locator('[data-testid=attachment-image]').evaluate(img => (img as HTMLImageElement).alt).then(alt => assert.is(alt, 'shot.png'))
  const href = await card.getAttribute('href')
  assert.ok(href !== null && href.includes('/files/'))
  const res = await fetch(new URL(href, ctx.s.url))
  assert.is(res.headers.get('content-type'), 'application/pdf')
  assert.match(res.headers.get('content-disposition') ?? '', /^attachment/)
  await shot(b.page, 'attachments')

  await sendText(b.page, 'Le café est prêt')
  await messageWith(a.page, 'Le café est prêt').waitFor()
  // Search lives in the conversation list: it searches every conversation of the user.
  await a.page.getByTestId('search').fill('CAFE pret')
  await a.page.getByTestId('search').press('Enter')
  await a.page.getByTestId('search-hit').first().waitFor()
  assert.equal(await a.page.getByTestId('search-hit-text').allInnerTexts(), ['Le café est prêt'])
  await a.page.getByTestId('search').fill('screenshot')
  await a.page.getByTestId('search').press('Enter')
  await a.page.getByTestId('search-hit').filter({ hasText: 'the screenshot' }).waitFor()
  await shot(a.page, 'search')
  // A hit opens its conversation.
  await a.page.getByTestId('search-hit').filter({ hasText: 'the screenshot' }).locator('a').click()
  assert.match(a.page.url(), /#\/c\/files-1$/)
})


Web('an upload shows its progress and can be cancelled: nothing is sent', async ctx => {
  await ctx.s.api('PUT', '/v1/conversations/files-2', { participants: ['alice'], subject: 'Big files' })
  const a = await newPage(ctx.browser)
  ctx.contexts.push(a.context)
  await signIn(a.page, ctx.s.url, 'alice', 'Alice', '#/c/files-2')
  await a.page.getByTestId('composer-input').waitFor()
  // Hold the upload at the network so it is still running when cancelled.
  let release = (): void => {}
  await a.page.route('**/files', async route => { await new Promise<void>(resolve => { release = resolve }); await route.continue().catch(() => {}) })
  await a.page.getByTestId('attach-input').setInputFiles({ name: 'big.pdf', mimeType: 'application/pdf', buffer: PDF_BYTES })
  const row = a.page.getByTestId('upload').filter({ hasText: 'big.pdf' })
  await row.locator('progress').waitFor()
  await shot(a.page, 'upload-progress')
  await row.getByTestId('upload-cancel').click()
  await row.waitFor({ state: 'detached' })
  release()
  await a.page.waitForTimeout(300)
  assert.is(await a.page.getByTestId('message').count(), 0)
  assert.is(await a.page.getByTestId('chat-notice').isVisible(), false, 'a cancel is no error')
})

Web.run()
