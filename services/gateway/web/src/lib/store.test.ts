import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { _raw as raw, desiredSubscriptions, group, handleMessage, kind, market, prefs, seriesOf, view } from './store'

beforeAll(() => {
  vi.stubGlobal('requestAnimationFrame', (cb: FrameRequestCallback) => setTimeout(() => cb(0), 0))
  vi.useFakeTimers()
})
afterAll(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

const status = (venues: Record<string, object>) => ({
  type: 'snapshot',
  channel: 'status',
  venue: 'all',
  book: 'live',
  venues,
})
const live = (symbol: string) => ({ state: 'live', instruments: { [symbol]: 'live' } })
const bbo = (venue: string, bid: number | null, ask: number | null) => ({
  type: 'update',
  channel: 'bbo',
  venue,
  symbol: 'BTC-USDT',
  state: bid === null ? 'down' : 'live',
  bid: bid === null ? null : [bid, 1],
  ask: ask === null ? null : [ask, 1],
})

describe('store', () => {
  it('shows a refused request, and asks a gateway with a shallower [book] depth for its default', () => {
    handleMessage(status({ binance: live('BTC-USDT') }) as never, 500)
    const depthSpec = () => desiredSubscriptions().find((s) => s.channel === 'depth')
    expect(depthSpec()?.depth).toBe(50)
    const request = { ...depthSpec() }
    handleMessage(
      { type: 'error', code: 'bad_request', message: "'depth' must be an integer 1..20", request } as never,
      600,
    )
    expect(view.errors.value[0].code).toBe('bad_request') // what the error banner shows
    expect(depthSpec()).toBeDefined()
    expect(depthSpec()?.depth).toBeUndefined()
  })

  it('forgets a venue a fresh status snapshot no longer lists', () => {
    handleMessage(status({ binance: live('BTC-USDT'), okx: live('BTC-USDT') }) as never, 1000)
    handleMessage(bbo('okx', 64000, 64001) as never, 1100)
    expect(raw.bbo.has('okx')).toBe(true)
    expect(view.venues.value).toContain('okx')
    // the gateway restarted with okx switched off: its snapshot lists binance only
    handleMessage(status({ binance: live('BTC-USDT') }) as never, 2000)
    expect(raw.status.has('okx')).toBe(false)
    expect(raw.bbo.has('okx')).toBe(false)
    expect(seriesOf('okx')).toBeUndefined()
    expect(view.venues.value).toEqual(['binance'])
  })

  it('offers the markets the venues list, named with the gateway\'s quote groups', () => {
    const snap = {
      ...status({
        binance: { state: 'live', instruments: { 'BTC-USDT': 'live', 'PEPE-USDT': 'live' } },
        kraken: { state: 'live', instruments: { 'BTC-USD': 'live', 'BTC-EUR': 'live' } },
      }),
      quote_groups: [['USDT', 'USD'], ['EUR']],
    }
    handleMessage(snap as never, 3000)
    expect(view.markets.value).toEqual(['BTC-USDT', 'BTC-EUR', 'PEPE-USDT'])
    // the stored choice (BTC-USD by default) is not a market here: the first one is shown
    expect(market()).toBe('BTC-USDT')
    expect(view.members.value).toEqual([
      { venue: 'binance', symbol: 'BTC-USDT' },
      { venue: 'kraken', symbol: 'BTC-USD' },
    ])
    prefs.market = 'PEPE-USDT'
    prefs.kind = 'perp'
    expect(group()).toBe('PEPE-USDT') // no PEPE perpetual anywhere: its spot market is shown
    prefs.kind = 'spot'
    // a later update does not carry quote_groups: the snapshot's stay
    handleMessage({ type: 'update', channel: 'status', venue: 'kraken', state: 'live', instruments: { 'BTC-USD': 'live' } } as never, 3100)
    expect(view.markets.value).toEqual(['BTC-USDT', 'PEPE-USDT'])
    expect(view.quoteGroups.value).toEqual([['USDT', 'USD'], ['EUR']])
  })

  it('shows the kind a market has when it has only one', () => {
    const snap = {
      ...status({
        binance: { state: 'live', instruments: { 'BTC-USDT': 'live' } },
        'binance-perp': { state: 'live', instruments: { 'BTC-USDT-PERP': 'live', 'WIF-USDT-PERP': 'live' } },
      }),
      quote_groups: [['USD', 'USDT']],
    }
    handleMessage(snap as never, 4000)
    expect(view.markets.value).toEqual(['BTC-USD', 'WIF-USD'])
    prefs.market = 'WIF-USD'
    prefs.kind = 'spot'
    expect(kind()).toBe('perp') // no WIF spot market anywhere: its perpetual is shown
    expect(group()).toBe('WIF-USD-PERP')
    prefs.market = 'BTC-USD'
    expect(group()).toBe('BTC-USD') // the choice itself was kept
  })

  it('ends the mid line when a book stops being live instead of holding it', () => {
    vi.setSystemTime(1_000_000)
    handleMessage(bbo('binance', 100, 101) as never, 0)
    expect(seriesOf('binance')?.broken).toBe(false)
    vi.setSystemTime(1_000_100) // same 250 ms bucket: the break is a point of its own
    handleMessage(bbo('binance', null, null) as never, 0)
    const s = seriesOf('binance')!
    expect(s.broken).toBe(true)
    expect(s.points().map((p) => p.t)).toEqual([1_000_000, 1_000_100])
    vi.setSystemTime(1_000_150)
    handleMessage(bbo('binance', 102, 103) as never, 0)
    expect(s.broken).toBe(false)
    expect(s.points().map((p) => p.mid)).toEqual([100.5, NaN, 102.5])
  })

  it("puts a market quoted in another unit on the group's scale with the consolidated book's rate", () => {
    vi.setSystemTime(2_000_000)
    handleMessage(status({ binance: live('BTC-USDT'), kraken: live('BTC-USD') }) as never, 0)
    const conversion = {
      'binance:BTC-USDT': { quote: 'USDT', rate: 0.999, source: 'ref:kraken USDT-USD mid' },
      'kraken:BTC-USD': { quote: 'USD', rate: 1, source: 'unit' },
    }
    handleMessage({ ...bbo('all', 99.9, 100.0), symbol: 'BTC-USD', conversion } as never, 0)
    vi.setSystemTime(2_000_300)
    handleMessage(bbo('binance', 100.0, 100.2) as never, 0) // USDT prices, mid 100.1
    const row = () => view.venueRows.value.find((r) => r.venue === 'binance')
    vi.advanceTimersByTime(20) // the next frame rebuilds the view
    expect(row()?.mid).toBeCloseTo(100.1, 9) // the table shows the venue's own prices
    expect(row()?.rate).toBe(0.999)
    const pts = seriesOf('binance')!.points()
    expect(pts[pts.length - 1].mid).toBeCloseTo(100.1 * 0.999, 9) // the chart: in USD
    expect(pts[pts.length - 1].spreadBps).toBeCloseTo((0.2 / 100.1) * 1e4, 6) // bps: as is
  })
})
