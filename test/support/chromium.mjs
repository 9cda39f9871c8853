// Plain JavaScript, so that the tests and the benchmarks in bench/ share it.

/** Debian's Chromium (scripts/install-test-deps.sh installs it). */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless Chromium as root in a sandbox-less container, kept off the network: no calls home,
 * no component updates, no QUIC. Pages may only talk to the Pollen under test.
 * @type {string[]}
 */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
