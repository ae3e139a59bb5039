/**
 * Percentiles and small summaries for benchmark samples. Pure functions; no I/O.
 */

export interface Summary {
  count: number
  min: number
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** The `p`-th percentile (0..100) of an ascending array, nearest-rank; NaN when empty. */
export const percentileOfSorted = (sorted: ArrayLike<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  const index = Math.min(sorted.length - 1, Math.max(0, rank - 1))
  return sorted[index]
}

/** Sorts a copy of `values` and summarizes it. */
export const summarize = (values: ArrayLike<number>): Summary => {
  const sorted = Float64Array.from(values).sort()
  let sum = 0
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]
  return {
    count: sorted.length,
    min: sorted.length === 0 ? Number.NaN : sorted[0],
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    p50: percentileOfSorted(sorted, 50),
    p90: percentileOfSorted(sorted, 90),
    p99: percentileOfSorted(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]
  }
}

/**
 * A growable Float64 sample buffer: appending hundreds of thousands of latencies to a plain
 * array is fine too, but this keeps memory flat and predictable.
 */
export class Samples {
  #data: Float64Array
  #length = 0

  constructor (initialCapacity = 1024) {
    this.#data = new Float64Array(Math.max(16, initialCapacity))
  }

  get length (): number { return this.#length }

  push (value: number): void {
    if (this.#length === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2)
      next.set(this.#data)
      this.#data = next
    }
    this.#data[this.#length++] = value
  }

  values (): Float64Array { return this.#data.subarray(0, this.#length) }

  summary (): Summary { return summarize(this.values()) }
}
