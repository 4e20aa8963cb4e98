// Reconnect delays: exponential with jitter, 0.5 s doubling to a cap, never below half the step.

export interface BackoffOptions {
  baseMs?: number
  maxMs?: number
}

/** Delay before reconnect attempt `attempt` (0 for the first), `rand` in [0, 1). */
export function backoffDelay(attempt: number, rand: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 500
  const max = opts.maxMs ?? 8000
  const step = Math.min(max, base * Math.pow(2, Math.max(0, Math.min(attempt, 30))))
  const r = Math.min(Math.max(rand, 0), 1)
  return Math.round(step / 2 + (step / 2) * r)
}
