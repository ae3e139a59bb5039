/** Plain-text tables that are also valid Markdown (aligned columns, pipe separated). */

export type Align = 'left' | 'right'

export const markdownTable = (headers: readonly string[], rows: ReadonlyArray<readonly string[]>, align: readonly Align[] = []): string => {
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...rows.map(r => (r[i] ?? '').length)))
  const cell = (text: string, i: number): string => (align[i] ?? 'left') === 'right' ? text.padStart(widths[i]) : text.padEnd(widths[i])
  const line = (cells: readonly string[]): string => `| ${headers.map((_, i) => cell(cells[i] ?? '', i)).join(' | ')} |`
  const rule = `|${widths.map((w, i) => (align[i] ?? 'left') === 'right' ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`).join('|')}|`
  return [line(headers), rule, ...rows.map(line)].join('\n')
}

/** A number with a fixed number of decimals, or a dash for NaN / null / undefined. */
export const fmt = (value: number | null | undefined, decimals = 1): string =>
  value === null || value === undefined || Number.isNaN(value) ? '–' : value.toFixed(decimals)

/** Bytes as whole MiB. */
export const mib = (bytes: number): string => (bytes / (1024 * 1024)).toFixed(0)
