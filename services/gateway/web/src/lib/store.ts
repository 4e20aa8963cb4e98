// Application state. Messages are stored as they arrive (plain objects, no reactivity, latest
// value wins); the views the components read are rebuilt at most once per animation frame, and
// only the parts whose data changed. Canvas charts hook into the same frame (`onFrame`).

import { reactive, shallowRef, watch } from 'vue'
import { Connection, gatewayUrl, type ConnState } from './connection'
import { buildLadder, type Ladder } from './ladder'
import { LatencyWindow, type Summary } from './latency'
import { Series } from './series'
import { RateWindow, Tape, adaptiveWindow, toTrade, type TapeRow, type Trade } from './trades'
import { fmtMid, priceDecimals } from './format'
import type {
  BboMsg,
  Conversion,
  DepthMsg,
  Envelope,
  ErrorMsg,
  Percentiles,
  StatsMsg,
  StatusMsg,
  SubscribeSpec,
  TradesMsg,
  VenueState,
  VenueStatusBody,
} from './types'
import {
  DEFAULT_QUOTE_GROUPS,
  groupName,
  groupsOf,
  marketsIn,
  membersOf,
  sortVenues,
  type Kind,
  type Member,
} from './venues'

export const DEPTH_LEVELS = 50
const STORAGE_KEY = 'flowbook.dashboard.v1'

// ---- user choices (reactive, persisted) -------------------------------------------------------
interface Prefs {
  /** The chosen market, `BASE-UNIT` (a spot group name; see `market()`). */
  market: string
  kind: Kind
  off: Record<string, boolean>
  /** Ladder levels per side; 0 fits them to the panel's height. */
  rows: number
}

function loadPrefs(): Prefs {
  const d: Prefs = { market: 'BTC-USD', kind: 'spot', off: {}, rows: 0 }
  try {
    const s = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}')
    if (typeof s.market === 'string' && /^[A-Za-z0-9_]+-[A-Za-z0-9_]+$/.test(s.market)) d.market = s.market
    if (s.kind === 'spot' || s.kind === 'perp') d.kind = s.kind
    if (s.off && typeof s.off === 'object') d.off = s.off
    if ([0, 10, 15, 20, 25, 30].includes(s.rows)) d.rows = s.rows
  } catch {
    /* defaults */
  }
  return d
}

export const prefs = reactive<Prefs>(loadPrefs())

/** Levels per side that fit in the ladder panel (set by the panel as it is resized). */
export const layout = reactive({ ladderFit: 20 })

export function ladderRows(): number {
  return prefs.rows > 0 ? prefs.rows : Math.max(3, Math.min(DEPTH_LEVELS, layout.ladderFit))
}

export const conn = reactive({
  state: 'connecting' as ConnState,
  attempt: 0,
  retryAt: null as number | null,
  reason: '',
  since: Date.now(),
  everOpen: false,
})

// ---- raw data (not reactive) ------------------------------------------------------------------
interface VenueBbo {
  msg: BboMsg
  at: number
}

const raw = {
  statusSeen: false,
  book: 'unknown' as 'live' | 'down' | 'unknown',
  status: new Map<string, VenueStatusBody>(),
  symbols: {} as Record<string, string[]>,
  quoteGroups: DEFAULT_QUOTE_GROUPS,
  depth: null as DepthMsg | null,
  bboAll: null as BboMsg | null,
  bbo: new Map<string, VenueBbo>(), // venue -> latest bbo of its member market
  stats: null as StatsMsg | null,
  statsAt: 0,
  tape: new Tape({ maxRows: 300, windowMs: 250 }),
  tradeIds: new Map<string, true>(),
  tradeRate: new RateWindow(10_000),
  series: new Map<string, Series>(), // venue (or "all") -> mid/spread history
  rates: new Map<string, number>(), // quote -> its rate to the group's unit, as last given
  decimals: 2,
  sizeDecimals: 0,
  errors: [] as Array<{ at: number; code: string; message: string }>,
  depthRefused: false, // the gateway refused DEPTH_LEVELS levels: subscribe without a depth
  tradesDropped: 0,
  e2e: new LatencyWindow(2048), // ingest recv -> browser
  gwToClient: new LatencyWindow(2048), // gateway send -> browser
  msgs: new RateWindow(5_000),
}

