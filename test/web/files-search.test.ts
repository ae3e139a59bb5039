import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Browser, BrowserContext } from 'playwright-core'
import { startServer, type TestServer } from '../helpers/server.ts'
import { PDF_BYTES, PNG_1X1 } from '../helpers/uploads.ts'
import { launch, newPage, sendText, shot, signIn } from './helpers.ts'

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
  const href = await card.getAttribute('href')
  assert.ok(href !== null && href.includes('/files/'))
  const res = await fetch(new URL(href, ctx.s.url))
  assert.is(res.headers.get('content-type'), 'application/pdf')
  assert.match(res.headers.get('content-disposition') ?? '', /^attachment/)
  await shot(b.page, 'attachments')

  await sendText(b.page, 'Le café est prêt')
  await a.page.getByText('Le café est prêt').waitFor()
  await a.page.getByTestId('search-input').fill('CAFE pret')
  await a.page.getByTestId('search-input').press('Enter')
  await a.page.getByTestId('search-hit').first().waitFor()
  assert.equal(await a.page.getByTestId('search-hit-text').allInnerTexts(), ['Le café est prêt'])
  await a.page.getByTestId('search-input').fill('screenshot')
  await a.page.getByTestId('search-input').press('Enter')
  await a.page.getByTestId('search-hit').filter({ hasText: 'the screenshot' }).waitFor()
  await shot(a.page, 'search')
})

Web.run()
