import { defineConfig } from 'vitest/config';
// Plain ESM so it loads natively (--configLoader native): the test VM's root is read-only.

// The backend under test comes from IOASID_BACKEND (sim by default); the real-kernel tier runs the
// same files inside the test VM with IOASID_BACKEND=linux.
export default defineConfig({
  cacheDir: process.env.IOASID_VITEST_CACHE ?? 'node_modules/.vite',
  // src/cli.cts and src/cli/*.cts (the command's CommonJS bin): TypeScript too
  oxc: { include: /\.([cm]?ts|[jt]sx)$/ },
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