export type Dirty = 'depth' | 'bbo' | 'trades' | 'status' | 'stats' | 'series' | 'tick' | 'prefs'
const dirty = new Set<Dirty>()

// ---- views (rebuilt per frame) ------------------------------------------------------------------
export interface VenueRow {
  venue: string
  state: VenueState
  symbol: string | null
  bookState: VenueState | null
  bid: number | null
  bidSize: number | null
  ask: number | null
  askSize: number | null
  mid: number | null
  rate: number // mid x rate is in the group's unit (the consolidated book's conversion)
  spreadBps: number | null
  msgRate: number | null
  lastMsgAge: number | null
  reason: string | null
  enabled: boolean
}

export interface Stage {
  name: string
  detail: string
  p: Percentiles | Summary | null
}

export interface ProcRow {
  name: string
  pid: number | null
  cpu: number | null
  rss: number | null
  state: string
}

export interface VenueCounters {
  venue: string
  msgRate: number | null
  reconnects: number | null
  gaps: number | null
  resyncs: number | null
  checksum: number | null
  parseErrors: number | null
}

export interface Metrics {
  stages: Stage[]
  procs: ProcRow[]
  counters: VenueCounters[]
  clients: number | null
  clientMsgRate: number
}

const emptyLadder = buildLadder(null, null)

export const view = {
  ladder: shallowRef<Ladder>(emptyLadder),
  depthFull: shallowRef<Ladder>(emptyLadder),
  depthMeta: shallowRef<{
    state: string
    venues: string[]
    excluded: Record<string, string>
    conversion: DepthMsg['conversion']
    unit: string | null
    at: number | null
  } | null>(null),
  bboAll: shallowRef<BboMsg | null>(null),
  venues: shallowRef<string[]>([]),
  venueRows: shallowRef<VenueRow[]>([]),
  members: shallowRef<Member[]>([]),
  /** The markets (`BASE-UNIT`) the venues list, in button order; see `marketsOf`. */
  markets: shallowRef<string[]>([]),
  /** Every consolidated group the venues list (spot and perpetual). */
  groups: shallowRef<Set<string>>(new Set()),
  quoteGroups: shallowRef<string[][]>(DEFAULT_QUOTE_GROUPS),
  tape: shallowRef<TapeRow[]>([]),
  tapeRate: shallowRef<[number, number]>([0, 0]),
  tapeWindow: shallowRef(250),
  tapeNow: shallowRef(0),
  metrics: shallowRef<Metrics | null>(null),
  book: shallowRef<'live' | 'down' | 'unknown'>('unknown'),
  decimals: shallowRef(2),
  sizeDecimals: shallowRef(3),
  e2e: shallowRef<Summary | null>(null),
  errors: shallowRef<Array<{ at: number; code: string; message: string }>>([]),
  tradesDropped: shallowRef(0),
  now: shallowRef(Date.now()),
}

/** The market shown: the chosen one while the venues list it (or before they are known), else
 *  the first they list. */
export function market(): string {
  const markets = view.markets.value
  return markets.length === 0 || markets.includes(prefs.market) ? prefs.market : markets[0]
}

/** Whether the shown market has a group of kind ``k`` (true while the groups are not known). */
export function hasKind(k: Kind): boolean {
  const groups = view.groups.value
  return groups.size === 0 || groups.has(groupName(market(), k))
}

/** The kind shown: the chosen one, or the other if the market has only that (a base listed only
 *  as a perpetual). */
export function kind(): Kind {
  const other: Kind = prefs.kind === 'spot' ? 'perp' : 'spot'
  return hasKind(prefs.kind) || !hasKind(other) ? prefs.kind : other
}

export function group(): string {
  return groupName(market(), kind())
}

export function included(): Set<string> | null {
  const off = Object.keys(prefs.off).filter((v) => prefs.off[v])
  if (off.length === 0) return null
  return new Set(view.venues.value.filter((v) => !prefs.off[v]))
}

// ---- frame scheduling ---------------------------------------------------------------------------
type FrameHook = (dirty: ReadonlySet<Dirty>, now: number) => void
const hooks = new Set<FrameHook>()
let framePending = false

export function onFrame(hook: FrameHook): () => void {
  hooks.add(hook)
  return () => hooks.delete(hook)
}

function markDirty(d: Dirty): void {
  dirty.add(d)
  if (!framePending) {
    framePending = true
    requestAnimationFrame(frame)
  }
}

