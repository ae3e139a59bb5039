import { test } from 'uvu'
import { startServer } from '../helpers/server.ts'
import { launch, newPage, signIn, shot, createConversation, sendText, PHONE, seriousA11yIssues } from './helpers.ts'
test('try', async () => {
  const s = await startServer({ config: { demo: true } })
  const browser = await launch()
  try {
    await s.api('PUT', '/v1/users/bob', { name: 'Bob Builder' })
    const { page } = await newPage(browser)
    page.on('pageerror', e => console.log('PAGEERR', e.message))
    page.on('console', m => console.log('CONSOLE', m.text()))
    await signIn(page, s.url, 'alice', 'Alice')
    await page.getByTestId('list-empty').waitFor()
    await shot(page, 'try-empty')
    console.log(await seriousA11yIssues(page))
    await createConversation(page, { id: 'c1', subject: 'Launch plan', participants: 'bob' })
    await sendText(page, 'Hello @bob, ready?')
    await s.api('POST', '/v1/conversations/c1/messages', [{ text: 'Yes! Line one\nline two', sender: 'bob', type: 'UserMessage' }])
    console.log(JSON.stringify((await s.api('GET', '/v1/users/alice/conversations')).body))
    await page.getByTestId('messages').getByText('line two').waitFor()
    await shot(page, 'try-chat')
    console.log(await seriousA11yIssues(page))
    const { page: p2 } = await newPage(browser, PHONE)
    await signIn(p2, s.url, 'bob', 'Bob')
    await p2.getByTestId('conversation').first().waitFor()
    await shot(p2, 'try-phone-list')
    await p2.getByTestId('conversation').first().click()
    await p2.getByTestId('messages').getByText('line two').waitFor()
    await shot(p2, 'try-phone-chat')
    console.log(await seriousA11yIssues(p2))
  } finally { await browser.close(); await s.stop() }
})
test.run()
