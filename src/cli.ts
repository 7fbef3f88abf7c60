#!/usr/bin/env -S node --max-semi-space-size=4
// The flags on the line above are NODE_FLAGS (src/runtime/node-flags.ts); test/cli/node-flags.test.ts keeps them the same.
import { main } from './cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`sniffmux: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