export function invalidate(d: Dirty = 'prefs'): void {
  markDirty(d)
}

/** Counters for tests and for the curious (`window.__flowbook` in the console). */
export const debug = { frames: 0, messages: 0 }
if (typeof window !== 'undefined') (window as unknown as { __flowbook: typeof debug }).__flowbook = debug

function frame(): void {
  framePending = false
  debug.frames++
  const now = Date.now()
  const d = new Set(dirty)
  dirty.clear()
  const all = d.has('prefs')
  if (all || d.has('depth')) rebuildLadder()
  if (all || d.has('status') || d.has('bbo') || d.has('stats') || d.has('tick')) rebuildVenues(now)
  if (all || d.has('trades') || d.has('tick')) rebuildTape(now)
  if (all || d.has('stats') || d.has('status') || d.has('tick')) rebuildMetrics(now)
  if (d.has('tick')) {
    view.now.value = now
    const mid = view.ladder.value.mid
    // no price while disconnected: the title is all a background tab shows
    document.title =
      mid === null || conn.state !== 'open'
        ? `${group()} · flowbook`
        : `${fmtMid(mid, raw.decimals)} ${group()} · flowbook`
    view.tapeRate.value = raw.tradeRate.rate(now)
    raw.tape.windowMs = adaptiveWindow(view.tapeRate.value[0])
    view.tapeWindow.value = raw.tape.windowMs
    view.e2e.value = raw.e2e.summary()
  }
  for (const hook of hooks) {
    try {
      hook(d, now)
    } catch (e) {
      console.error('frame hook failed', e)
    }
  }
}

function rebuildLadder(): void {
  const depth = raw.depth
  const inc = included()
  const input = depth ? { bids: depth.bids, asks: depth.asks, venue: String(depth.venue) } : null
  view.ladder.value = buildLadder(input, inc, ladderRows())
  view.depthFull.value = buildLadder(input, inc, DEPTH_LEVELS)
  view.depthMeta.value = depth
    ? {
        state: depth.state ?? 'unknown',
        venues: depth.venues ?? [],
        excluded: depth.excluded ?? {},
        conversion: depth.conversion,
        unit: depth.unit ?? null,
        at: depth.ts_gw ? depth.ts_gw / 1e6 : null,
      }
    : null
  view.bboAll.value = raw.bboAll
  view.decimals.value = raw.decimals
  view.sizeDecimals.value = raw.sizeDecimals
}

function venueState(venue: string): VenueState {
  if (!raw.statusSeen || conn.state !== 'open') return 'unknown'
  if (raw.book === 'down') return 'down'
  const s = raw.status.get(venue)?.state
  return s === 'live' || s === 'syncing' || s === 'stale' || s === 'down' ? s : 'unknown'
}

function rebuildVenues(now: number): void {
  const members = view.members.value
  const rows: VenueRow[] = []
  for (const venue of view.venues.value) {
    const m = members.find((x) => x.venue === venue) ?? null
    const b = raw.bbo.get(venue)
    const msg = b?.msg ?? null
    const bid = msg?.bid ? msg.bid[0] : null
    const ask = msg?.ask ? msg.ask[0] : null
    const vs = raw.stats?.venues?.[venue]
    const st = raw.status.get(venue)
    rows.push({
      venue,
      state: venueState(venue),
      symbol: m?.symbol ?? null,
      bookState: m ? ((msg?.state as VenueState) ?? (st?.instruments?.[m.symbol] as VenueState) ?? null) : null,
      bid,
      bidSize: msg?.bid ? msg.bid[1] : null,
      ask,
      askSize: msg?.ask ? msg.ask[1] : null,
      mid: bid !== null && ask !== null ? (bid + ask) / 2 : null,
      rate: m ? rateOf(m.symbol) : 1,
      spreadBps: msg?.spread_bps ?? null,
      msgRate: typeof vs?.msg_rate === 'number' && venueState(venue) !== 'down' ? vs.msg_rate : null,
      lastMsgAge: typeof st?.last_msg_age_s === 'number' ? st.last_msg_age_s : null,
      reason: msg?.reason ?? null,
      enabled: !prefs.off[venue],
    })
  }
  view.venueRows.value = rows
  view.book.value = raw.book
  void now
}

