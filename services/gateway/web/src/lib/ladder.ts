// The consolidated ladder, recomputed client-side for the venues the user has switched on.
//
// A consolidated level from the gateway is `[price, total, {venue: size}]`; a single venue's
// level is `[price, size]`. `filterLevels` keeps the sizes of the included venues only and
// recomputes totals (a level whose included size is 0 disappears). `buildLadder` adds the
// cumulative sizes, the best prices, spread, mid and the crossed-market flags.

import type { WireLevel } from './types'

export type VenueSizes = Record<string, number>

export interface Level {
  price: number
  total: number
  /** Sizes of the included venues at this price, in the order the gateway gave them. */
  venues: VenueSizes
}

export interface LadderRow extends Level {
  cum: number
  /** True when this level trades through the other side's best price (crossed market). */
  crossed: boolean
}

export interface Ladder {
  bids: LadderRow[] // best (highest) first
  asks: LadderRow[] // best (lowest) first
  bestBid: number | null
  bestAsk: number | null
  mid: number | null
  spread: number | null
  spreadBps: number | null
  crossed: boolean
  /** Largest level total among the rows shown (for the depth bars). */
  maxTotal: number
  /** Largest cumulative size among the rows shown. */
  maxCum: number
  venues: string[] // included venues that contribute at least one level
}

/** Sum with the float noise of binary fractions removed (15 significant digits). */
export function round15(x: number): number {
  return x === 0 ? 0 : Number(x.toPrecision(15))
}

/** `null` includes every venue. `fallbackVenue` names the venue of `[price, size]` levels. */
export function filterLevels(
  levels: readonly WireLevel[],
  included: ReadonlySet<string> | null,
  fallbackVenue = '',
): Level[] {
  const out: Level[] = []
  for (const lv of levels) {
    const price = lv[0]
    const per = lv.length > 2 ? (lv as [number, number, VenueSizes])[2] : null
    if (per === null || typeof per !== 'object') {
      if (included !== null && !included.has(fallbackVenue)) continue
      if (lv[1] > 0) out.push({ price, total: lv[1], venues: { [fallbackVenue]: lv[1] } })
      continue
    }
    if (included === null) {
      if (lv[1] > 0) out.push({ price, total: lv[1], venues: per })
      continue
    }
    const venues: VenueSizes = {}
    let total = 0
    let n = 0
    for (const venue in per) {
      const size = per[venue]
      if (included.has(venue) && size > 0) {
        venues[venue] = size
        total += size
        n++
      }
    }
    if (n > 0) out.push({ price, total: n === 1 ? total : round15(total), venues })
  }
  return out
}

/** Merge per-venue books (`[price, size]` levels) into consolidated levels: the client-side
 *  equivalent of the book builder's merge, for books already in one price unit. */
export function mergeBooks(
  books: ReadonlyArray<{ venue: string; levels: ReadonlyArray<readonly [number, number]> }>,
  side: 'bids' | 'asks',
  n = Infinity,
): Level[] {
  const acc = new Map<number, VenueSizes>()
  for (const { venue, levels } of books) {
    for (const [price, size] of levels) {
      if (!(size > 0)) continue
      let per = acc.get(price)
      if (per === undefined) acc.set(price, (per = {}))
      per[venue] = per[venue] === undefined ? size : round15(per[venue] + size)
    }
  }
  const prices = [...acc.keys()].sort((a, b) => (side === 'bids' ? b - a : a - b))
  const out: Level[] = []
  for (const price of prices.slice(0, n)) {
    const per = acc.get(price)!
    const sizes = Object.values(per)
    const total = sizes.length === 1 ? sizes[0] : round15(sizes.reduce((s, x) => s + x, 0))
    out.push({ price, total, venues: per })
  }
  return out
}

export function spreadBps(bid: number | null, ask: number | null): number | null {
  if (bid === null || ask === null) return null
  const mid = (bid + ask) / 2
  return mid > 0 ? ((ask - bid) / mid) * 1e4 : null
}

export interface LadderInput {
  bids: readonly WireLevel[]
  asks: readonly WireLevel[]
  /** Venue of plain `[price, size]` levels (a single venue's depth). */
  venue?: string
}

/** The ladder of `depth` restricted to `included` (null: all), `rows` levels per side. */
export function buildLadder(
  depth: LadderInput | null,
  included: ReadonlySet<string> | null,
  rows = 20,
): Ladder {
  const bidsAll = depth ? filterLevels(depth.bids, included, depth.venue) : []
  const asksAll = depth ? filterLevels(depth.asks, included, depth.venue) : []
  const bestBid = bidsAll.length ? bidsAll[0].price : null
  const bestAsk = asksAll.length ? asksAll[0].price : null
  const crossed = bestBid !== null && bestAsk !== null && bestBid >= bestAsk
  const venues = new Set<string>()
  let maxTotal = 0
  let maxCum = 0
  const side = (levels: Level[], isBid: boolean): LadderRow[] => {
    const out: LadderRow[] = []
    let cum = 0
    for (const lv of levels.slice(0, rows)) {
      cum += lv.total
      const c = round15(cum)
      const through = isBid
        ? bestAsk !== null && lv.price >= bestAsk
        : bestBid !== null && lv.price <= bestBid
      out.push({ ...lv, cum: c, crossed: through })
      if (lv.total > maxTotal) maxTotal = lv.total
      for (const v in lv.venues) venues.add(v)
    }
    if (cum > maxCum) maxCum = round15(cum)
    return out
  }
  const bids = side(bidsAll, true)
  const asks = side(asksAll, false)
  const mid = bestBid !== null && bestAsk !== null ? (bestBid + bestAsk) / 2 : null
  return {
    bids,
    asks,
    bestBid,
    bestAsk,
    mid,
    // a difference of two prices: 10 significant digits is all the precision it has
    spread: bestBid !== null && bestAsk !== null ? Number((bestAsk - bestBid).toPrecision(10)) : null,
    spreadBps: spreadBps(bestBid, bestAsk),
    crossed,
    maxTotal,
    maxCum,
    venues: [...venues],
  }
}

/** Cumulative depth points `[price, cumulative size]` from the best price outwards. */
export function cumulative(levels: readonly Level[]): Array<[number, number]> {
  const out: Array<[number, number]> = []
  let cum = 0
  for (const lv of levels) {
    cum += lv.total
    out.push([lv.price, round15(cum)])
  }
  return out
}

/** Segments of a depth bar: each included venue's share of `level.total`, in `order`. */
export function segments(
  level: Level,
  order: readonly string[],
): Array<{ venue: string; size: number; frac: number }> {
  const out: Array<{ venue: string; size: number; frac: number }> = []
  if (!(level.total > 0)) return out
  const seen = new Set<string>()
  for (const venue of [...order, ...Object.keys(level.venues)]) {
    if (seen.has(venue)) continue
    seen.add(venue)
    const size = level.venues[venue]
    if (size > 0) out.push({ venue, size, frac: size / level.total })
  }
  return out
}
