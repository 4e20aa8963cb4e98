// Latency measured in the browser: the last N samples, summarized as percentiles.

export interface Summary {
  p50: number
  p95: number
  p99: number
  max: number
  count: number
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

export class LatencyWindow {
  private buf: Float64Array
  private n = 0
  private i = 0
  constructor(readonly size = 2048) {
    this.buf = new Float64Array(size)
  }

  add(us: number): void {
    if (!Number.isFinite(us)) return
    this.buf[this.i] = us < 0 ? 0 : us
    this.i = (this.i + 1) % this.size
    if (this.n < this.size) this.n++
  }

  get count(): number {
    return this.n
  }

  summary(): Summary | null {
    if (this.n === 0) return null
    const s = Array.from(this.buf.subarray(0, this.n)).sort((a, b) => a - b)
    return {
      p50: percentile(s, 50),
      p95: percentile(s, 95),
      p99: percentile(s, 99),
      max: s[s.length - 1],
      count: this.n,
    }
  }

  clear(): void {
    this.n = 0
    this.i = 0
  }
}