function rebuildTape(now: number): void {
  const inc = included()
  const rows = inc === null ? raw.tape.rows : raw.tape.rows.filter((r) => inc.has(r.venue))
  view.tapeNow.value = now
  view.tape.value = rows.slice(0, 150)
  view.tapeRate.value = raw.tradeRate.rate(now)
  view.tradesDropped.value = raw.tradesDropped
}

function pct(x: unknown): Percentiles | null {
  return x && typeof x === 'object' && 'count' in (x as object) && (x as Percentiles).count
    ? (x as Percentiles)
    : null
}

/** Merge several venues' summaries for one stage: the worst of each percentile. */
function worst(list: Array<Percentiles | null>): Percentiles | null {
  const ps = list.filter((p): p is Percentiles => p !== null)
  if (ps.length === 0) return null
  if (ps.length === 1) return ps[0]
  const out: Percentiles = { count: 0 }
  for (const p of ps) {
    for (const k of ['p50', 'p95', 'p99', 'p99.9', 'max'] as const) {
      const v = p[k]
      if (typeof v === 'number' && (out[k] === undefined || v > out[k]!)) out[k] = v
    }
    out.count = (out.count ?? 0) + (p.count ?? 0)
  }
  return out
}

function rebuildMetrics(now: number): void {
  const s = raw.stats
  const venues = view.venues.value
  const stages: Stage[] = []
  const ingest = worst(venues.map((v) => pct(s?.venues?.[v]?.latency_us?.ingest)))
  stages.push({ name: 'ingest', detail: 'exchange frame read → ingest publish', p: ingest })
  const bl = s?.book?.latency_us ?? {}
  stages.push({ name: 'book', detail: 'ingest publish → book builder publish', p: pct(bl['ingest_pub_to_pub']) })
  stages.push({ name: 'depth', detail: 'frame read → conflated depth publish', p: pct(bl['depth_recv_to_pub']) })
  stages.push({ name: 'gateway', detail: 'book publish → WebSocket send', p: pct(s?.gateway?.latency_us?.['book_to_send']) })
  stages.push({ name: 'client', detail: 'gateway send → this browser', p: raw.gwToClient.summary() })
  stages.push({ name: 'end-to-end', detail: 'exchange frame read → this browser', p: raw.e2e.summary() })

  const procs: ProcRow[] = []
  for (const v of venues) {
    const vs = s?.venues?.[v]
    const down = venueState(v) === 'down'
    procs.push({
      name: `ingest ${v}`,
      pid: vs?.process?.pid ?? null,
      cpu: down ? null : (vs?.process?.cpu_percent ?? null),
      rss: down ? null : (vs?.process?.rss_bytes ?? null),
      state: venueState(v),
    })
  }
  procs.push({
    name: 'book builder',
    pid: s?.book?.process?.pid ?? null,
    cpu: s?.book?.process?.cpu_percent ?? null,
    rss: s?.book?.process?.rss_bytes ?? null,
    state: raw.book,
  })
  procs.push({
    name: 'gateway',
    pid: s?.gateway?.process?.pid ?? null,
    cpu: s?.gateway?.process?.cpu_percent ?? null,
    rss: s?.gateway?.process?.rss_bytes ?? null,
    state: conn.state === 'open' ? 'live' : 'down',
  })
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : null)
  const counters: VenueCounters[] = venues.map((v) => {
    const vs = s?.venues?.[v]
    return {
      venue: v,
      msgRate: venueState(v) === 'down' ? null : num(vs?.msg_rate),
      reconnects: num(vs?.reconnects),
      gaps: num(vs?.gaps),
      resyncs: num(vs?.resyncs),
      checksum: num(vs?.checksum_failures),
      parseErrors: num(vs?.parse_errors),
    }
  })
  view.metrics.value = {
    stages,
    procs,
    counters,
    clients: num(s?.gateway?.clients),
    clientMsgRate: raw.msgs.rate(now)[0],
  }
}

// ---- series (mid / spread per venue) -------------------------------------------------------------
export function seriesOf(venue: string): Series | undefined {
  return raw.series.get(venue)
}

export function seriesVenues(): string[] {
  return [...raw.series.keys()]
}

/** The rate that converts a market's prices to its group's unit: what the consolidated book last
 * said for its quote (``conversion``; the rate depends on the quote only), else 1. Kept while
 * markets of that quote are left out, so their mids stay comparable. */
function rateOf(symbol: string): number {
  return raw.rates.get(symbol.split('-')[1] ?? '') ?? 1
}

