// Venues, their colours and the instrument naming rules the book builder uses.

/** Bases listed first, in this order; any other base the venues list follows by name. */
export const PREFERRED_BASES = ['BTC', 'ETH', 'SOL', 'XRP', 'DOGE', 'ADA', 'AVAX', 'DOT', 'LINK']
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

/** The `[book] quote_groups` default; the gateway's status snapshot gives the configured ones. */
export const DEFAULT_QUOTE_GROUPS: string[][] = [['USD', 'USDT', 'USDC']]

/** Consolidation group of `BASE-QUOTE[-PERP]` (same rule as common/symbols.py): the quote is
 *  replaced by the first member of its quote group (the unit), `BTC-USDT` -> `BTC-USD`,
 *  `BTC-USDT-PERP` -> `BTC-USD-PERP`; null if not an instrument name. */
export function groupOf(symbol: string, groups: string[][] = DEFAULT_QUOTE_GROUPS): string | null {
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

/** A market the dashboard offers is a spot group name, `BASE-UNIT`; its perpetuals are
 *  `BASE-UNIT-PERP`. */
export function groupName(market: string, kind: Kind): string {
  return kind === 'perp' ? `${market}-PERP` : market
}

/** Every consolidated group the venues' symbols form. */
export function groupsOf(
  symbols: Record<string, Iterable<string>>,
  groups: string[][] = DEFAULT_QUOTE_GROUPS,
): Set<string> {
  const found = new Set<string>()
  for (const list of Object.values(symbols)) {
    for (const symbol of list) {
      const g = groupOf(symbol, groups)
      if (g !== null) found.add(g)
    }
  }
  return found
}

/** Every market (`BASE-UNIT`) with a spot or perpetual group among the venues' symbols: bases in
 *  `PREFERRED_BASES` order then by name; per base, units in `groups` order then by name. */
export function marketsOf(
  symbols: Record<string, Iterable<string>>,
  groups: string[][] = DEFAULT_QUOTE_GROUPS,
): string[] {
  return marketsIn(groupsOf(symbols, groups), groups)
}

/** The markets of the consolidated groups ``names`` (``groupsOf``), in ``marketsOf`` order. */
export function marketsIn(
  names: Iterable<string>,
  groups: string[][] = DEFAULT_QUOTE_GROUPS,
): string[] {
  const found = new Set<string>()
  for (const g of names) found.add(g.endsWith('-PERP') ? g.slice(0, -5) : g)
  const rank = (xs: string[], x: string) => {
    const i = xs.indexOf(x)
    return i < 0 ? xs.length : i
  }
  const units = groups.map((g) => g[0])
  return [...found].sort((a, b) => {
    const [ba, ua] = a.split('-')
    const [bb, ub] = b.split('-')
    return (
      rank(PREFERRED_BASES, ba) - rank(PREFERRED_BASES, bb) ||
      ba.localeCompare(bb) ||
      rank(units, ua) - rank(units, ub) ||
      ua.localeCompare(ub)
    )
  })
}

/** A market's button label: its base, with the unit when it is not the first group's unit
 *  (`BTC`, `BTC/EUR`). */
export function marketLabel(market: string, groups: string[][] = DEFAULT_QUOTE_GROUPS): string {
  const [base, unit] = market.split('-')
  return unit === groups[0]?.[0] ? base : `${base}/${unit}`
}

export interface Member {
  venue: string
  symbol: string
}

/** The venue markets of `group`, from each venue's symbol list. */
export function membersOf(
  group: string,
  symbols: Record<string, Iterable<string>>,
  groups: string[][] = DEFAULT_QUOTE_GROUPS,
): Member[] {
  const out: Member[] = []
  for (const venue of sortVenues(Object.keys(symbols))) {
    for (const symbol of [...symbols[venue]].sort()) {
      if (groupOf(symbol, groups) === group) out.push({ venue, symbol })
    }
  }
  return out
}
