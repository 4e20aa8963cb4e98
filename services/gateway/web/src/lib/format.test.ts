import { describe, expect, it } from 'vitest'
import {
  decimalsOf,
  fmtBps,
  fmtBytes,
  fmtCompact,
  fmtDuration,
  fmtFixed,
  fmtLatencyUs,
  fmtMid,
  fmtPercent,
  fmtPrice,
  fmtSize,
  fmtTime,
  nsToMs,
  priceDecimals,
} from './format'

describe('decimalsOf / priceDecimals', () => {
  it('counts decimals of the shortest form', () => {
    expect(decimalsOf(65000)).toBe(0)
    expect(decimalsOf(64999.01)).toBe(2)
    expect(decimalsOf(0.00012)).toBe(5)
    expect(decimalsOf(-3.5)).toBe(1)
  })
  it('handles exponent notation', () => {
    expect(decimalsOf(1e-7)).toBe(7)
    expect(decimalsOf(1.5e-7)).toBe(8)
    expect(decimalsOf(1e21)).toBe(0)
  })
  it('ignores float noise', () => {
    expect(decimalsOf(65061.200000000004)).toBe(1)
    expect(decimalsOf(0.1 + 0.2)).toBe(1)
  })
  it('is 0 for non-finite', () => {
    expect(decimalsOf(NaN)).toBe(0)
    expect(decimalsOf(Infinity)).toBe(0)
  })
  it('takes the maximum over prices, capped', () => {
    expect(priceDecimals([65000.1, 64999.25, 65001])).toBe(2)
    expect(priceDecimals([])).toBe(0)
    expect(priceDecimals([1e-12], 8)).toBe(8)
  })
})

describe('fmtFixed / fmtPrice', () => {
  it('groups thousands and pads decimals', () => {
    expect(fmtFixed(64999.5, 2)).toBe('64,999.50')
    expect(fmtFixed(1234567.891, 1)).toBe('1,234,567.9')
    expect(fmtFixed(999, 0)).toBe('999')
    expect(fmtFixed(1000, 0)).toBe('1,000')
    expect(fmtFixed(1000, 0, false)).toBe('1000')
  })
  it('handles signs, zero and missing values', () => {
    expect(fmtFixed(-1234.5, 1)).toBe('-1,234.5')
    expect(fmtFixed(-0.0001, 2)).toBe('0.00')
    expect(fmtFixed(null, 2)).toBe('—')
    expect(fmtFixed(undefined, 2)).toBe('—')
    expect(fmtFixed(NaN, 2)).toBe('—')
  })
  it('formats prices with the instrument decimals', () => {
    expect(fmtPrice(0.15234, 5)).toBe('0.15234')
    expect(fmtPrice(65000, 2)).toBe('65,000.00')
  })
  it('gives a mid one more decimal only between ticks', () => {
    expect(fmtMid(65000.015, 2)).toBe('65,000.015')
    expect(fmtMid(65000.02, 2)).toBe('65,000.02')
    expect(fmtMid(null, 2)).toBe('—')
  })
})

describe('fmtSize', () => {
  it('uses magnitude-based decimals without a precision', () => {
    expect(fmtSize(0)).toBe('0')
    expect(fmtSize(0.02854)).toBe('0.02854')
    expect(fmtSize(1.5)).toBe('1.500')
    expect(fmtSize(250)).toBe('250.00')
    expect(fmtSize(12345)).toBe('12,345')
    expect(fmtSize(0.00001)).toBe('1.00e-5')
  })
  it('aligns on the instrument precision', () => {
    expect(fmtSize(1.422, 5)).toBe('1.42200')
    expect(fmtSize(0.90323, 5)).toBe('0.90323')
    expect(fmtSize(0, 5)).toBe('0.00000')
    expect(fmtSize(4321.123, 4)).toBe('4,321')
    expect(fmtSize(191_300.5, 2)).toBe('191,301')
    expect(fmtSize(1_150_000, 2)).toBe('1,150,000')
    expect(fmtSize(12_500_000, 2)).toBe('12.50M')
  })
  it('abbreviates large sizes', () => {
    expect(fmtSize(123456)).toBe('123.5K')
    expect(fmtSize(2_500_000)).toBe('2.50M')
    expect(fmtSize(3.2e9)).toBe('3.20B')
    expect(fmtSize(null)).toBe('—')
  })
})

describe('fmtCompact / fmtBps / fmtPercent', () => {
  it('compacts counts and notionals', () => {
    expect(fmtCompact(950)).toBe('950')
    expect(fmtCompact(12345)).toBe('12.3K')
    expect(fmtCompact(4_560_000)).toBe('4.56M')
    expect(fmtCompact(33.25)).toBe('33.3')
    expect(fmtCompact(7)).toBe('7')
  })
  it('shows bps with decimals by size', () => {
    expect(fmtBps(0.0046)).toBe('0.005')
    expect(fmtBps(2.345)).toBe('2.35')
    expect(fmtBps(-12.34)).toBe('-12.3')
    expect(fmtBps(150.4)).toBe('150')
    expect(fmtBps(null)).toBe('—')
  })
  it('shows percentages', () => {
    expect(fmtPercent(13.55)).toBe('13.6%')
    expect(fmtPercent(undefined)).toBe('—')
  })
})

describe('fmtLatencyUs / fmtBytes / fmtDuration', () => {
  it('picks the unit', () => {
    expect(fmtLatencyUs(153)).toBe('153µs')
    expect(fmtLatencyUs(2270)).toBe('2.27ms')
    expect(fmtLatencyUs(48_900)).toBe('48.9ms')
    expect(fmtLatencyUs(1_500_000)).toBe('1.50s')
    expect(fmtLatencyUs(-3)).toBe('0µs')
    expect(fmtLatencyUs(undefined)).toBe('—')
  })
  it('uses binary units for memory', () => {
    expect(fmtBytes(512)).toBe('512 B')
    expect(fmtBytes(36_724_736)).toBe('35.0 MiB')
    expect(fmtBytes(2048)).toBe('2.0 KiB')
    expect(fmtBytes(null)).toBe('—')
  })
  it('formats durations', () => {
    expect(fmtDuration(4.7)).toBe('4s')
    expect(fmtDuration(185)).toBe('3m 05s')
    expect(fmtDuration(7260)).toBe('2h 01m')
  })
})

describe('fmtTime / nsToMs', () => {
  it('formats local time with milliseconds', () => {
    const d = new Date(2026, 0, 2, 3, 4, 5, 67)
    expect(fmtTime(d.getTime())).toBe('03:04:05.067')
    expect(fmtTime(d.getTime(), false)).toBe('03:04:05')
    expect(fmtTime(null)).toBe('—')
  })
  it('converts gateway nanoseconds', () => {
    expect(nsToMs(1_795_616_865_797_665_954)).toBeCloseTo(1_795_616_865_797.666, 2)
    expect(nsToMs(0)).toBeNull()
    expect(nsToMs(undefined)).toBeNull()
  })
})
