/** Chromium for the web tests (Debian's chromium, driven by playwright-core) and page helpers. */
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/web/', import.meta.url))

export const launch = async (): Promise<Browser> => await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync']
})

/** A fresh browser context (its own storage) with one page. */
export const newPage = async (browser: Browser): Promise<{ context: BrowserContext, page: Page }> => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 640 } })
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  return { context, page }
}

/** Saves a screenshot as test-artifacts/web/<name>.png. */
export const shot = async (page: Page, name: string): Promise<void> => {
  await mkdir(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: `${ARTIFACTS}${name}.png` })
}

/** Signs in through the demo form and waits for the app. */
export const signIn = async (page: Page, baseUrl: string, userId: string, name = userId, hash = ''): Promise<void> => {
  await page.goto(`${baseUrl}/${hash}`)
  await page.getByTestId('signin-user').fill(userId)
  await page.getByTestId('signin-name').fill(name)
  await page.getByTestId('signin-submit').click()
  await page.getByTestId('me').waitFor()
}

/** Sends a message through the composer. */
export const sendText = async (page: Page, text: string): Promise<void> => {
  await page.getByTestId('composer-input').fill(text)
  await page.getByTestId('composer-input').press('Enter')
}

/** The texts of the messages shown. */
export const shownTexts = async (page: Page): Promise<string[]> => await page.getByTestId('message-text').allInnerTexts()
