// Venues, their colours and the instrument naming rules the book builder uses.

export const BASES = ['BTC', 'ETH', 'SOL', 'XRP', 'DOGE', 'ADA', 'AVAX', 'DOT', 'LINK'] as const
export type Kind = 'spot' | 'perp'

export interface VenueInfo {
  name: string
  label: string
  short: string
  color: string
}

/** Known venues in display order. Colours avoid the bid green and ask red. */
export const VENUES: VenueInfo[] = [
  { name: 'binance', label: 'Binance', short: 'BNC', color: '#f0b90b' },
  { name: 'binance-perp', label: 'Binance Perp', short: 'BNP', color: '#ff8c1a' },
  { name: 'bybit', label: 'Bybit', short: 'BYB', color: '#ec4899' },
  { name: 'kraken', label: 'Kraken', short: 'KRK', color: '#8b7cf6' },
  { name: 'coinbase', label: 'Coinbase', short: 'CB', color: '#3b82f6' },
  { name: 'okx', label: 'OKX', short: 'OKX', color: '#22d3ee' },
]

const BY_NAME = new Map(VENUES.map((v) => [v.name, v]))
const EXTRA_COLORS = ['#a3e635', '#f97316', '#c084fc', '#94a3b8', '#fde047', '#67e8f9']

export function venueInfo(name: string): VenueInfo {
  const known = BY_NAME.get(name)
  if (known) return known
  let h = 0
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0
  return {
    name,
    label: name,
    short: name.slice(0, 3).toUpperCase(),
    color: EXTRA_COLORS[h % EXTRA_COLORS.length],
  }
}

export function venueColor(name: string): string {
  return venueInfo(name).color
}

/** Known venues first in their fixed order, then any others by name. */
export function sortVenues(names: Iterable<string>): string[] {
  const order = (n: string) => {
    const i = VENUES.findIndex((v) => v.name === n)
    return i < 0 ? VENUES.length : i
  }
  return [...new Set(names)].sort((a, b) => order(a) - order(b) || a.localeCompare(b))
}

export const QUOTE_GROUPS: string[][] = [['USD', 'USDT', 'USDC']]

/** Consolidation group of `BASE-QUOTE[-PERP]` (same rule as services/book/symbols.py):
 *  `BTC-USDT` -> `BTC-USD`, `BTC-USDT-PERP` -> `BTC-USD-PERP`; null if not an instrument name. */
export function groupOf(symbol: string, groups: string[][] = QUOTE_GROUPS): string | null {
  const parts = symbol.split('-')
  let perp = false
  if (parts.length === 3 && parts[2] === 'PERP') perp = true
  else if (parts.length !== 2) return null
  const base = parts[0]
  let quote = parts[1]
  if (!base || !quote) return null
  for (const g of groups) {
    if (g.includes(quote)) {
      quote = g[0]
      break
    }
  }
  return perp ? `${base}-${quote}-PERP` : `${base}-${quote}`
}

export function groupName(base: string, kind: Kind): string {
  return kind === 'perp' ? `${base}-USD-PERP` : `${base}-USD`
}

export interface Member {
  venue: string
  symbol: string
}

/** The venue markets of `group`, from each venue's symbol list. */
export function membersOf(group: string, symbols: Record<string, Iterable<string>>): Member[] {
  const out: Member[] = []
  for (const venue of sortVenues(Object.keys(symbols))) {
    for (const symbol of [...symbols[venue]].sort()) {
      if (groupOf(symbol) === group) out.push({ venue, symbol })
    }
  }
  return out
}
