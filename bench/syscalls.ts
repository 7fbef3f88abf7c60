/**
 * System calls per unit of work, sniffmux next to HAProxy: attaches
 * `strace -c -f` to each proxy while one scenario runs against it, and prints
 * the calls each made per connection (strace slows the proxy, so the rate
 * here means nothing; the counts do).
 *
 *   node --import tsx bench/syscalls.ts [--scenario conn-raw] [--duration 3s] [--target sniffmux --target haproxy]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { parseDuration } from '../src/config/index.js';
import { startBackendProcess } from '../src/bench/process.js';
import { findScenarios } from '../src/bench/scenarios.js';
import { sniffmuxProcess, type Target } from '../src/bench/targets.js';
import { haproxy } from './peers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'conn-raw' },
    duration: { type: 'string', default: '3s' },
    connections: { type: 'string', default: '20' },
    target: { type: 'string', multiple: true, default: ['sniffmux', 'haproxy'] },
  },
});
const [scenario] = findScenarios([values.scenario!]);
const targets: Record<string, () => Target> = {
  sniffmux: () => sniffmuxProcess({ cli: path.join(ROOT, 'dist/cli.js') }),
  haproxy,
};

/** strace -c's table: calls by syscall name. */
function parseCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') counts.set(m[2]!, Number(m[1]));
  }
  return counts;
}

const backend = await startBackendProcess();
const ctx = { durationMs: parseDuration(values.duration!) as number, warmupMs: 0, connections: Number(values.connections), hold: 0, progress: () => {} };
const results = new Map<string, Map<string, number>>();
for (const name of values.target!) {
  const make = targets[name];
  if (!make) throw new Error(`unknown target ${name} (${Object.keys(targets).join(', ')})`);
  const running = await make().start(backend.port);
  await scenario!.run(running, { ...ctx, durationMs: 1000 }); // warm-up, not counted
  const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'sniffmux-strace-')), 'counts');
  const strace = spawn('strace', ['-c', '-f', '-o', out, '-p', String(running.pid)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300)); // strace attaches every thread; there is no signal for "attached"
  const outcome = await scenario!.run(running, ctx);
  strace.kill('SIGINT');
  await once(strace, 'exit');
  await running.stop();
  const units = ((outcome.figures.rate ?? 0) * ctx.durationMs) / 1000;
  const perUnit = new Map([...parseCounts(readFileSync(out, 'utf8'))].map(([k, v]) => [k, v / units]));
  results.set(name, perUnit);
  process.stderr.write(`${name}: ${Math.round(units)} units\n`);
}
await backend.daemon.stop();

const names = [...new Set([...results.values()].flatMap((m) => [...m.keys()]))];
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
names.sort((x, y) => Math.max(...[...results.values()].map((m) => m.get(y) ?? 0)) - Math.max(...[...results.values()].map((m) => m.get(x) ?? 0)));
process.stdout.write(`${scenario!.name}: system calls per unit of work\n${'syscall'.padEnd(18)}${[...results.keys()].map((k) => k.padStart(10)).join('')}\n`);
for (const n of names) {
  const cells = [...results.values()].map((m) => (m.get(n) ?? 0).toFixed(2).padStart(10));
  if ([...results.values()].some((m) => (m.get(n) ?? 0) >= 0.05)) process.stdout.write(`${n.padEnd(18)}${cells.join('')}\n`);
}
process.stdout.write(`${'all'.padEnd(18)}${[...results.values()].map((m) => total(m).toFixed(1).padStart(10)).join('')}\n`);