function noteRates(conversion: Conversion | undefined): void {
  for (const info of Object.values(conversion ?? {})) {
    if (typeof info?.quote === 'string' && typeof info.rate === 'number' && info.rate > 0)
      raw.rates.set(info.quote, info.rate)
  }
}

/** A mid/spread point; a venue's mid converted to the group's unit like the consolidated book's
 * prices, so that every line shares one axis. */
function addPoint(key: string, msg: BboMsg, t: number): void {
  if (!msg.bid || !msg.ask) {
    const s = raw.series.get(key)
    if (s !== undefined && !s.broken) {
      s.cut(t) // not live: the line stops here rather than holding the last mid up to now
      dirty.add('series')
    }
    return
  }
  const bid = msg.bid[0]
  const ask = msg.ask[0]
  const rate = key === 'all' ? 1 : rateOf(String(msg.symbol))
  const mid = ((bid + ask) / 2) * rate
  if (!(mid > 0)) return
  let s = raw.series.get(key)
  if (s === undefined) raw.series.set(key, (s = new Series(5 * 60_000, 250)))
  s.add(t, mid, ((ask - bid) / (bid + ask)) * 2e4)
  dirty.add('series')
}

// ---- incoming messages ---------------------------------------------------------------------------
function stickyDecimals(depth: DepthMsg): void {
  const prices: number[] = []
  for (const lv of depth.bids) prices.push(lv[0])
  for (const lv of depth.asks) prices.push(lv[0])
  const d = priceDecimals(prices)
  if (d > raw.decimals) raw.decimals = d
  const sizes: number[] = []
  for (const lv of depth.bids) sizes.push(lv[1])
  for (const lv of depth.asks) sizes.push(lv[1])
  const sd = priceDecimals(sizes, 6)
  if (sd > raw.sizeDecimals) raw.sizeDecimals = sd
}

function rememberTrade(key: string): boolean {
  if (raw.tradeIds.has(key)) return false
  raw.tradeIds.set(key, true)
  if (raw.tradeIds.size > 5000) {
    const first = raw.tradeIds.keys().next().value
    if (first !== undefined) raw.tradeIds.delete(first)
  }
  return true
}

function onTrades(msg: TradesMsg, recvMs: number): void {
  const venue = typeof msg.venue === 'string' ? msg.venue : ''
  const symbol = msg.symbol ?? ''
  const out: Trade[] = []
  for (const w of msg.trades ?? []) {
    const t = toTrade(w, venue, symbol, recvMs)
    if (t === null) continue
    if (w.id !== undefined && w.id !== null && !rememberTrade(`${t.venue}:${t.symbol}:${w.id}`)) continue
    out.push(t)
    if (msg.type === 'update') raw.tradeRate.add(recvMs, t.size)
  }
  if (out.length) {
    raw.tape.push(out, msg.type === 'update' ? recvMs : 0)
    markDirty('trades')
  }
}

function applyStatus(venue: string, body: VenueStatusBody): void {
  const prev = raw.status.get(venue)
  raw.status.set(venue, { ...prev, ...body })
  if (body.instruments && typeof body.instruments === 'object') {
    raw.symbols[venue] = Object.keys(body.instruments)
  } else if (!(venue in raw.symbols)) {
    raw.symbols[venue] = []
  }
}

/** A venue the gateway no longer lists (it was switched off and the pipeline restarted). */
function forgetVenue(venue: string): void {
  raw.status.delete(venue)
  delete raw.symbols[venue]
  raw.bbo.delete(venue)
  raw.series.delete(venue)
  markDirty('status')
  markDirty('bbo')
  dirty.add('series')
}

function validGroups(x: unknown): x is string[][] {
  return (
    Array.isArray(x) &&
    x.every((g) => Array.isArray(g) && g.length > 0 && g.every((q) => typeof q === 'string' && q))
  )
}

