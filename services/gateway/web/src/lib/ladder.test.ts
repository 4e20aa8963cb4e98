import { describe, expect, it } from 'vitest'
import { buildLadder, cumulative, filterLevels, mergeBooks, round15, segments, spreadBps } from './ladder'
import type { WireLevel } from './types'

const bids: WireLevel[] = [
  [100.0, 3.0, { binance: 1.0, kraken: 2.0 }],
  [99.9, 0.5, { kraken: 0.5 }],
  [99.8, 0.3, { binance: 0.1, okx: 0.2 }],
]
const asks: WireLevel[] = [
  [100.1, 1.5, { binance: 1.5 }],
  [100.2, 0.3, { kraken: 0.1, okx: 0.2 }],
  [100.3, 2.0, { kraken: 2.0 }],
]

describe('filterLevels', () => {
  it('keeps levels as they are with every venue included', () => {
    const out = filterLevels(bids, null)
    expect(out.map((l) => [l.price, l.total])).toEqual([
      [100.0, 3.0],
      [99.9, 0.5],
      [99.8, 0.3],
    ])
    expect(out[0].venues).toEqual({ binance: 1.0, kraken: 2.0 })
  })

  it('recomputes totals from the included venues', () => {
    const out = filterLevels(bids, new Set(['binance', 'okx']))
    expect(out).toEqual([
      { price: 100.0, total: 1.0, venues: { binance: 1.0 } },
      { price: 99.8, total: 0.3, venues: { binance: 0.1, okx: 0.2 } },
    ])
  })

  it('drops levels where no included venue has size', () => {
    expect(filterLevels(asks, new Set(['okx'])).map((l) => l.price)).toEqual([100.2])
    expect(filterLevels(asks, new Set())).toEqual([])
  })

  it('removes float noise from recomputed totals', () => {
    const lv: WireLevel[] = [[1, 0.3, { a: 0.1, b: 0.2, c: 5 }]]
    expect(filterLevels(lv, new Set(['a', 'b']))[0].total).toBe(0.3)
  })

  it('treats [price, size] levels as the fallback venue', () => {
    const lv: WireLevel[] = [
      [10, 1],
      [9, 0],
      [8, 2],
    ]
    expect(filterLevels(lv, null, 'binance')).toEqual([
      { price: 10, total: 1, venues: { binance: 1 } },
      { price: 8, total: 2, venues: { binance: 2 } },
    ])
    expect(filterLevels(lv, new Set(['kraken']), 'binance')).toEqual([])
  })
})

describe('buildLadder', () => {
  it('computes best prices, mid, spread and cumulative sizes', () => {
    const l = buildLadder({ bids, asks }, null)
    expect(l.bestBid).toBe(100.0)
    expect(l.bestAsk).toBe(100.1)
    expect(l.mid).toBeCloseTo(100.05, 10)
    expect(l.spread).toBe(0.1)
    expect(l.spreadBps).toBeCloseTo((0.1 / 100.05) * 1e4, 8)
    expect(l.crossed).toBe(false)
    expect(l.bids.map((r) => r.cum)).toEqual([3.0, 3.5, 3.8])
    expect(l.asks.map((r) => r.cum)).toEqual([1.5, 1.8, 3.8])
    expect(l.maxTotal).toBe(3.0)
    expect(l.maxCum).toBe(3.8)
    expect(l.bids.every((r) => !r.crossed) && l.asks.every((r) => !r.crossed)).toBe(true)
    expect(new Set(l.venues)).toEqual(new Set(['binance', 'kraken', 'okx']))
  })

  it('limits rows per side', () => {
    const l = buildLadder({ bids, asks }, null, 2)
    expect(l.bids).toHaveLength(2)
    expect(l.asks).toHaveLength(2)
    expect(l.maxCum).toBe(3.5)
  })

  it('changes when a venue is switched off', () => {
    const all = buildLadder({ bids, asks }, null)
    const noBinance = buildLadder({ bids, asks }, new Set(['kraken', 'okx']))
    expect(noBinance.bids[0]).toMatchObject({ price: 100.0, total: 2.0 })
    expect(noBinance.bestAsk).toBe(100.2)
    expect(noBinance.asks[0].total).toBe(0.3)
    expect(noBinance.spread).not.toBe(all.spread)
    expect(noBinance.venues).not.toContain('binance')
  })

  it('flags a crossed book and the levels that trade through', () => {
    const cb: WireLevel[] = [
      [100.2, 1, { kraken: 1 }],
      [100.05, 1, { kraken: 1 }],
      [100.0, 1, { binance: 1 }],
    ]
    const ca: WireLevel[] = [
      [100.1, 1, { binance: 1 }],
      [100.15, 1, { okx: 1 }],
      [100.3, 1, { okx: 1 }],
    ]
    const l = buildLadder({ bids: cb, asks: ca }, null)
    expect(l.crossed).toBe(true)
    expect(l.spread).toBeCloseTo(-0.1, 10)
    expect(l.spreadBps!).toBeLessThan(0)
    expect(l.bids.map((r) => r.crossed)).toEqual([true, false, false])
    expect(l.asks.map((r) => r.crossed)).toEqual([true, true, false])
    // without kraken the market is no longer crossed
    const nk = buildLadder({ bids: cb, asks: ca }, new Set(['binance', 'okx']))
    expect(nk.crossed).toBe(false)
    expect(nk.bestBid).toBe(100.0)
  })

  it('treats a locked market (bid == ask) as crossed', () => {
    const l = buildLadder({ bids: [[5, 1, { a: 1 }]], asks: [[5, 1, { b: 1 }]] }, null)
    expect(l.crossed).toBe(true)
    expect(l.spread).toBe(0)
  })

  it('is empty without data', () => {
    const l = buildLadder(null, null)
    expect(l.bids).toEqual([])
    expect(l.mid).toBeNull()
    expect(l.spreadBps).toBeNull()
    expect(l.crossed).toBe(false)
  })

  it('handles a one-sided book', () => {
    const l = buildLadder({ bids, asks: [] }, null)
    expect(l.bestAsk).toBeNull()
    expect(l.mid).toBeNull()
    expect(l.crossed).toBe(false)
  })
})

