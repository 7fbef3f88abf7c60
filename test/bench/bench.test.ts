import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.js';
import { nativeSpliceUnavailable } from '../../src/splice/native.js';

/** With the native splice(2) addon built, sniffmux is measured both ways: splice(2) and its JavaScript splice. */
const sniffmuxTargets = nativeSpliceUnavailable === null ? ['sniffmux', 'sniffmux-js'] : ['sniffmux'];

// `sniffmux bench` end to end with a tiny duration: the table prints and the
// JSON report has its fields. No timing is asserted: figures depend on the machine.
t.test('sniffmux bench prints a table and writes a JSON report', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smx-bench-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'report.json');
  const result = await runCli(['bench', '--scenario', 'conn-raw', '--scenario', 'latency', '--scenario', 'memory', '--duration', '300ms', '--connections', '4', '--hold', '50', '--json', json]);
  t.equal(result.code, 0, result.stderr);

  t.match(result.stdout, /scenario\s+figure\s+direct\s+sniffmux/, 'table header names both columns');
  t.match(result.stdout, /new connections\/s: raw bytes\s+conn\/s\s+[\d,]+ \(1\.00\)\s+[\d,]+ \(\d+\.\d\d\)/, 'a rate row with ratios');
  t.match(result.stdout, /p99, ms/, 'latency percentiles');
  t.match(result.stdout, /memory per idle spliced connection.*KiB\s+—\s+-?[\d.]+/, 'memory has no direct figure, a sniffmux one');
  t.match(result.stderr, /\[1\/\d+\] conn-raw · direct/, 'progress on stderr');

  const report = JSON.parse(readFileSync(json, 'utf8'));
  t.equal(report.tool, 'sniffmux bench');
  for (const key of ['date', 'node', 'cpu', 'cores', 'kernel']) t.ok(key in report.machine, `machine.${key}`);
  t.same(
    report.targets.map((x: { name: string }) => x.name),
    ['direct', ...sniffmuxTargets],
  );
  t.same(
    report.scenarios.map((s: { name: string }) => s.name),
    ['conn-raw', 'latency', 'memory'],
  );
  t.match(report.options, { durationMs: 300, connections: 4, hold: 50, repeat: 1, baseline: 'direct' });
  const row = (scenario: string, target: string, metric: string) =>
    report.results.find((r: { scenario: string; target: string; metric: string }) => r.scenario === scenario && r.target === target && r.metric === metric);
  for (const [scenario, metric] of [
    ['conn-raw', 'rate'],
    ['latency', 'rate'],
    ['latency', 'p50'],
    ['latency', 'p99'],
  ]) {
    for (const target of ['direct', ...sniffmuxTargets]) {
      const r = row(scenario!, target, metric!);
      t.ok(r, `${scenario} ${metric} ${target}`);
      t.equal(r.values.length, 1);
      t.type(r.median, 'number');
      t.type(r.ratio, 'number');
    }
  }
  t.equal(row('conn-raw', 'direct', 'rate').ratio, 1);
  t.equal(row('memory', 'direct', 'kib').skipped, 'no proxy process to measure');
  for (const target of sniffmuxTargets) {
    const memory = row('memory', target, 'kib');
    t.type(memory.median, 'number');
    t.equal(memory.details[0].held, 50, `${target}: every held connection was spliced end to end`);
  }
});

t.test('sniffmux bench rejects an unknown scenario in one line', async (t) => {
  const result = await runCli(['bench', '--scenario', 'nope']);
  t.equal(result.code, 1);
  t.match(result.stderr, /^sniffmux: unknown scenario 'nope'/);
});
