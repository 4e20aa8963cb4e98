import { describe, expect, it } from 'vitest'
import { Series, extent, niceTicks } from './series'

describe('Series', () => {
  it('keeps one point per bucket, the latest', () => {
    const s = new Series(60_000, 250)
    s.add(1000, 10, 1)
    s.add(1100, 11, 2)
    s.add(1300, 12, 3)
    expect(s.points()).toEqual([
      { t: 1100, mid: 11, spreadBps: 2 },
      { t: 1300, mid: 12, spreadBps: 3 },
    ])
    expect(s.last()).toEqual({ t: 1300, mid: 12, spreadBps: 3 })
  })
  it('forgets points older than the window', () => {
    const s = new Series(1000, 10)
    for (let t = 0; t <= 5000; t += 100) s.add(t, t, 0)
    expect(s.points()[0].t).toBeGreaterThanOrEqual(4000)
    expect(s.length).toBe(11)
  })
  it('stays bounded over a long run', () => {
    const s = new Series(5 * 60_000, 250)
    for (let t = 0; t < 3_600_000; t += 50) s.add(t, 1, 1)
    expect(s.length).toBeLessThanOrEqual(1201)
  })
  it('ignores non-finite values and time going back', () => {
    const s = new Series()
    s.add(1000, NaN, 1)
    expect(s.length).toBe(0)
    s.add(2000, 1, 1)
    s.add(500, 2, 2)
    expect(s.points()).toHaveLength(1)
    s.clear()
    expect(s.last()).toBeNull()
  })
})

describe('extent / niceTicks', () => {
  it('widens a flat range', () => {
    expect(extent([5, 5, 5], 2)).toEqual([4, 6])
    expect(extent([1, 3, NaN, 2])).toEqual([1, 3])
    expect(extent([])).toBeNull()
  })
  it('picks round steps', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10])
    expect(niceTicks(64_990.3, 65_010.7, 4)).toEqual([64_995, 65_000, 65_005, 65_010])
    expect(niceTicks(0.14991, 0.15012, 3)).toEqual([0.15, 0.1501])
    expect(niceTicks(1, 1)).toEqual([])
  })
})
