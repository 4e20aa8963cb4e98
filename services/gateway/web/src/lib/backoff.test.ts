import { describe, expect, it } from 'vitest'
import { backoffDelay } from './backoff'

describe('backoffDelay', () => {
  it('doubles from 0.5 s with jitter in [step/2, step]', () => {
    expect(backoffDelay(0, 0)).toBe(250)
    expect(backoffDelay(0, 1)).toBe(500)
    expect(backoffDelay(1, 1)).toBe(1000)
    expect(backoffDelay(3, 0.5)).toBe(3000)
  })
  it('is capped', () => {
    expect(backoffDelay(20, 1)).toBe(8000)
    expect(backoffDelay(1000, 1, { maxMs: 5000 })).toBe(5000)
    expect(backoffDelay(5, 2)).toBe(8000)
  })
})
