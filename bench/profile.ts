/**
 * Where sniffmux spends its CPU under one scenario's load: runs sniffmux
 * (dist/cli.js) with `node --cpu-prof`, drives the scenario against it,
 * stops it, and prints the functions with the most self time, plus a
 * summary by category (JavaScript of sniffmux, Node internals, GC, native).
 *
 *   node --import tsx bench/profile.ts [--scenario conn-http] [--duration 5s] [--mode tcp|http] [--keep DIR]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '../src/config/index.js';
import { freePort, spawnDaemon, startBackendProcess, waitForPort } from '../src/bench/process.js';
import { findScenarios } from '../src/bench/scenarios.js';
import { sniffmuxBenchConfig } from '../src/bench/targets.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'conn-http' },
    duration: { type: 'string', default: '5s' },
    connections: { type: 'string', default: '50' },
    hold: { type: 'string', default: '2000' },
    top: { type: 'string', default: '25' },
    keep: { type: 'string' },
    mode: { type: 'string', default: 'tcp' },
  },
});
const durationMs = parseDuration(values.duration!) as number;
const [scenario] = findScenarios([values.scenario!]);

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}

const dir = values.keep ?? mkdtempSync(path.join(os.tmpdir(), 'sniffmux-prof-'));
const backend = await startBackendProcess();
const port = await freePort();
const configFile = path.join(dir, 'sniffmux.json');
writeFileSync(configFile, JSON.stringify(sniffmuxBenchConfig(port, backend.port, values.mode === 'http' ? { mode: 'http', http: { forwardedFor: true } } : {})));
const daemon = spawnDaemon(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, path.join(ROOT, 'dist/cli.js'), 'run', '-c', configFile]);
await waitForPort(port, 10_000, daemon.alive);
const outcome = await scenario!.run(
  { port, pid: daemon.pid, stop: async () => {} },
  { durationMs, warmupMs: 1000, connections: Number(values.connections), hold: Number(values.hold), progress: (l) => process.stderr.write(l + '\n') },
);
await daemon.stop();
await backend.daemon.stop();
process.stdout.write(`${scenario!.name}: ${JSON.stringify(outcome.figures)}\n`);

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error(`no profile written in ${dir}`);
const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { nodes: Node[]; startTime: number; endTime: number; samples: number[] };
const totalHits = profile.nodes.reduce((a, n) => a + n.hitCount, 0);
const byFunction = new Map<string, number>();
const byCategory = new Map<string, number>();
for (const n of profile.nodes) {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url.replace(/^file:\/\//, '').replace(ROOT + '/', '');
  const name = `${functionName || '(anonymous)'} ${where ? `${where}:${lineNumber + 1}` : ''}`.trim();
  byFunction.set(name, (byFunction.get(name) ?? 0) + n.hitCount);
  const category =
    functionName === '(idle)'
      ? 'idle'
      : functionName === '(garbage collector)'
        ? 'garbage collector'
        : functionName === '(program)'
          ? 'native (program: libuv, syscalls, V8 runtime)'
          : where.startsWith('dist/')
            ? 'sniffmux JavaScript'
            : where.startsWith('node:')
              ? 'Node.js internals (net, streams, timers)'
              : where === ''
                ? 'native builtins'
                : 'other JavaScript (pino…)';
  byCategory.set(category, (byCategory.get(category) ?? 0) + n.hitCount);
}
const pct = (hits: number) => `${((hits / totalHits) * 100).toFixed(1).padStart(5)}%`;
process.stdout.write(`\nby category (share of all samples, ${totalHits} samples):\n`);
for (const [k, v] of [...byCategory].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${pct(v)}  ${k}\n`);
process.stdout.write(`\ntop ${values.top} functions by self time:\n`);
for (const [k, v] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) process.stdout.write(`  ${pct(v)}  ${k}\n`);
if (!values.keep) rmSync(dir, { recursive: true, force: true });
else process.stdout.write(`\nprofile kept in ${path.join(dir, file)}\n`);
