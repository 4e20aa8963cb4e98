/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// `npm run dev` proxies the gateway's API to the page's origin, as the gateway itself does
// in production (it serves dist/ at /). FLOWBOOK_GATEWAY=http://127.0.0.1:8080 by default.
const gateway = process.env.FLOWBOOK_GATEWAY ?? 'http://127.0.0.1:8080'

export default defineConfig({
  plugins: [vue()],
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      '/ws': { target: gateway.replace(/^http/, 'ws'), ws: true },
      '/api': gateway,
      '/healthz': gateway,
      '/metrics': gateway,
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
    // generous: CI and developer machines here are small and often loaded
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
