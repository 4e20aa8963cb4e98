// Message shapes of the gateway's /ws protocol (services/gateway/PROTOCOL.md), as far as the
// dashboard reads them. Every field the gateway may omit is optional.

export type VenueState = 'live' | 'syncing' | 'stale' | 'down' | 'unknown'
export type Side = 'buy' | 'sell'

/** `[price, size]` of one venue, or `[price, total, {venue: size}]` of a consolidated book. */
export type WireLevel = [number, number] | [number, number, Record<string, number>]

export interface Envelope {
  type: 'subscribed' | 'unsubscribed' | 'snapshot' | 'update' | 'error' | 'pong' | string
  channel?: string
  id?: string | number
  venue?: string | string[]
  symbol?: string
  ts_exch?: number | null
  ts_recv?: number | null
  ts_ingest_pub?: number | null
  ts_book_pub?: number | null
  ts_gw?: number
}

/** How a consolidated book converts each included market ("venue:SYMBOL") to its unit. */
export type Conversion = Record<string, { quote?: string; rate?: number; source?: string; live?: boolean }>

export interface DepthMsg extends Envelope {
  state?: VenueState
  bids: WireLevel[]
  asks: WireLevel[]
  venues?: string[]
  excluded?: Record<string, string>
  conversion?: Conversion
  unit?: string
  reason?: string
}

export interface BboMsg extends Envelope {
  state?: VenueState
  bid: [number, number] | [number, number, string] | null
  ask: [number, number] | [number, number, string] | null
  spread_bps?: number | null
  crossed?: boolean
  crossed_size?: number
  venues?: string[]
  excluded?: Record<string, string>
  conversion?: Conversion
  reason?: string
}

export interface WireTrade {
  price: number
  size: number
  side: Side
  id?: string | number
  ts_exch?: number | null
  venue?: string
  symbol?: string
}

export interface TradesMsg extends Envelope {
  trades: WireTrade[]
}

export interface VenueStatusBody {
  state?: VenueState
  instruments?: Record<string, string>
  last_msg_age_s?: number | null
}

/** Snapshot: `venues: {name: body}`; update: one venue's body at the top level. */
export interface StatusMsg extends Envelope, VenueStatusBody {
  book?: 'live' | 'down'
  venues?: Record<string, VenueStatusBody> | string[]
  /** In the snapshot: the gateway's `[book] quote_groups`. */
  quote_groups?: string[][]
}

export interface Percentiles {
  p50?: number
  p95?: number
  p99?: number
  'p99.9'?: number
  max?: number
  mean?: number
  count?: number
}

export interface ProcessSample {
  pid?: number
  cpu_percent?: number
  rss_bytes?: number
}

export interface VenueStats {
  state?: VenueState
  msg_rate?: number
  frames?: number
  trades?: number
  gaps?: number
  resyncs?: number
  reconnects?: number
  parse_errors?: number
  checksum_failures?: number
  latency_us?: Record<string, Percentiles>
  process?: ProcessSample
  [key: string]: unknown
}

export interface StatsMsg extends Envelope {
  venues?: Record<string, VenueStats>
  book?: {
    state?: string
    msg_rate_in?: number
    msg_rate_out?: number
    latency_us?: Record<string, Percentiles | Record<string, unknown>>
    process?: ProcessSample
    [key: string]: unknown
  }
  gateway?: {
    clients?: number
    messages_sent?: number
    latency_us?: Record<string, Percentiles>
    process?: ProcessSample
    [key: string]: unknown
  }
}

export interface ErrorMsg extends Envelope {
  code: string
  message: string
  /** `trades_dropped` notices: trades dropped from this subscription's backlog. */
  count?: number
  request?: { op?: string; id?: string | number; [key: string]: unknown }
}

export interface SubscribeSpec {
  op: 'subscribe'
  id: string
  channel: 'depth' | 'bbo' | 'trades' | 'stats' | 'status'
  venue: string | string[]
  symbol?: string
  depth?: number
  interval_ms?: number
}
