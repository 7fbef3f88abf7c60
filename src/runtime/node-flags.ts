/**
 * The V8 flags sniffmux runs with. They are start-up flags (V8 reads them
 * when it sets up its heap, so setting them from inside the process does
 * nothing): the bin's shebang (src/cli.ts), `npm start` and the bench pass
 * them, and cluster workers inherit them (process.execArgv).
 *
 * --max-semi-space-size=4: V8 grows its young generation to 2 × 16 MB under
 * a burst of new connections and keeps it, so 9,000 idle connections cost
 * about 6 KB each in RSS; with 4 MB semi-spaces about 2.3 KB, at the same
 * CPU per connection and request (bench/results/2026-12-02.md, and the
 * comparison of 1, 2 and 4 MB in the note on issue 6). Every connection's
 * garbage dies young, so a small young generation costs scavenges that find
 * little alive.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
