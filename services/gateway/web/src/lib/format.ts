// Number, price, size, time and latency formatting. Pure functions, no locale surprises:
// '.' decimal point and ',' thousands separators everywhere.

const MAX_DECIMALS = 10

/** Decimals of `x` at 12 significant digits (0.00012 -> 5, 1e-7 -> 7, 65000 -> 0,
 *  65061.200000000004 -> 1). */
export function decimalsOf(x: number): number {
  if (!Number.isFinite(x)) return 0
  // 12 significant digits: float noise (65061.200000000004) is not precision
  const s = String(Math.abs(Number(x.toPrecision(12))))
  const e = s.indexOf('e')
  if (e >= 0) {
    const mant = s.slice(0, e)
    const exp = Number(s.slice(e + 1))
    const dot = mant.indexOf('.')
    const mantDec = dot < 0 ? 0 : mant.length - dot - 1
    return Math.min(MAX_DECIMALS, Math.max(0, mantDec - exp))
  }
  const dot = s.indexOf('.')
  return dot < 0 ? 0 : Math.min(MAX_DECIMALS, s.length - dot - 1)
}

/** Decimals needed to show every price in `prices` exactly (capped at `cap`). */
export function priceDecimals(prices: Iterable<number>, cap = 8): number {
  let d = 0
  for (const p of prices) {
    const n = decimalsOf(p)
    if (n > d) d = n
  }
  return Math.min(d, cap)
}

function groupThousands(intPart: string): string {
  return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
}

/** Fixed decimals with thousands separators: fmtFixed(64999.5, 2) = "64,999.50". */
export function fmtFixed(x: number | null | undefined, decimals: number, sep = true): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const s = Math.abs(x).toFixed(Math.max(0, Math.min(20, decimals)))
  const [i, f] = s.split('.')
  const sign = x < 0 && Number(s) !== 0 ? '-' : ''
  const ip = sep ? groupThousands(i) : i
  return f === undefined ? sign + ip : `${sign}${ip}.${f}`
}

/** A price with the instrument's decimals (`decimals` from `priceDecimals`). */
export function fmtPrice(x: number | null | undefined, decimals: number): string {
  return fmtFixed(x, decimals)
}

/** A base-asset size. With `decimals` (the instrument's size precision, see `priceDecimals`)
 *  every size gets the same decimals so that columns align (whole units from 1,000). */
export function fmtSize(x: number | null | undefined, decimals?: number): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const a = Math.abs(x)
  if (decimals !== undefined) {
    // a column of one instrument: whole units from 1,000 up, abbreviated only past 10 million
    if (a >= 1e9) return fmtFixed(x / 1e9, 2) + 'B'
    if (a >= 1e7) return fmtFixed(x / 1e6, 2) + 'M'
    return fmtFixed(x, a >= 1000 ? 0 : decimals)
  }
  if (a >= 1e9) return fmtFixed(x / 1e9, 2) + 'B'
  if (a >= 1e6) return fmtFixed(x / 1e6, 2) + 'M'
  if (a >= 1e5) return fmtFixed(x / 1e3, 1) + 'K'
  if (a === 0) return '0'
  if (a >= 1000) return fmtFixed(x, 0)
  if (a >= 100) return fmtFixed(x, 2)
  if (a >= 1) return fmtFixed(x, 3)
  if (a >= 0.0001) return fmtFixed(x, 5)
  return x.toExponential(2)
}

/** Compact counts and notionals: 950, 12.3K, 4.56M, 1.20B. */
export function fmtCompact(x: number | null | undefined, decimals = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const a = Math.abs(x)
  if (a >= 1e9) return fmtFixed(x / 1e9, 2) + 'B'
  if (a >= 1e6) return fmtFixed(x / 1e6, 2) + 'M'
  if (a >= 1e4) return fmtFixed(x / 1e3, decimals) + 'K'
  if (a >= 100 || Number.isInteger(x)) return fmtFixed(x, 0)
  return fmtFixed(x, decimals)
}

/** Basis points: 3 decimals under 1 bps, 2 under 10, 1 under 100, else none. */
export function fmtBps(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const a = Math.abs(x)
  const d = a < 1 ? 3 : a < 10 ? 2 : a < 100 ? 1 : 0
  return fmtFixed(x, d)
}

/** A latency given in microseconds: "850µs", "12.3ms", "1.20s". */
export function fmtLatencyUs(us: number | null | undefined): string {
  if (us === null || us === undefined || !Number.isFinite(us)) return '—'
  if (us < 0) return '0µs'
  if (us < 1000) return `${Math.round(us)}µs`
  if (us < 10_000) return `${(us / 1000).toFixed(2)}ms`
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)}ms`
  return `${(us / 1e6).toFixed(2)}s`
}

/** Bytes in binary units: "812 KiB", "36.7 MiB". */
export function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined || !Number.isFinite(b)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = Math.abs(b)
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  const s = i === 0 || v >= 100 ? v.toFixed(0) : v.toFixed(1)
  return `${b < 0 ? '-' : ''}${s} ${units[i]}`
}

export function fmtPercent(x: number | null | undefined, decimals = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  return `${x.toFixed(decimals)}%`
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0')
}

/** Local wall-clock time of a timestamp in ms: "14:03:07.125" (or without ms). */
export function fmtTime(ms: number | null | undefined, withMs = true): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  const d = new Date(ms)
  const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base
}

/** Seconds as "4s", "3m 05s", "2h 01m". */
export function fmtDuration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—'
  const t = Math.max(0, Math.floor(s))
  if (t < 60) return `${t}s`
  if (t < 3600) return `${Math.floor(t / 60)}m ${pad(t % 60)}s`
  return `${Math.floor(t / 3600)}h ${pad(Math.floor((t % 3600) / 60))}m`
}

/** Nanoseconds since the epoch (gateway timestamps) to milliseconds, or null. */
export function nsToMs(ns: number | null | undefined): number | null {
  return typeof ns === 'number' && Number.isFinite(ns) && ns > 0 ? ns / 1e6 : null
}

/** A mid price: one more decimal than the instrument's when it falls between two ticks. */
export function fmtMid(x: number | null | undefined, decimals: number): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const scaled = x * Math.pow(10, decimals)
  const exact = Math.abs(scaled - Math.round(scaled)) < 1e-6
  return fmtFixed(x, exact ? decimals : Math.min(decimals + 1, 10))
}
