// The WebSocket to the gateway: reconnects by itself with backoff, keeps the wanted set of
// subscriptions and (re)subscribes whatever the gateway does not have, and notices a dead
// connection (no message for `silenceMs`, pings in between).

import { backoffDelay } from './backoff'
import type { Envelope, SubscribeSpec } from './types'

/** A refused subscription (rate limited, symbol not known yet) is asked again after this. */
const FAILED_RETRY_MS = 3000

export type ConnState = 'connecting' | 'open' | 'reconnecting'

export interface ConnEvents {
  onMessage(msg: Envelope, receivedMs: number): void
  onState(state: ConnState, info: { attempt: number; retryAt: number | null; reason: string }): void
}

export interface ConnOptions {
  pingEveryMs?: number
  silenceMs?: number
  baseMs?: number
  maxMs?: number
}

export function gatewayUrl(loc: Pick<Location, 'protocol' | 'host'> = location): string {
  const proto = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${loc.host}/ws`
}

export class Connection {
  private ws: WebSocket | null = null
  private wanted = new Map<string, SubscribeSpec>()
  private active = new Set<string>() // ids sent on the current socket
  private failedAt = new Map<string, number>() // ids the gateway refused, and when
  private leaving = new Set<string>() // unsubscribes sent on this socket, not yet confirmed
  private unsubFailed = new Set<string>() // unsubscribes the gateway refused (rate limit)
  private retryFailed: ReturnType<typeof setTimeout> | null = null
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private pingTimer: ReturnType<typeof setInterval> | null = null
  private lastMsg = 0
  private stopped = false
  state: ConnState = 'connecting'

  constructor(
    readonly url: string,
    private events: ConnEvents,
    private opts: ConnOptions = {},
  ) {}

  start(): void {
    this.stopped = false
    this.open()
  }

  stop(): void {
    this.stopped = true
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.retryFailed) clearTimeout(this.retryFailed)
    if (this.pingTimer) clearInterval(this.pingTimer)
    this.ws?.close(1000, 'bye')
    this.ws = null
  }

  /** Replace the wanted subscriptions; the socket gets the difference. */
  setSubscriptions(specs: SubscribeSpec[]): void {
    const next = new Map(specs.map((s) => [s.id, s]))
    for (const id of this.active) {
      if (!next.has(id)) {
        if (this.send({ op: 'unsubscribe', id })) this.leaving.add(id)
        this.active.delete(id)
      }
    }
    const now = Date.now()
    for (const [id, spec] of next) {
      const prev = this.wanted.get(id)
      const changed = prev !== undefined && JSON.stringify(prev) !== JSON.stringify(spec)
      if (changed) this.failedAt.delete(id)
      const refused = this.failedAt.get(id)
      if (refused !== undefined && now - refused < FAILED_RETRY_MS) continue
      if (!this.active.has(id) || changed) {
        if (this.send(spec)) this.active.add(id)
      }
    }
    this.wanted = next
  }

  /** The gateway refused subscription `id` (an error naming it): send it again later. */
  failed(id: string): void {
    if (!this.wanted.has(id)) return
    this.active.delete(id)
    this.failedAt.set(id, Date.now())
    this.scheduleFailedRetry()
  }

  /** The gateway confirmed unsubscribe `id`. */
  unsubscribed(id: string): void {
    this.leaving.delete(id)
    this.unsubFailed.delete(id)
  }

  /** The gateway refused unsubscribe `id` (a rate limit): it still streams it, so the
   * unsubscribe is sent again later, unless `id` is wanted again meanwhile. `gone`: it had no
   * such subscription (`not_subscribed`), nothing to do. */
  unsubscribeFailed(id: string, gone = false): void {
    if (gone) {
      this.unsubscribed(id)
      return
    }
    if (!this.leaving.has(id)) return
    this.unsubFailed.add(id)
    this.scheduleFailedRetry()
  }

  private scheduleFailedRetry(): void {
    if (this.retryFailed !== null) return
    this.retryFailed = setTimeout(() => {
      this.retryFailed = null
      this.failedAt.clear()
      for (const id of this.unsubFailed) {
        this.unsubFailed.delete(id)
        if (this.wanted.has(id)) this.leaving.delete(id)
        else if (!this.send({ op: 'unsubscribe', id })) this.leaving.delete(id)
      }
      this.setSubscriptions([...this.wanted.values()])
    }, FAILED_RETRY_MS)
  }

  isWanted(id: string | number | undefined): boolean {
    return id !== undefined && this.wanted.has(String(id))
  }

  send(obj: unknown): boolean {
    const ws = this.ws
    if (ws === null || ws.readyState !== WebSocket.OPEN) return false
    ws.send(JSON.stringify(obj))
    return true
  }

  private setState(state: ConnState, reason: string, retryAt: number | null = null): void {
    this.state = state
    this.events.onState(state, { attempt: this.attempt, retryAt, reason })
  }

  private open(): void {
    if (this.stopped) return
    let ws: WebSocket
    try {
      ws = new WebSocket(this.url)
    } catch (e) {
      this.scheduleRetry(String(e))
      return
    }
    this.ws = ws
    this.active.clear()
    this.leaving.clear() // a new socket starts with no subscription at all
    this.unsubFailed.clear()
    ws.onopen = () => {
      if (ws !== this.ws) return
      this.attempt = 0
      this.lastMsg = Date.now()
      this.setState('open', 'connected')
      for (const spec of this.wanted.values()) {
        if (this.send(spec)) this.active.add(spec.id)
      }
      this.startPings()
    }
    ws.onmessage = (ev: MessageEvent) => {
      if (ws !== this.ws) return
      const now = performance.timeOrigin + performance.now()
      this.lastMsg = Date.now()
      let msg: Envelope
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data))
      } catch {
        return
      }
      this.events.onMessage(msg, now)
    }
    ws.onclose = (ev: CloseEvent) => {
      if (ws !== this.ws) return
      this.ws = null
      this.active.clear()
      this.stopPings()
      const why = ev.reason ? `${ev.code} ${ev.reason}` : `code ${ev.code}`
      this.scheduleRetry(why)
    }
    ws.onerror = () => {
      /* onclose follows */
    }
  }

  private scheduleRetry(reason: string): void {
    if (this.stopped) return
    const delay = backoffDelay(this.attempt, Math.random(), {
      baseMs: this.opts.baseMs,
      maxMs: this.opts.maxMs,
    })
    this.attempt++
    this.setState('reconnecting', reason, Date.now() + delay)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.setState('reconnecting', reason, null)
      this.open()
    }, delay)
  }

  private startPings(): void {
    this.stopPings()
    const every = this.opts.pingEveryMs ?? 5000
    const silence = this.opts.silenceMs ?? 12_000
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastMsg > silence) {
        // half-open connection: nothing for too long, not even our pongs
        const ws = this.ws
        this.ws = null
        this.active.clear()
        this.stopPings()
        ws?.close(4001, 'silent')
        this.scheduleRetry('no data from the gateway')
        return
      }
      this.send({ op: 'ping' })
    }, every)
  }

  private stopPings(): void {
    if (this.pingTimer) clearInterval(this.pingTimer)
    this.pingTimer = null
  }
}
