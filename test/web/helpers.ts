/** Chromium for the web tests (Debian's chromium, driven by playwright-core) and page helpers. */
import { mkdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core'

export const CHROMIUM = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/web/', import.meta.url))

export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

export const launch = async (): Promise<Browser> => await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync']
})

/** A fresh browser context (its own storage) with one page, desktop-sized unless told. */
export const newPage = async (browser: Browser, viewport = DESKTOP): Promise<{ context: BrowserContext, page: Page }> => {
  const context = await browser.newContext({ viewport, hasTouch: viewport.width < 720, isMobile: viewport.width < 720 })
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
  await page.getByTestId('me').waitFor({ state: 'attached' })
}

/** Creates a conversation through the "New" dialog and waits for its composer. */
export const createConversation = async (page: Page, c: { id: string, subject?: string, participants?: string, guestAccess?: 'write' | 'read' | 'none' }): Promise<void> => {
  await page.getByTestId('new-open').click()
  await page.getByTestId('new-id').fill(c.id)
  if (c.subject !== undefined) await page.getByTestId('new-subject').fill(c.subject)
  if (c.participants !== undefined) await page.getByTestId('new-participants').fill(c.participants)
  if (c.guestAccess !== undefined) await page.getByTestId('new-guest-access').selectOption(c.guestAccess)
  await page.getByTestId('new-submit').click()
  await page.getByTestId('composer-input').waitFor()
}

/** Opens a conversation as a guest through the "Open as guest" dialog. */
export const openAsGuest = async (page: Page, id: string): Promise<void> => {
  await page.getByTestId('guest-open').click()
  await page.getByTestId('guest-id').fill(id)
  await page.getByTestId('guest-submit').click()
}

/** Sends a message through the composer. */
export const sendText = async (page: Page, text: string): Promise<void> => {
  await page.getByTestId('composer-input').fill(text)
  await page.getByTestId('composer-input').press('Enter')
}

/** The message showing `text`. */
export const messageWith = (page: Page, text: string): Locator => page.locator('[data-testid=message]', { hasText: text })

/** Clicks one of a message's actions (reply, react, edit, delete), shown on hover. */
export const messageAction = async (page: Page, text: string, action: 'reply' | 'react' | 'edit' | 'delete'): Promise<void> => {
  const m = messageWith(page, text)
  await m.locator('.bubble').hover()
  await m.getByTestId(action).click()
}

/** The texts of the messages shown. */
export const shownTexts = async (page: Page): Promise<string[]> => await page.getByTestId('message-text').allInnerTexts()

const axeSource = async (): Promise<string> => await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** Runs axe-core on the page; returns its serious and critical violations as readable lines. */
export const seriousA11yIssues = async (page: Page): Promise<string[]> => {
  // Evaluated over the DevTools protocol: the page's CSP (no inline scripts) stays as it is.
  if (await page.evaluate(() => !('axe' in window))) await page.evaluate(await axeSource())
  const result = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: unknown) => Promise<{ violations: Array<{ id: string, impact: string | null, help: string, nodes: Array<{ target: unknown[] }> }> }> } }).axe
    return await axe.run(document, { resultTypes: ['violations'] })
  })
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.impact ?? ''} ${v.id}: ${v.help} (${v.nodes.map(n => JSON.stringify(n.target)).slice(0, 3).join(', ')})`)
}
