import { describe, expect, it } from 'vitest'
import {
  VENUES,
  groupName,
  groupOf,
  marketLabel,
  marketsOf,
  membersOf,
  sortVenues,
  venueColor,
  venueInfo,
} from './venues'

describe('groupOf', () => {
  it('maps quote-equivalent markets to one group', () => {
    expect(groupOf('BTC-USDT')).toBe('BTC-USD')
    expect(groupOf('BTC-USD')).toBe('BTC-USD')
    expect(groupOf('ETH-USDC')).toBe('ETH-USD')
    expect(groupOf('BTC-USDT-PERP')).toBe('BTC-USD-PERP')
  })
  it('keeps other quotes and rejects non-instruments', () => {
    expect(groupOf('BTC-EUR')).toBe('BTC-EUR')
    expect(groupOf('BTC')).toBeNull()
    expect(groupOf('BTC-USDT-SWAP')).toBeNull()
    expect(groupOf('-USDT')).toBeNull()
  })
  it('follows the configured quote groups', () => {
    const groups = [['USDT', 'USD'], ['EUR', 'EURC']]
    expect(groupOf('BTC-USD', groups)).toBe('BTC-USDT')
    expect(groupOf('BTC-USDC', groups)).toBe('BTC-USDC')
    expect(groupOf('BTC-EURC-PERP', groups)).toBe('BTC-EUR-PERP')
  })
  it('names groups from market and kind', () => {
    expect(groupName('SOL-USD', 'spot')).toBe('SOL-USD')
    expect(groupName('SOL-USDT', 'perp')).toBe('SOL-USDT-PERP')
  })
})

describe('marketsOf', () => {
  it('lists every base the venues list, known bases first, then by name', () => {
    const symbols = {
      kraken: ['PEPE-USD', 'ETH-USD'],
      okx: ['BTC-USDT', 'AAVE-USDT', 'BTC-EUR'],
      'binance-perp': ['WIF-USDT-PERP', 'BTC-USDT-PERP'],
      odd: ['NOTANINSTRUMENT'],
    }
    expect(marketsOf(symbols)).toEqual(['BTC-USD', 'BTC-EUR', 'ETH-USD', 'AAVE-USD', 'PEPE-USD', 'WIF-USD'])
  })
  it('names markets after the configured units', () => {
    const groups = [['USDT', 'USD', 'USDC'], ['EUR']]
    const markets = marketsOf({ kraken: ['BTC-USD', 'BTC-EUR'], okx: ['ETH-USDC'] }, groups)
    expect(markets).toEqual(['BTC-USDT', 'BTC-EUR', 'ETH-USDT'])
    expect(markets.map((m) => marketLabel(m, groups))).toEqual(['BTC', 'BTC/EUR', 'ETH'])
  })
})

describe('membersOf', () => {
  const symbols = {
    okx: ['BTC-USDT', 'ETH-USDT'],
    bybit: ['BTC-USDT', 'BTC-USDT-PERP'],
    kraken: ['BTC-USD'],
    'binance-perp': ['BTC-USDT-PERP'],
  }
  it('lists the markets of a group in venue order', () => {
    expect(membersOf('BTC-USD', symbols)).toEqual([
      { venue: 'bybit', symbol: 'BTC-USDT' },
      { venue: 'kraken', symbol: 'BTC-USD' },
      { venue: 'okx', symbol: 'BTC-USDT' },
    ])
    expect(membersOf('BTC-USD-PERP', symbols)).toEqual([
      { venue: 'binance-perp', symbol: 'BTC-USDT-PERP' },
      { venue: 'bybit', symbol: 'BTC-USDT-PERP' },
    ])
    expect(membersOf('DOGE-USD', symbols)).toEqual([])
  })
  it('groups with the configured quote groups', () => {
    expect(membersOf('BTC-USDT', symbols, [['USDT', 'USD']]).map((m) => m.venue)).toEqual([
      'bybit',
      'kraken',
      'okx',
    ])
  })
})

describe('venues', () => {
  it('orders known venues first, then others by name', () => {
    expect(sortVenues(['zeta', 'okx', 'binance', 'alpha', 'kraken', 'okx'])).toEqual([
      'binance',
      'kraken',
      'okx',
      'alpha',
      'zeta',
    ])
  })
  it('gives every known venue a distinct colour', () => {
    const colors = VENUES.map((v) => v.color.toLowerCase())
    expect(new Set(colors).size).toBe(VENUES.length)
    expect(venueColor('binance')).toBe('#f0b90b')
  })
  it('gives an unknown venue a stable colour', () => {
    expect(venueInfo('newex').color).toBe(venueInfo('newex').color)
    expect(venueInfo('newex').short).toBe('NEW')
  })
})
