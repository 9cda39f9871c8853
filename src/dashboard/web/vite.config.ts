import { defineConfig } from 'vite';

// Run as `vite build src/dashboard/web`: this folder is the root. The bundle goes beside the
// server's tsc output, where src/dashboard/dashboard.router.ts serves it from.
export default defineConfig({
  base: '/',
  // No public/ folder: everything the page loads is imported, so it gets a hashed name.
  publicDir: false,
  build: {
    outDir: '../../../dist/dashboard/web',
    emptyOutDir: true,
    target: 'es2022',
    // The budget is measured on what the page loads (bench/dashboard.mjs), not guessed here.
    reportCompressedSize: false,
    // Keep scripts external: the Content-Security-Policy allows no inline script or style.
    assetsInlineLimit: 0,
  },
});
