import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Connection, gatewayUrl, type ConnState } from './connection'
import type { SubscribeSpec } from './types'

class FakeSocket {
  static OPEN = 1
  static all: FakeSocket[] = []
  readyState = 0
  sent: unknown[] = []
  onopen: (() => void) | null = null
  onmessage: ((ev: { data: string }) => void) | null = null
  onclose: ((ev: { code: number; reason: string }) => void) | null = null
  onerror: (() => void) | null = null
  constructor(readonly url: string) {
    FakeSocket.all.push(this)
  }
  send(data: string) {
    this.sent.push(JSON.parse(data))
  }
  close(code = 1000, reason = '') {
    this.readyState = 3
    this.onclose?.({ code, reason })
  }
  // test helpers
  open() {
    this.readyState = 1
    this.onopen?.()
  }
  drop(code = 1006) {
    this.readyState = 3
    this.onclose?.({ code, reason: '' })
  }
  receive(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) })
  }
}

const sub = (id: string, extra: Partial<SubscribeSpec> = {}): SubscribeSpec => ({
  op: 'subscribe',
  id,
  channel: 'status',
  venue: 'all',
  ...extra,
})

describe('Connection', () => {
  let states: ConnState[]
  let messages: unknown[]
  let conn: Connection

  beforeEach(() => {
    vi.useFakeTimers()
    FakeSocket.all = []
    vi.stubGlobal('WebSocket', FakeSocket)
    states = []
    messages = []
    conn = new Connection('ws://gw/ws', {
      onMessage: (m) => messages.push(m),
      onState: (s) => states.push(s),
    })
  })
  afterEach(() => {
    conn.stop()
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('subscribes once open and forwards messages', () => {
    conn.setSubscriptions([sub('status')])
    conn.start()
    const ws = FakeSocket.all[0]
    expect(ws.sent).toEqual([])
    ws.open()
    expect(states).toContain('open')
    expect(ws.sent).toEqual([sub('status')])
    ws.receive({ type: 'pong' })
    expect(messages).toEqual([{ type: 'pong' }])
  })

  it('sends only the difference when the wanted set changes', () => {
    conn.start()
    const ws = FakeSocket.all[0]
    ws.open()
    conn.setSubscriptions([sub('status'), sub('depth:all:BTC-USD', { channel: 'depth', symbol: 'BTC-USD' })])
    ws.sent = []
    conn.setSubscriptions([sub('status'), sub('depth:all:ETH-USD', { channel: 'depth', symbol: 'ETH-USD' })])
    expect(ws.sent).toEqual([
      { op: 'unsubscribe', id: 'depth:all:BTC-USD' },
      sub('depth:all:ETH-USD', { channel: 'depth', symbol: 'ETH-USD' }),
    ])
    expect(conn.isWanted('depth:all:ETH-USD')).toBe(true)
    expect(conn.isWanted('depth:all:BTC-USD')).toBe(false)
  })

  it('reconnects with backoff and subscribes again', () => {
    conn.setSubscriptions([sub('status'), sub('stats', { channel: 'stats' })])
    conn.start()
    FakeSocket.all[0].open()
    FakeSocket.all[0].drop()
    expect(conn.state).toBe('reconnecting')
    expect(FakeSocket.all).toHaveLength(1)
    vi.advanceTimersByTime(600) // first delay is at most 500 ms
    expect(FakeSocket.all).toHaveLength(2)
    // the gateway is still down: the next delay is longer
    FakeSocket.all[1].drop()
    vi.advanceTimersByTime(400)
    expect(FakeSocket.all).toHaveLength(2)
    vi.advanceTimersByTime(700)
    expect(FakeSocket.all).toHaveLength(3)
    FakeSocket.all[2].open()
    expect(conn.state).toBe('open')
    expect(FakeSocket.all[2].sent).toEqual([sub('status'), sub('stats', { channel: 'stats' })])
  })

  it('pings and drops a silent connection', () => {
    conn = new Connection('ws://gw/ws', { onMessage: () => {}, onState: (s) => states.push(s) }, { pingEveryMs: 1000, silenceMs: 2500 })
    conn.start()
    const ws = FakeSocket.all[0]
    ws.open()
    vi.advanceTimersByTime(1000)
    expect(ws.sent).toContainEqual({ op: 'ping' })
    vi.advanceTimersByTime(2500)
    expect(conn.state).toBe('reconnecting')
  })

  it('asks again for a subscription the gateway refused', () => {
    conn.start()
    const ws = FakeSocket.all[0]
    ws.open()
    conn.setSubscriptions([sub('status'), sub('depth:all:X', { channel: 'depth', symbol: 'X' })])
    conn.failed('depth:all:X')
    ws.sent = []
    conn.setSubscriptions([sub('status'), sub('depth:all:X', { channel: 'depth', symbol: 'X' })])
    expect(ws.sent).toEqual([]) // not at once
    vi.advanceTimersByTime(3100)
    expect(ws.sent).toEqual([sub('depth:all:X', { channel: 'depth', symbol: 'X' })])
    conn.failed('not-wanted') // ignored
    expect(conn.isWanted('not-wanted')).toBe(false)
  })

  it('sends a refused unsubscribe again, so the gateway does not stream it for ever', () => {
    conn.start()
    const ws = FakeSocket.all[0]
    ws.open()
    const depth = (g: string) => sub(`depth:all:${g}`, { channel: 'depth', symbol: g })
    const requests = () => ws.sent.filter((m) => (m as { op: string }).op !== 'ping')
    conn.setSubscriptions([sub('status'), depth('BTC-USD')])
    conn.setSubscriptions([sub('status'), depth('ETH-USD')]) // unsubscribe BTC-USD
    conn.unsubscribeFailed('depth:all:BTC-USD') // the gateway said rate_limited
    ws.sent = []
    vi.advanceTimersByTime(3100)
    expect(requests()).toEqual([{ op: 'unsubscribe', id: 'depth:all:BTC-USD' }])
    conn.unsubscribed('depth:all:BTC-USD') // confirmed: nothing more
    ws.sent = []
    conn.unsubscribeFailed('depth:all:BTC-USD')
    vi.advanceTimersByTime(3100)
    expect(requests()).toEqual([])
    // refused, then wanted again before the retry: not unsubscribed
    conn.setSubscriptions([sub('status')]) // unsubscribe ETH-USD
    conn.unsubscribeFailed('depth:all:ETH-USD')
    conn.setSubscriptions([sub('status'), depth('ETH-USD')])
    ws.sent = []
    vi.advanceTimersByTime(3100)
    expect(requests()).not.toContainEqual({ op: 'unsubscribe', id: 'depth:all:ETH-USD' })
  })

  it('ignores events of a replaced socket', () => {
    conn.start()
    const old = FakeSocket.all[0]
    old.open()
    old.drop()
    vi.advanceTimersByTime(1000)
    old.receive({ type: 'update' })
    expect(messages).toEqual([])
  })
})

describe('gatewayUrl', () => {
  it('follows the page origin', () => {
    expect(gatewayUrl({ protocol: 'http:', host: 'h:8080' })).toBe('ws://h:8080/ws')
    expect(gatewayUrl({ protocol: 'https:', host: 'x.example' })).toBe('wss://x.example/ws')
  })
})
