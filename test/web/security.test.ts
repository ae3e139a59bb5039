/**
 * The web UI under its Content-Security-Policy (issue 13), in Chromium: no violation while a
 * user signs in, opens a conversation and exchanges a message; and a hash that is not valid
 * percent-encoding shows a notice instead of breaking the page.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer } from '../helpers/server.ts'
import { createConversation, launch, newPage, sendText, signIn } from './helpers.ts'
import { parseRoute } from '../../web/route.ts'

const Security = suite('web UI security in Chromium')

Security('the page works under its CSP (no violation) and survives #/c/%E0%A4%A', async () => {
  const s = await startServer({ config: { demo: true } })
  const browser = await launch()
  try {
    const { page } = await newPage(browser)
    const csp = (await page.request.get(s.url + '/')).headers()['content-security-policy'] ?? ''
    assert.match(csp, /default-src 'none'/)
    assert.match(csp, /script-src 'self'/)
    const violations: string[] = []
    const errors: string[] = []
    page.on('console', m => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()) })
    page.on('pageerror', e => errors.push(e.message))
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', e => console.error(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`))
    })
    await signIn(page, s.url, 'alice', 'Alice')
    await createConversation(page, { id: 'csp-1' })
    await sendText(page, 'styled and connected')
    await page.locator('[data-testid=message][data-status=sent]').waitFor()
    // The inline stylesheet applied (it is allowed by its hash): the layout is a grid or flex box.
    const display = await page.locator('.app').evaluate(el => getComputedStyle(el).display)
    assert.ok(display === 'grid' || display === 'flex', `layout display is ${display}`)

    await page.evaluate(() => { location.hash = '#/c/%E0%A4%A' })
    await page.getByText('This link does not name a conversation').waitFor()
    await page.evaluate(() => { location.hash = '#/c/csp-1' })
    await page.getByTestId('messages').getByText('styled and connected').waitFor()
    assert.equal(errors, [])
    assert.equal(violations, [])
  } finally {
    await browser.close()
    await s.stop()
  }
})

Security('parseRoute: conversations, guests, home, and bad percent-encoding', () => {
  assert.equal(parseRoute('#/c/a%20b'), { kind: 'open', id: 'a b', asGuest: false })
  assert.equal(parseRoute('#/g/room'), { kind: 'open', id: 'room', asGuest: true })
  assert.equal(parseRoute(''), { kind: 'home' })
  assert.equal(parseRoute('#/c/%E0%A4%A'), { kind: 'bad', hash: '#/c/%E0%A4%A' })
})

Security.run()
