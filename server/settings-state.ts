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
  private readonly onPatched: () => void
  private queue: Promise<unknown> = Promise.resolve()

  private constructor (store: DocStore, value: Settings, onChange: (s: Settings) => void, onPatched: () => void) {
    this.store = store
    this.value = value
    this.onChange = onChange
    this.onPatched = onPatched
  }

  /** `onChange`: the value changed (here or, read again, elsewhere); `onPatched`: a patch here was stored (other nodes reload). */
  static async load (store: DocStore, onChange: (s: Settings) => void, onPatched: () => void = () => {}): Promise<SettingsState> {
    return new SettingsState(store, settingsFromStored(await store.getSettings()), onChange, onPatched)
  }

  /**
   * Reads the settings from the store again (another node of the cluster changed them) and
   * applies them when they differ (a cluster node reads them every second).
   */
  async reload (): Promise<void> {
    const run = this.queue.then(async () => {
      const next = settingsFromStored(await this.store.getSettings())
      if (JSON.stringify(next) === JSON.stringify(this.value)) return
      this.value = next
      this.onChange(this.value)
    })
    this.queue = run.catch(() => {})
    await run
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
      this.onPatched()
      return next
    })
    this.queue = run.catch(() => {})
    return await run
  }
}