function onStatus(msg: StatusMsg): void {
  if (msg.book === 'live' || msg.book === 'down') raw.book = msg.book
  if (msg.type === 'snapshot' && msg.venues && !Array.isArray(msg.venues)) {
    const listed = new Set(Object.keys(msg.venues))
    for (const venue of new Set([...raw.status.keys(), ...Object.keys(raw.symbols)])) {
      if (!listed.has(venue)) forgetVenue(venue)
    }
    for (const [venue, body] of Object.entries(msg.venues)) applyStatus(venue, body)
  } else if (typeof msg.venue === 'string' && msg.venue !== 'all') {
    applyStatus(msg.venue, msg)
  }
  if (msg.type === 'snapshot' && validGroups(msg.quote_groups)) {
    raw.quoteGroups = msg.quote_groups
    if (JSON.stringify(raw.quoteGroups) !== JSON.stringify(view.quoteGroups.value)) {
      view.quoteGroups.value = raw.quoteGroups
    }
  }
  raw.statusSeen = true
  const venues = sortVenues(Object.keys(raw.symbols))
  if (venues.join() !== view.venues.value.join()) view.venues.value = venues
  const groups = groupsOf(raw.symbols, raw.quoteGroups)
  if ([...groups].join() !== [...view.groups.value].join()) view.groups.value = groups
  const markets = marketsIn(groups, raw.quoteGroups)
  if (markets.join() !== view.markets.value.join()) view.markets.value = markets
  refreshSubscriptions()
  markDirty('status')
}

function recordLatency(msg: Envelope, recvMs: number): void {
  const nowNs = recvMs * 1e6
  if (typeof msg.ts_recv === 'number' && msg.ts_recv > 0) raw.e2e.add((nowNs - msg.ts_recv) / 1e3)
  if (typeof msg.ts_gw === 'number' && msg.ts_gw > 0) raw.gwToClient.add((nowNs - msg.ts_gw) / 1e3)
}

export function handleMessage(msg: Envelope, recvMs: number): void {
  debug.messages++
  raw.msgs.add(recvMs, 1)
  const type = msg.type
  if (type === 'unsubscribed') {
    if (msg.id !== undefined) connection?.unsubscribed(String(msg.id))
    return
  }
  if (type === 'pong' || type === 'subscribed') return
  if (type === 'error') {
    const e = msg as ErrorMsg
    if (e.code === 'trades_dropped') {
      raw.tradesDropped += typeof e.count === 'number' ? e.count : 1
      markDirty('trades')
      return
    }
    const failed = e.id ?? e.request?.id
    const req = e.request as { op?: string; channel?: string; depth?: number } | undefined
    if (e.code === 'bad_request' && req?.channel === 'depth' && req.depth !== undefined) {
      // a gateway whose [book] depth is below ours: its default number of levels will do
      raw.depthRefused = true
      refreshSubscriptions()
    } else if (failed !== undefined && req?.op === 'subscribe') connection?.failed(String(failed))
    if (failed !== undefined && e.request?.op === 'unsubscribe')
      connection?.unsubscribeFailed(String(failed), e.code === 'not_subscribed')
    raw.errors = [{ at: Date.now(), code: e.code, message: e.message }, ...raw.errors].slice(0, 5)
    view.errors.value = raw.errors
    console.warn('gateway error', e.code, e.message)
    return
  }
  if (type !== 'snapshot' && type !== 'update') return
  if (msg.id !== undefined && !connection?.isWanted(msg.id)) return // a subscription we left
  const channel = msg.channel
  // latency on unconflated channels only (depth waits for its interval_ms by design)
  if (type === 'update' && (channel === 'trades' || (channel === 'bbo' && msg.venue !== 'all')))
    recordLatency(msg, recvMs)
  switch (channel) {
    case 'depth': {
      const d = msg as DepthMsg
      raw.depth = d
      noteRates(d.conversion)
      stickyDecimals(d)
      markDirty('depth')
      break
    }
    case 'bbo': {
      const b = msg as BboMsg
      const t = Date.now()
      if (b.venue === 'all') {
        raw.bboAll = b
        noteRates(b.conversion)
        addPoint('all', b, t)
        markDirty('depth')
      } else if (typeof b.venue === 'string') {
        raw.bbo.set(b.venue, { msg: b, at: t })
        addPoint(b.venue, b, t)
        markDirty('bbo')
      }
      break
    }
    case 'trades':
      onTrades(msg as TradesMsg, Date.now())
      break
    case 'status':
      onStatus(msg as StatusMsg)
      break
    case 'stats':
      raw.stats = msg as StatsMsg
      raw.statsAt = Date.now()
      markDirty('stats')
      break
  }
}

// ---- subscriptions ---------------------------------------------------------------------------------
let connection: Connection | null = null

