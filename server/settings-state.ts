/**
 * The live settings: read synchronously by every decision, changed through `PATCH /v1/settings`,
 * persisted before the change is visible, and announced to the rooms so that rights which
 * depend on a setting (`browserSync` for guests) change on live connections at once.
 */
import { applySettingsPatch, settingsFromStored, type Settings } from '../shared/settings.ts'
import type { DocStore } from './storage/port.ts'

export class SettingsState {
  private value: Settings
  private readonly store: DocStore
  private readonly onChange: (s: Settings) => void
  private queue: Promise<unknown> = Promise.resolve()

  private constructor (store: DocStore, value: Settings, onChange: (s: Settings) => void) {
    this.store = store
    this.value = value
    this.onChange = onChange
  }

  static async load (store: DocStore, onChange: (s: Settings) => void): Promise<SettingsState> {
    return new SettingsState(store, settingsFromStored(await store.getSettings()), onChange)
  }

  get current (): Settings { return this.value }

  /**
   * Validates, persists and applies a patch; throws INVALID_REQUEST for a bad one. Patches run
   * one at a time, each on the result of the previous one, so concurrent patches never undo
   * each other.
   */
  async patch (patch: unknown): Promise<Settings> {
    const run = this.queue.then(async () => {
      const next = applySettingsPatch(this.value, patch)
      await this.store.putSettings({ ...next })
      this.value = next
      this.onChange(next)
      return next
    })
    this.queue = run.catch(() => {})
    return await run
  }
}
