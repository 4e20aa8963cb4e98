// Time series of the last minutes (mid price and spread per venue), bucketed so that a burst of
// updates costs one point: within a bucket the latest value replaces the previous one.

export interface Point {
  t: number // ms
  mid: number // NaN: a break (the book stopped being live at t), drawn as a gap
  spreadBps: number
}

export class Series {
  private pts: Point[] = []
  private head = 0
  constructor(
    readonly windowMs = 5 * 60_000,
    readonly bucketMs = 250,
  ) {}

  add(t: number, mid: number, spreadBps: number): void {
    if (!Number.isFinite(mid) || !Number.isFinite(spreadBps)) return
    const last = this.pts.length > this.head ? this.pts[this.pts.length - 1] : null
    const afterBreak = last !== null && Number.isNaN(last.mid) // a break is never overwritten
    if (
      last !== null &&
      !afterBreak &&
      Math.floor(last.t / this.bucketMs) === Math.floor(t / this.bucketMs)
    ) {
      last.t = t
      last.mid = mid
      last.spreadBps = spreadBps
    } else if (last === null || t > last.t || (afterBreak && t === last.t)) {
      this.pts.push({ t, mid, spreadBps })
    }
    this.trim(t)
  }

  /** The book stopped being live at `t`: the line ends there instead of holding its last value
   * up to now; the next `add` starts a new segment. */
  cut(t: number): void {
    const last = this.last()
    if (last === null || this.broken || t < last.t) return
    this.pts.push({ t, mid: NaN, spreadBps: NaN })
    this.trim(t)
  }

  /** Whether the newest point is a break. */
  get broken(): boolean {
    const last = this.last()
    return last !== null && Number.isNaN(last.mid)
  }

  trim(now: number): void {
    const cutoff = now - this.windowMs
    while (this.head < this.pts.length && this.pts[this.head].t < cutoff) this.head++
    if (this.head > 256 && this.head * 2 > this.pts.length) {
      this.pts = this.pts.slice(this.head)
      this.head = 0
    }
  }

  get length(): number {
    return this.pts.length - this.head
  }

  /** Points oldest first (a copy-free view: do not modify). */
  points(): readonly Point[] {
    return this.head === 0 ? this.pts : this.pts.slice(this.head)
  }

  last(): Point | null {
    return this.pts.length > this.head ? this.pts[this.pts.length - 1] : null
  }

  clear(): void {
    this.pts = []
    this.head = 0
  }
}

/** Min and max of `values`, widened so that a flat line still has a visible range. */
export function extent(values: Iterable<number>, minSpan = 0): [number, number] | null {
  let lo = Infinity
  let hi = -Infinity
  for (const v of values) {
    if (!Number.isFinite(v)) continue
    if (v < lo) lo = v
    if (v > hi) hi = v
  }
  if (lo > hi) return null
  const span = hi - lo
  if (span < minSpan) {
    const c = (hi + lo) / 2
    return [c - minSpan / 2, c + minSpan / 2]
  }
  return [lo, hi]
}

/** About `count` round tick values covering [lo, hi] (1, 2, 5 x 10^n steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo || count < 1) return []
  const raw = (hi - lo) / count
  const mag = Math.pow(10, Math.floor(Math.log10(raw)))
  const norm = raw / mag
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag
  const out: number[] = []
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)))
  }
  return out
}
