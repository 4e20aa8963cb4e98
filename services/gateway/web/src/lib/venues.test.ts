import { describe, expect, it } from 'vitest'
import { VENUES, groupName, groupOf, membersOf, sortVenues, venueColor, venueInfo } from './venues'

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
  it('names groups from base and kind', () => {
    expect(groupName('SOL', 'spot')).toBe('SOL-USD')
    expect(groupName('SOL', 'perp')).toBe('SOL-USD-PERP')
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
