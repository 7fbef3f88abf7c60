/**
 * Debian's Chromium as the tests drive it (playwright-core, never a browser
 * download). Flags from ../shared/TOOLCHAIN.md.
 */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  // Without these Chromium keeps trying to reach Google from a machine with no network.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
