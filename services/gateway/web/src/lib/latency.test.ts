import { describe, expect, it } from 'vitest'
import { LatencyWindow, percentile } from './latency'

describe('percentile', () => {
  it('uses the nearest rank', () => {
    const s = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(percentile(s, 50)).toBe(50)
    expect(percentile(s, 99)).toBe(99)
    expect(percentile(s, 100)).toBe(100)
    expect(percentile([7], 50)).toBe(7)
    expect(percentile([], 50)).toBeNaN()
  })
})

describe('LatencyWindow', () => {
  it('summarizes the last samples only', () => {
    const w = new LatencyWindow(10)
    for (let i = 0; i < 10; i++) w.add(1_000_000) // old, slow
    for (let i = 1; i <= 10; i++) w.add(i * 100)
    const s = w.summary()!
    expect(s.count).toBe(10)
    expect(s.p50).toBe(500)
    expect(s.p95).toBe(1000) // nearest rank: ceil(0.95 * 10) = the 10th sample
    expect(s.max).toBe(1000)
  })
  it('clamps negative samples (clock skew) and skips NaN', () => {
    const w = new LatencyWindow(4)
    w.add(-5)
    w.add(NaN)
    expect(w.count).toBe(1)
    expect(w.summary()!.max).toBe(0)
    w.clear()
    expect(w.summary()).toBeNull()
  })
})
