/** Command-line option checks shared by the benchmarks. */

/** `text` as a number in (0, max], or an error naming the option `--name`. */
export const positive = (name: string, text: string, max: number): number => {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`--${name} must be a number in (0, ${max}], got ${JSON.stringify(text)}`)
  return n
}
