import { describe, expect, it } from 'vitest'
import { RateWindow, Tape, adaptiveWindow, toTrade, type Trade } from './trades'

function t(over: Partial<Trade> = {}): Trade {
  return { venue: 'binance', symbol: 'BTC-USDT', side: 'buy', price: 100, size: 1, ts: 1000, ...over }
}

describe('Tape', () => {
  it('puts the newest trade on top', () => {
    const tape = new Tape()
    tape.push([t({ price: 100, ts: 1000 }), t({ price: 101, ts: 2000 })])
    expect(tape.rows.map((r) => r.price)).toEqual([101, 100])
    expect(tape.trades).toBe(2)
  })

  it('merges a burst: same venue, side and price within the window', () => {
    const tape = new Tape({ windowMs: 250 })
    tape.push([t({ size: 0.1, ts: 1000 }), t({ size: 0.2, ts: 1100 }), t({ size: 0.3, ts: 1250 })])
    expect(tape.rows).toHaveLength(1)
    expect(tape.rows[0]).toMatchObject({ size: 0.6, count: 3, tsFirst: 1000, tsLast: 1250 })
  })

  it('does not merge past the window, measured from the burst start', () => {
    const tape = new Tape({ windowMs: 250 })
    tape.push([t({ ts: 1000 }), t({ ts: 1200 }), t({ ts: 1300 })])
    expect(tape.rows.map((r) => r.count)).toEqual([1, 2])
  })

  it('keeps venues, sides, prices and symbols apart', () => {
    const tape = new Tape()
    tape.push([
      t(),
      t({ venue: 'kraken' }),
      t({ side: 'sell' }),
      t({ price: 100.5 }),
      t({ symbol: 'BTC-USDT-PERP' }),
    ])
    expect(tape.rows).toHaveLength(5)
  })

  it('merges with a recent row below interleaved trades of other venues', () => {
    const tape = new Tape()
    tape.push([t({ ts: 1000 }), t({ venue: 'okx', ts: 1010 }), t({ ts: 1020 })])
    expect(tape.rows).toHaveLength(2)
    expect(tape.rows[1]).toMatchObject({ venue: 'binance', count: 2 })
  })

  it('looks back a bounded number of rows', () => {
    const tape = new Tape({ lookback: 2 })
    tape.push([t({ ts: 1000 }), t({ price: 1, ts: 1001 }), t({ price: 2, ts: 1002 }), t({ ts: 1003 })])
    expect(tape.rows).toHaveLength(4)
  })

  it('stays bounded and readable at hundreds of trades per second', () => {
    const tape = new Tape({ maxRows: 200, windowMs: 250 })
    const burst: Trade[] = []
    for (let i = 0; i < 5000; i++) {
      burst.push(t({ ts: 1000 + i * 2, price: 100 + (i % 3) * 0.1, side: i % 7 ? 'buy' : 'sell' }))
    }
    tape.push(burst)
    expect(tape.rows.length).toBeLessThanOrEqual(200)
    expect(tape.trades).toBe(5000)
    // 10 s of trades at 500/s collapse into a few rows per 250 ms
    const merged = tape.rows.reduce((s, r) => s + r.count, 0)
    expect(merged / tape.rows.length).toBeGreaterThan(10)
  })

  it('skips empty and invalid trades; clear() empties', () => {
    const tape = new Tape()
    tape.push([t({ size: 0 }), t({ price: NaN }), t()])
    expect(tape.rows).toHaveLength(1)
    tape.clear()
    expect(tape.rows).toHaveLength(0)
    expect(tape.trades).toBe(0)
  })

  it('records when a row was created or last grew', () => {
    const tape = new Tape()
    tape.push([t({ ts: 1000 })], 5000)
    expect(tape.rows[0].touched).toBe(5000)
    tape.push([t({ ts: 1100 })], 5100)
    expect(tape.rows[0].touched).toBe(5100)
  })

  it('sums sizes without float noise', () => {
    const tape = new Tape()
    tape.push([t({ size: 0.1 }), t({ size: 0.2 })])
    expect(tape.rows[0].size).toBe(0.3)
  })
})

describe('toTrade', () => {
  it('converts exchange nanoseconds and takes the venue from the message', () => {
    expect(toTrade({ price: 1, size: 2, side: 'sell', ts_exch: 1_700_000_000_123_000_000 }, 'okx', 'BTC-USDT', 5)).toEqual({
      venue: 'okx',
      symbol: 'BTC-USDT',
      side: 'sell',
      price: 1,
      size: 2,
      ts: 1_700_000_000_123,
    })
  })
  it('prefers the venue and symbol of a snapshot trade, falls back to receive time', () => {
    const tr = toTrade({ price: 1, size: 2, side: 'buy', venue: 'kraken', symbol: 'BTC-USD' }, 'all', 'BTC-USD', 42)
    expect(tr).toMatchObject({ venue: 'kraken', symbol: 'BTC-USD', ts: 42 })
  })
  it('rejects a trade without a taker side', () => {
    expect(toTrade({ price: 1, size: 2, side: 'x' as 'buy' }, 'a', 'b', 0)).toBeNull()
  })
})

describe('RateWindow', () => {
  it('counts events and volume per second over the window', () => {
    const r = new RateWindow(10_000)
    for (let i = 0; i < 50; i++) r.add(1000 + i * 100, 0.5)
    const [n, vol] = r.rate(6000)
    expect(n).toBe(5)
    expect(vol).toBeCloseTo(2.5, 10)
    expect(r.rate(100_000)).toEqual([0, 0])
  })

  it('holds about its window when nobody reads the rate (a hidden tab has no frames)', () => {
    const r = new RateWindow(10_000)
    for (let t = 0; t < 200_000; t++) r.add(t, 1) // 1,000 a second for 200 s, never read
    expect(r.held).toBeLessThan(30_000) // 10,000 in the window; 200,000 before
    expect(r.rate(200_000)[0]).toBe(1000)
  })
})

describe('adaptiveWindow', () => {
  it('widens the burst window as the rate grows', () => {
    expect(adaptiveWindow(0)).toBe(250)
    expect(adaptiveWindow(50)).toBe(250)
    expect(adaptiveWindow(120)).toBe(500)
    expect(adaptiveWindow(600)).toBe(1000)
    expect(adaptiveWindow(5000)).toBe(2000)
  })
  it('applies to the next trades', () => {
    const tape = new Tape({ windowMs: 250 })
    tape.push([t({ ts: 0 })])
    tape.windowMs = adaptiveWindow(600)
    tape.push([t({ ts: 900 })])
    expect(tape.rows).toHaveLength(1)
    expect(tape.rows[0].count).toBe(2)
  })
})