export function desiredSubscriptions(): SubscribeSpec[] {
  const subs: SubscribeSpec[] = [
    { op: 'subscribe', id: 'status', channel: 'status', venue: 'all' },
    { op: 'subscribe', id: 'stats', channel: 'stats', venue: 'all' },
  ]
  if (!raw.statusSeen) return subs
  const g = group()
  const members = view.members.value
  if (members.length === 0) return subs
  const depth = raw.depthRefused ? {} : { depth: DEPTH_LEVELS } // else the gateway's default
  subs.push({ op: 'subscribe', id: `depth:all:${g}`, channel: 'depth', venue: 'all', symbol: g, ...depth, interval_ms: 100 })
  subs.push({ op: 'subscribe', id: `bbo:all:${g}`, channel: 'bbo', venue: 'all', symbol: g, interval_ms: 100 })
  for (const m of members) {
    subs.push({ op: 'subscribe', id: `bbo:${m.venue}:${m.symbol}`, channel: 'bbo', venue: m.venue, symbol: m.symbol, interval_ms: 0 })
  }
  subs.push({ op: 'subscribe', id: `trades:all:${g}`, channel: 'trades', venue: 'all', symbol: g })
  return subs
}

function refreshSubscriptions(): void {
  const members = membersOf(group(), raw.symbols, raw.quoteGroups)
  const key = (ms: Member[]) => ms.map((m) => `${m.venue}:${m.symbol}`).join()
  if (key(members) !== key(view.members.value)) view.members.value = members
  connection?.setSubscriptions(desiredSubscriptions())
}

/** Forget everything about the previous instrument. */
function resetInstrument(): void {
  raw.depth = null
  raw.bboAll = null
  raw.bbo.clear()
  raw.tape.clear()
  raw.tradeIds.clear()
  raw.tradeRate.clear()
  raw.series.clear()
  raw.rates.clear()
  raw.decimals = 0
  raw.sizeDecimals = 0
  raw.e2e.clear()
  raw.gwToClient.clear()
}

export function start(url = gatewayUrl()): Connection {
  connection = new Connection(url, {
    onMessage: handleMessage,
    onState(state, info) {
      conn.state = state
      conn.attempt = info.attempt
      conn.retryAt = info.retryAt
      conn.reason = info.reason
      conn.since = Date.now()
      if (state === 'open') conn.everOpen = true
      if (state !== 'open') {
        raw.statusSeen = false // venue states are unknown until the next status snapshot
      }
      markDirty('prefs')
    },
  })
  connection.setSubscriptions(desiredSubscriptions())
  connection.start()

  watch(
    () => group(),
    () => {
      resetInstrument()
      refreshSubscriptions()
      markDirty('prefs')
    },
  )
  watch(
    () => [JSON.stringify(prefs.off), prefs.rows, layout.ladderFit],
    () => markDirty('prefs'),
  )
  watch(
    () => JSON.stringify(prefs),
    (s) => {
      try {
        localStorage.setItem(STORAGE_KEY, s)
      } catch {
        /* private mode */
      }
    },
  )
  setInterval(() => {
    if (document.hidden) {
      // a hidden tab gets no animation frames: update (title, windows) once a second anyway
      dirty.add('tick')
      frame()
    } else markDirty('tick')
  }, 1000)
  window.addEventListener('keydown', onKey)
  markDirty('prefs')
  return connection
}

/** Keys: 1-9 pick one of the first nine markets, s / p spot or perp. Not while typing in a field. */
function onKey(ev: KeyboardEvent): void {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return
  const t = ev.target as HTMLElement | null
  if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return
  const n = Number(ev.key)
  const markets = view.markets.value
  if (Number.isInteger(n) && n >= 1 && n <= Math.min(9, markets.length)) prefs.market = markets[n - 1]
  else if (ev.key === 's') prefs.kind = 'spot'
  else if (ev.key === 'p') prefs.kind = 'perp'
}

export function toggleVenue(venue: string): void {
  prefs.off = { ...prefs.off, [venue]: !prefs.off[venue] }
}

export function soloVenue(venue: string): void {
  const off: Record<string, boolean> = {}
  for (const v of view.venues.value) off[v] = v !== venue
  const already = view.venues.value.every((v) => (v === venue ? !prefs.off[v] : prefs.off[v]))
  prefs.off = already ? {} : off
}

export { raw as _raw }
