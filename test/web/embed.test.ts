/**
 * Embedding (parley/client/ui): the example page at /embed-example mounts a chatbox and an inbox
 * into a host page with its own look, under its CSP, themed with the --parley-* variables.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer } from '../helpers/server.ts'
import { launch, newPage, PHONE, seriousA11yIssues, shot } from './helpers.ts'

const Embed = suite('embedding in Chromium')

Embed('the example page mounts a chatbox and an inbox; they talk, keep the host page\'s look and pass axe', async () => {
  const s = await startServer({ config: { demo: true } })
  const browser = await launch()
  try {
    await s.api('PUT', '/v1/conversations/support', { participants: ['alice'], subject: 'Help with my order' })
    await s.api('POST', '/v1/conversations/support/messages', [{ text: 'Hi! How can we help?', sender: 'alice', type: 'UserMessage' }])
    const { page } = await newPage(browser)
    const problems: string[] = []
    page.on('console', m => { if (/Content Security Policy/i.test(m.text())) problems.push(m.text()) })
    page.on('pageerror', e => problems.push(e.message))
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', e => console.error(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`))
    })
    await page.goto(`${s.url}/embed-example?user=alice&conversation=support`)
    const box = page.locator('#chatbox')
    await box.locator('[data-testid=message]', { hasText: 'Hi! How can we help?' }).waitFor()
    await box.getByTestId('composer-input').fill('Embedded and live')
    await box.getByTestId('composer-input').press('Enter')
    await box.locator('[data-testid=message][data-status=sent]', { hasText: 'Embedded and live' }).waitFor()
    const inbox = page.locator('#inbox')
    await inbox.locator('[data-testid=conversation][data-id=support]').click()
    await inbox.locator('[data-testid=message]', { hasText: 'Embedded and live' }).waitFor()
    // The host page keeps its font; the chat takes the host's theme variable.
    assert.match(await page.evaluate(() => getComputedStyle(document.body).fontFamily), /Georgia/)
    const accent = await box.locator('.parley').first().evaluate(el => getComputedStyle(el).getPropertyValue('--parley-accent').trim())
    assert.is(accent, '#2f4a3a')
    await shot(page, 'ui-embed-example-desktop')
    assert.equal(await seriousA11yIssues(page), [])
    // In a phone-sized window the host stacks its columns; each chat takes its element's width.
    await page.setViewportSize(PHONE)
    await box.locator('[data-testid=message]', { hasText: 'Embedded and live' }).waitFor()
    await shot(page, 'ui-embed-example-phone')
    assert.is(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 0)
    assert.equal(problems, [])
    const plain = await fetch(s.url + '/embed-example.js')
    assert.is(plain.status, 200)
  } finally {
    await browser.close()
    await s.stop()
  }
  const off = await startServer()
  try {
    assert.is((await fetch(off.url + '/embed-example')).status, 404, 'demo mode only')
  } finally {
    await off.stop()
  }
})

Embed.run()
