import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

/**
 * Files that train with real Flower SuperNode processes (LOCAL and REMOTE), a dozen Python processes
 * per run. On 2 cores two of them at once only make each other slow, so they run one after another,
 * while the files that only talk to a Pollen, or train on the Simulation Engine (one Ray worker per
 * run, SIMULATION_CPUS=1), run one after another beside them. `npm test` (scripts/test.sh) runs the
 * two lanes in two vitest processes at once.
 */
const FLOWER_FILES = [
  'test/training.test.ts', 'test/training-faults.test.ts', 'test/instances.test.ts', 'test/remote-nodes.test.ts',
  'test/database-faults.test.ts', 'test/dashboard.browser.test.ts',
];

const shared = {
  globalSetup: ['test/support/global-setup.ts'],
  pool: 'forks' as const,
  fileParallelism: false,
  testTimeout: 60_000,
  hookTimeout: 90_000,
};

export default defineConfig({
  resolve: {
    // One copy of graphql for everything (tests, graphql-ws, codegen output).
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    reporters: ['default'],
    projects: [
      { extends: true, test: { ...shared, name: 'flower', include: FLOWER_FILES } },
      { extends: true, test: { ...shared, name: 'api', include: ['test/**/*.test.ts'], exclude: FLOWER_FILES } },
    ],
  },
});