describe('mergeBooks', () => {
  const books = [
    { venue: 'binance', levels: [[100, 1], [99, 2]] as Array<[number, number]> },
    { venue: 'kraken', levels: [[100, 0.5], [98, 1], [97, 0]] as Array<[number, number]> },
  ]
  it('merges bids by price, best first, with per-venue sizes', () => {
    expect(mergeBooks(books, 'bids')).toEqual([
      { price: 100, total: 1.5, venues: { binance: 1, kraken: 0.5 } },
      { price: 99, total: 2, venues: { binance: 2 } },
      { price: 98, total: 1, venues: { kraken: 1 } },
    ])
  })
  it('sorts asks ascending and keeps the top n', () => {
    expect(mergeBooks(books, 'asks', 2).map((l) => l.price)).toEqual([98, 99])
  })
  it('agrees with filterLevels on the consolidated levels', () => {
    const merged = mergeBooks(books, 'bids')
    const wire: WireLevel[] = merged.map((l) => [l.price, l.total, l.venues])
    expect(filterLevels(wire, new Set(['binance']))).toEqual(mergeBooks([books[0]], 'bids'))
  })
  it('adds two levels of one venue at the same price', () => {
    const m = mergeBooks([{ venue: 'bybit', levels: [[10, 0.1], [10, 0.2]] }], 'bids')
    expect(m).toEqual([{ price: 10, total: 0.3, venues: { bybit: 0.3 } }])
  })
})

describe('helpers', () => {
  it('cumulative sums from the best price', () => {
    expect(cumulative(filterLevels(bids, null))).toEqual([
      [100.0, 3.0],
      [99.9, 3.5],
      [99.8, 3.8],
    ])
  })
  it('segments follow the venue order and add up to 1', () => {
    const lv = filterLevels(bids, null)[0]
    const segs = segments(lv, ['kraken', 'binance'])
    expect(segs.map((s) => s.venue)).toEqual(['kraken', 'binance'])
    expect(segs.reduce((s, x) => s + x.frac, 0)).toBeCloseTo(1, 12)
    expect(segments({ price: 1, total: 0, venues: {} }, [])).toEqual([])
    // venues missing from the order come last
    expect(segments(filterLevels(bids, null)[2], ['binance']).map((s) => s.venue)).toEqual(['binance', 'okx'])
  })
  it('round15 and spreadBps', () => {
    expect(round15(0.1 + 0.2)).toBe(0.3)
    expect(round15(0)).toBe(0)
    expect(spreadBps(99, 101)).toBe(200)
    expect(spreadBps(null, 1)).toBeNull()
  })
})
