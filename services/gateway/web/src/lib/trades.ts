// The trades tape: newest first, bursts aggregated so that it stays readable at hundreds of
// trades per second. A trade joins a recent row with the same venue, symbol, side and price
// whose burst started at most `windowMs` before it; otherwise it opens a new row on top.

import { round15 } from './ladder'
import type { Side, WireTrade } from './types'

export interface Trade {
  venue: string
  symbol: string
  side: Side
  price: number
  size: number
  /** Exchange time in ms (falls back to the receive time). */
  ts: number
}

export interface TapeRow {
  key: number
  venue: string
  symbol: string
  side: Side
  price: number
  size: number
  count: number
  tsFirst: number
  tsLast: number
  /** Client time (ms) the row was created or last grew: recent rows are highlighted. */
  touched: number
}

export interface TapeOptions {
  maxRows?: number
  windowMs?: number
  /** Rows from the top searched for a burst to join. */
  lookback?: number
}

export class Tape {
  rows: TapeRow[] = []
  /** Trades seen (not rows). */
  trades = 0
  readonly maxRows: number
  /** Burst window; may be changed at any time (see `adaptiveWindow`). */
  windowMs: number
  readonly lookback: number
  private nextKey = 1

  constructor(opts: TapeOptions = {}) {
    this.maxRows = opts.maxRows ?? 200
    this.windowMs = opts.windowMs ?? 250
    this.lookback = opts.lookback ?? 24
  }

  clear(): void {
    this.rows = []
    this.trades = 0
  }

  /** Add trades in the order they happened (oldest first); `now` is the client time. */
  push(trades: Iterable<Trade>, now = 0): void {
    const rows = this.rows
    for (const t of trades) {
      if (!(t.size > 0) || !Number.isFinite(t.price)) continue
      this.trades++
      let merged = false
      const n = Math.min(rows.length, this.lookback)
      for (let i = 0; i < n; i++) {
        const r = rows[i]
        if (
          r.price === t.price &&
          r.side === t.side &&
          r.venue === t.venue &&
          r.symbol === t.symbol &&
          t.ts - r.tsFirst <= this.windowMs &&
          t.ts >= r.tsFirst - this.windowMs
        ) {
          r.size = round15(r.size + t.size)
          r.count++
          r.touched = now
          if (t.ts > r.tsLast) r.tsLast = t.ts
          merged = true
          break
        }
      }
      if (!merged) {
        rows.unshift({
          key: this.nextKey++,
          venue: t.venue,
          symbol: t.symbol,
          side: t.side,
          price: t.price,
          size: t.size,
          count: 1,
          tsFirst: t.ts,
          tsLast: t.ts,
          touched: now,
        })
      }
    }
    if (rows.length > this.maxRows) rows.length = this.maxRows
  }
}

/** Normalize a gateway trade (`ts_exch` in ns) for the tape. */
export function toTrade(
  w: WireTrade,
  venue: string,
  symbol: string,
  fallbackMs: number,
): Trade | null {
  const side = w.side === 'buy' || w.side === 'sell' ? w.side : null
  if (side === null || typeof w.price !== 'number' || typeof w.size !== 'number') return null
  const ts = typeof w.ts_exch === 'number' && w.ts_exch > 0 ? w.ts_exch / 1e6 : fallbackMs
  return { venue: w.venue ?? venue, symbol: w.symbol ?? symbol, side, price: w.price, size: w.size, ts }
}

/** Trades per second and volume over a sliding window, for the tape's header. */
export class RateWindow {
  private times: number[] = []
  private sizes: number[] = []
  private head = 0
  constructor(readonly windowMs = 10_000) {}

  add(now: number, size: number): void {
    this.times.push(now)
    this.sizes.push(size)
    this.trim(now) // also when rate() is not read (a hidden tab gets no animation frames)
  }

  private trim(now: number): void {
    while (this.head < this.times.length && this.times[this.head] < now - this.windowMs) this.head++
    if (this.head > 4096 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head)
      this.sizes = this.sizes.slice(this.head)
      this.head = 0
    }
  }

  /** Entries held in memory (the window's, and some not yet compacted away). */
  get held(): number {
    return this.times.length
  }

  /** [events per second, summed size per second] over the window ending at `now`. */
  rate(now: number): [number, number] {
    this.trim(now)
    const n = this.times.length - this.head
    let vol = 0
    for (let i = this.head; i < this.sizes.length; i++) vol += this.sizes[i]
    return [(n * 1000) / this.windowMs, (vol * 1000) / this.windowMs]
  }

  clear(): void {
    this.times = []
    this.sizes = []
    this.head = 0
  }
}

/** A burst window that grows with the trade rate, so that the tape stays readable: 250 ms up to
 *  50 trades/s, then 500 ms, 1 s past 300/s and 2 s past 1,000/s. */
export function adaptiveWindow(tradesPerSecond: number): number {
  if (tradesPerSecond > 1000) return 2000
  if (tradesPerSecond > 300) return 1000
  if (tradesPerSecond > 50) return 500
  return 250
}
