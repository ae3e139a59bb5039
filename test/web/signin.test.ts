import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startServer } from '../helpers/server.ts'
import { createConversation, launch, newPage, sendText, signIn } from './helpers.ts'

const SignIn = suite('demo sign-in in Chromium')

SignIn('one sign-in asks the server for one demo token, used for REST and the sync connection', async () => {
  const s = await startServer({ config: { demo: true } })
  const browser = await launch()
  try {
    const { page } = await newPage(browser)
    let asked = 0
    page.on('request', r => { if (new URL(r.url()).pathname === '/demo/token') asked++ })
    await signIn(page, s.url, 'dana', 'Dana')
    await createConversation(page, { id: 'signin-1' })
    await sendText(page, 'hello')
    await page.locator('[data-testid=message][data-status=sent]').waitFor()
    assert.is(asked, 1)
  } finally {
    await browser.close()
    await s.stop()
  }
})

SignIn.run()
