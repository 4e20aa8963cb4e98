// A canvas that follows its container's size at the device pixel ratio.

import { onMounted, onUnmounted, type Ref } from 'vue'

export interface CanvasSize {
  w: number
  h: number
  dpr: number
}

export function useCanvas(
  host: Ref<HTMLElement | null>,
  canvas: Ref<HTMLCanvasElement | null>,
  draw: (ctx: CanvasRenderingContext2D, size: CanvasSize) => void,
): { redraw: () => void } {
  let size: CanvasSize = { w: 0, h: 0, dpr: 1 }
  let ro: ResizeObserver | null = null

  function redraw(): void {
    const c = canvas.value
    if (!c || size.w === 0 || size.h === 0) return
    const ctx = c.getContext('2d')
    if (!ctx) return
    ctx.setTransform(size.dpr, 0, 0, size.dpr, 0, 0)
    ctx.clearRect(0, 0, size.w, size.h)
    draw(ctx, size)
  }

  function resize(): void {
    const el = host.value
    const c = canvas.value
    if (!el || !c) return
    const r = el.getBoundingClientRect()
    const dpr = Math.min(window.devicePixelRatio || 1, 2)
    const w = Math.max(0, Math.floor(r.width))
    const h = Math.max(0, Math.floor(r.height))
    if (w === size.w && h === size.h && dpr === size.dpr) return
    size = { w, h, dpr }
    c.width = Math.round(w * dpr)
    c.height = Math.round(h * dpr)
    c.style.width = `${w}px`
    c.style.height = `${h}px`
    redraw()
  }

  onMounted(() => {
    ro = new ResizeObserver(resize)
    if (host.value) ro.observe(host.value)
    resize()
  })
  onUnmounted(() => ro?.disconnect())
  return { redraw }
}

export const COLORS = {
  grid: 'rgba(125, 135, 150, 0.10)',
  axis: '#5f6a79',
  label: '#7c8796',
  text: '#d5dbe3',
  bid: '#2ebd85',
  ask: '#f6465d',
  bidFill: 'rgba(46, 189, 133, 0.16)',
  askFill: 'rgba(246, 70, 93, 0.16)',
  mid: 'rgba(213, 219, 227, 0.45)',
  warn: '#f0a020',
}

export const FONT = "10px 'JetBrains Mono Variable', ui-monospace, monospace"
