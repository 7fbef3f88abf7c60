import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findScenarios } from '../bench/scenarios.js';
import { runBenchmarks } from '../bench/runner.js';
import { cpuTable, textTable } from '../bench/table.js';
import { direct, sniffmuxInProcess, sniffmuxProcess, type Target } from '../bench/targets.js';
import { parseDuration } from '../config/duration.js';
import { nativeSpliceUnavailable } from '../splice/native.js';
import { SniffmuxError } from '../errors.js';
import { parseCommandLine } from './args.js';

export const BENCH_USAGE = `usage: sniffmux bench [--scenario NAME...] [--duration 5s] [--connections 50] [--hold 2000]
                      [--repeat 1] [--in-process] [--json FILE]
scenarios: bulk-c2s-1 bulk-c2s-4 bulk-s2c-1 bulk-s2c-4 conn-http conn-tls conn-raw conn-many conn-policy
           latency mixed memory (a prefix such as bulk or conn selects a group)`;

function integerOption(text: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new SniffmuxError('SMX_ERR_USAGE', `--${name} must be a whole number ${min}-${max}`);
  return n;
}

/**
 * `sniffmux bench`: sniffmux (in its own process, as in production) against
 * a direct connection to the same built-in backend, on loopback. Progress on
 * stderr, the table on stdout, the full report as JSON with --json.
 */
export async function runBench(argv: string[]): Promise<number> {
  const values = parseCommandLine(argv, {
    scenario: { type: 'string', multiple: true },
    duration: { type: 'string' },
    connections: { type: 'string' },
    hold: { type: 'string' },
    repeat: { type: 'string' },
    json: { type: 'string' },
    'in-process': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(BENCH_USAGE + '\n');
    return 0;
  }
  const durationMs = parseDuration(values.duration ?? '5s');
  if (typeof durationMs === 'string') throw new SniffmuxError('SMX_ERR_USAGE', `--duration: ${durationMs}`);
  if (durationMs < 100) throw new SniffmuxError('SMX_ERR_USAGE', '--duration must be at least 100ms');
  const connections = integerOption(values.connections, 'connections', 50, 1, 5000);
  // Each held connection costs the proxy two descriptors and this process and the backend one each.
  const hold = integerOption(values.hold, 'hold', 2000, 1, 9500);
  const repeat = integerOption(values.repeat, 'repeat', 1, 1, 100);
  let scenarios;
  try {
    scenarios = findScenarios(values.scenario ?? []);
  } catch (error) {
    throw new SniffmuxError('SMX_ERR_USAGE', (error as Error).message);
  }
  // Both splice paths, side by side: what people benchmarking splicing want to see.
  const targets: Target[] = [direct];
  if (nativeSpliceUnavailable === null) {
    targets.push(
      sniffmuxProcess({ name: 'sniffmux', label: 'sniffmux (splice(2))', variant: { splice: 'native' } }),
      sniffmuxProcess({ name: 'sniffmux-js', label: 'sniffmux (JS splice)', variant: { splice: 'js' } }),
    );
  } else {
    process.stderr.write(`note: the native splice(2) path is not available (${nativeSpliceUnavailable}); measuring the JavaScript splice only\n`);
    targets.push(sniffmuxProcess({ label: 'sniffmux (JS splice)', variant: { splice: 'js' } }));
  }
  if (values['in-process']) targets.push(sniffmuxInProcess);

  const report = await runBenchmarks(scenarios, targets, { durationMs, connections, hold, repeat, baseline: 'direct', reference: null });
  const m = report.machine;
  process.stdout.write(
    `\nsniffmux bench — ${m.date.slice(0, 10)}, node ${m.node}, ${m.cpu} × ${m.cores}, ${m.kernel}\n` +
      `${durationMs} ms per measurement after ${report.options.warmupMs} ms of unmeasured warm-up, ${connections} connections, ${repeat} round(s), memory: ${hold} held; ` +
      `load generator, backend and sniffmux share the same ${m.cores} cores\n\n`,
  );
  process.stdout.write(textTable(report));
  const cpu = cpuTable(report, 'text');
  if (cpu) process.stdout.write(`\nsniffmux's own CPU time (user + system) per unit of work, over the measured window:\n${cpu}`);
  for (const note of report.notes) process.stdout.write(`note: ${note}\n`);
  const failures = report.results.filter((r) => r.errors);
  for (const f of failures) process.stdout.write(`failed: ${f.scenario} · ${f.target}: ${f.errors![0]}\n`);
  if (values.json) {
    mkdirSync(path.dirname(path.resolve(values.json)), { recursive: true });
    writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
    process.stderr.write(`report written to ${values.json}\n`);
  }
  return 0;
}
