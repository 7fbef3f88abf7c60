/**
 * Which of sniffmux's threads spend the CPU under one scenario's load: the
 * main (JavaScript) thread, the native splice thread, V8's and libuv's
 * helpers — per unit of work, from /proc/PID/task/TID/stat.
 *
 *   node --import tsx bench/threads.ts [--scenario conn-raw] [--duration 5s] [--splice auto|js] [--mode tcp|http]
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '../src/config/index.js';
import { startBackendProcess } from '../src/bench/process.js';
import { findScenarios } from '../src/bench/scenarios.js';
import { sniffmuxProcess } from '../src/bench/targets.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'conn-raw' },
    duration: { type: 'string', default: '5s' },
    connections: { type: 'string', default: '50' },
    splice: { type: 'string', default: 'auto' },
    mode: { type: 'string', default: 'tcp' },
  },
});
const [scenario] = findScenarios([values.scenario!]);
const TICK_US = 1e6 / 100; // USER_HZ

interface ThreadUse {
  us: number;
  /** of us: in the kernel (system calls, softirq work on the thread's behalf) */
  sysUs: number;
  switches: number;
}

/** CPU time (µs) and context switches (voluntary + not) of each thread, by "tid name". */
function threads(pid: number): Map<string, ThreadUse> {
  const out = new Map<string, ThreadUse>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const switches = [...status.matchAll(/ctxt_switches:\s+(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
      out.set(`${tid} ${name}`, { us: (Number(fields[11]) + Number(fields[12])) * TICK_US, sysUs: Number(fields[12]) * TICK_US, switches });
    } catch {
      // the thread ended
    }
  }
  return out;
}

const backend = await startBackendProcess();
// Started as the comparison starts it (NODE_FLAGS, the bench config), so the figures are those of bench/results.
const target = sniffmuxProcess({ cli: path.join(ROOT, 'dist/cli.js'), variant: {
    ...(values.splice === 'js' ? { splice: 'js' as const } : {}),
    ...(values.mode === 'http' ? { mode: 'http' as const, http: { forwardedFor: true } } : {}),
  },
});
const running = await target.start(backend.port);
const pid = running.pid!;
const ctx = { durationMs: parseDuration(values.duration!) as number, warmupMs: 0, connections: Number(values.connections), hold: 0, progress: () => {} };
await scenario!.run(running, { ...ctx, durationMs: 1500 }); // warm-up
const before = threads(pid);
const outcome = await scenario!.run(running, ctx);
const after = threads(pid);
await running.stop();
await backend.daemon.stop();
const rate = outcome.figures.rate ?? 0;
const units = (rate * ctx.durationMs) / 1000;
process.stdout.write(`${scenario!.name} (splice ${values.splice}): ${Math.round(rate)} per second; proxy CPU per unit of work by thread:\n`);
let total = 0;
let sys = 0;
let switches = 0;
const row = (us: number, sysUs: number, switched: number, name: string): string =>
  `  ${(us / units).toFixed(1).padStart(8)} µs (${(sysUs / units).toFixed(1).padStart(6)} of it system) ${(switched / units).toFixed(2).padStart(6)} switches  ${name}\n`;
for (const [name, use] of after) {
  const spent = use.us - (before.get(name)?.us ?? 0);
  const spentSys = use.sysUs - (before.get(name)?.sysUs ?? 0);
  const switched = use.switches - (before.get(name)?.switches ?? 0);
  total += spent;
  sys += spentSys;
  switches += switched;
  if (spent > 0) process.stdout.write(row(spent, spentSys, switched, name));
}
process.stdout.write(row(total, sys, switches, 'all threads'));
