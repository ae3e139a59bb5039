/** A tiny element builder: `h('button', { class: 'x', onclick }, 'Send')`. No framework. */

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>

export const h = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] => {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v)
    else if (v === true) el.setAttribute(k, '')
    else el.setAttribute(k, String(v))
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c)
  }
  return el
}

/** Replaces the children of `el`. */
export const mount = (el: Element, ...children: Child[]): void => {
  el.replaceChildren(...children.filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false)
    .map(c => typeof c === 'number' ? String(c) : c))
}

/** The value of a named field in a form. */
export const field = (form: HTMLFormElement, name: string): string => {
  const el = form.elements.namedItem(name)
  return el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement ? el.value.trim() : ''
}

export const timeOf = (ms: number): string => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })

const sameDay = (a: Date, b: Date): boolean => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()

/** A day separator's label: "Today", "Yesterday" or the date. */
export const dayLabel = (ms: number, now = Date.now()): string => {
  const d = new Date(ms)
  const today = new Date(now)
  if (sameDay(d, today)) return 'Today'
  if (sameDay(d, new Date(now - 86_400_000))) return 'Yesterday'
  return d.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long', ...(d.getFullYear() !== today.getFullYear() ? { year: 'numeric' } : {}) })
}

/** A short relative time: "now", "5 min", the time today, else the date. */
export const relativeTime = (ms: number, now = Date.now()): string => {
  const s = Math.round((now - ms) / 1000)
  if (s < 45) return 'now'
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min`
  if (sameDay(new Date(ms), new Date(now))) return timeOf(ms)
  return new Date(ms).toLocaleDateString([], { day: 'numeric', month: 'short' })
}

/** The exact time, for a title on hover. */
export const exactTime = (ms: number): string => new Date(ms).toLocaleString([], { dateStyle: 'full', timeStyle: 'short' })

/** A `<time>` with a relative label, the exact time on hover, refreshed by `refreshTimes`. */
export const timeEl = (ms: number, cls = 'when'): HTMLTimeElement =>
  h('time', { class: cls, datetime: new Date(ms).toISOString(), title: exactTime(ms), 'data-ms': ms }, relativeTime(ms))

/** Refreshes the relative labels of every `<time data-ms>` under `root`. */
export const refreshTimes = (root: ParentNode): void => {
  const now = Date.now()
  root.querySelectorAll<HTMLTimeElement>('time[data-ms]').forEach(t => {
    const label = relativeTime(Number(t.dataset.ms), now)
    if (t.textContent !== label) t.textContent = label
  })
}
