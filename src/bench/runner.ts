/**
 * Runs scenarios against targets: for each scenario, `repeat` rounds, each
 * round visiting every target once (round-robin, the order rotated from
 * round to round), a fresh target process per measurement; medians and
 * ratios at the end. Progress goes to stderr.
 */
import os from 'node:os';
import { machineInfo, startBackendProcess, type MachineInfo } from './process.js';
import type { Metric, Scenario, ScenarioContext } from './scenarios.js';
import type { Target } from './targets.js';

export interface RunOptions {
  readonly durationMs: number;
  /** Unmeasured load before each measurement (bulk: at most 500 ms of it); default min(1.5 s, duration). */
  readonly warmupMs?: number;
  readonly connections: number;
  readonly hold: number;
  readonly repeat: number;
  /** The target ratios are taken against (direct). */
  readonly baseline: string;
  /** A second reference (haproxy in the comparison), or null. */
  readonly reference: string | null;
  readonly progress?: (line: string) => void;
}

export interface ResultRow {
  readonly scenario: string;
  readonly target: string;
  readonly metric: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly values: number[];
  /** Median of the values, null when none (skipped or failed). */
  readonly median: number | null;
  /** Performance relative to the baseline (direct): >1 is better, <1 worse. Higher-is-better figures: target/direct; lower-is-better: direct/target. */
  readonly ratio: number | null;
  /** The same, relative to the reference target (HAProxy), when there is one. */
  readonly ratioToReference: number | null;
  readonly skipped?: string;
  readonly errors?: string[];
  readonly details: Record<string, unknown>[];
}

export interface BenchReport {
  readonly tool: 'sniffmux bench';
  readonly format: 1;
  readonly machine: MachineInfo;
  readonly options: {
    readonly durationMs: number;
    readonly warmupMs: number;
    readonly connections: number;
    readonly hold: number;
    readonly repeat: number;
    readonly baseline: string;
    readonly reference: string | null;
  };
  readonly targets: { readonly name: string; readonly label: string; readonly version?: string }[];
  readonly scenarios: { readonly name: string; readonly title: string; readonly metrics: readonly Metric[] }[];
  readonly results: ResultRow[];
  readonly notes: string[];
  readonly elapsedMs: number;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function relative(value: number | null, base: number | null, better: 'higher' | 'lower'): number | null {
  if (value === null || base === null || value <= 0 || base <= 0) return null;
  return better === 'higher' ? value / base : base / value;
}

function formatMs(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export async function runBenchmarks(scenarios: readonly Scenario[], targets: readonly Target[], opts: RunOptions): Promise<BenchReport> {
  const started = Date.now();
  const progress = opts.progress ?? ((line: string) => process.stderr.write(line + '\n'));
  const notes: string[] = [];
  const warmupMs = opts.warmupMs ?? Math.min(1500, opts.durationMs);
  const ctxBase = { durationMs: opts.durationMs, warmupMs, connections: opts.connections, hold: opts.hold };
  type Cell = { values: Map<string, number[]>; details: Record<string, unknown>[]; errors: string[] };
  const cells = new Map<string, Cell>();
  const key = (s: string, t: string) => `${s}\u0000${t}`;

  const plan: { scenario: Scenario; target: Target; round: number }[] = [];
  for (const scenario of scenarios) {
    for (let round = 0; round < opts.repeat; round++) {
      const runnable = targets.filter((t) => !t.skips?.[scenario.name]);
      for (let i = 0; i < runnable.length; i++) {
        plan.push({ scenario, target: runnable[(i + round) % runnable.length]!, round });
      }
    }
  }
  const ctxFor = (line: string): ScenarioContext => ({ ...ctxBase, progress: (text) => progress(`${line} ${text}`) });
  const estimate = (from: number) => plan.slice(from).reduce((a, p) => a + p.scenario.estimateMs(ctxFor('')) + 400, 0);
  progress(`sniffmux bench: ${plan.length} measurements, about ${formatMs(estimate(0))}`);

  const backend = await startBackendProcess();
  try {
    for (let i = 0; i < plan.length; i++) {
      const { scenario, target, round } = plan[i]!;
      const cell: Cell = cells.get(key(scenario.name, target.name)) ?? { values: new Map(), details: [], errors: [] };
      cells.set(key(scenario.name, target.name), cell);
      const line = `[${String(i + 1).padStart(String(plan.length).length)}/${plan.length}] ${scenario.name} · ${target.label} · round ${round + 1}/${opts.repeat}`;
      let running;
      try {
        running = await target.start(backend.port);
      } catch (error) {
        cell.errors.push(`start: ${(error as Error).message.split('\n')[0]}`);
        progress(`${line}: could not start: ${(error as Error).message}`);
        continue;
      }
      try {
        const outcome = await scenario.run(running, ctxFor(line));
        for (const m of scenario.metrics) {
          const v = outcome.figures[m.key];
          if (v === undefined || !Number.isFinite(v)) continue;
          const list = cell.values.get(m.key) ?? [];
          list.push(v);
          cell.values.set(m.key, list);
        }
        // The 1-minute load average: other work on the machine shows up here.
        cell.details.push({ ...outcome.details, loadAverage: Math.round(os.loadavg()[0]! * 100) / 100 });
        const shown = scenario.metrics.map((m) => `${(outcome.figures[m.key] ?? NaN).toFixed(m.decimals)} ${m.unit}`).join(', ');
        progress(`${line}: ${shown}  (left ≈ ${formatMs(estimate(i + 1))})`);
      } catch (error) {
        cell.errors.push((error as Error).message);
        progress(`${line}: failed: ${(error as Error).message}`);
      } finally {
        await running.stop();
      }
      if (!backend.daemon.alive()) throw new Error(`the bench backend died: ${backend.daemon.output()}`);
    }
  } finally {
    await backend.daemon.stop();
  }

  const results: ResultRow[] = [];
  for (const scenario of scenarios) {
    for (const m of scenario.metrics) {
      const base = median(cells.get(key(scenario.name, opts.baseline))?.values.get(m.key) ?? []);
      const ref = opts.reference ? median(cells.get(key(scenario.name, opts.reference))?.values.get(m.key) ?? []) : null;
      for (const target of targets) {
        const cell = cells.get(key(scenario.name, target.name));
        const values = cell?.values.get(m.key) ?? [];
        const med = median(values);
        const skipped = target.skips?.[scenario.name];
        results.push({
          scenario: scenario.name,
          target: target.name,
          metric: m.key,
          unit: m.unit,
          better: m.better,
          values,
          median: med,
          ratio: target.name === opts.baseline ? (med === null ? null : 1) : relative(med, base, m.better),
          ratioToReference: opts.reference ? relative(med, ref, m.better) : null,
          ...(skipped ? { skipped } : {}),
          ...(cell && cell.errors.length > 0 ? { errors: cell.errors } : {}),
          details: cell?.details ?? [],
        });
      }
    }
  }
  for (const t of targets) for (const [s, why] of Object.entries(t.skips ?? {})) if (scenarios.some((x) => x.name === s)) notes.push(`${t.label}, ${s}: skipped (${why})`);

  return {
    tool: 'sniffmux bench',
    format: 1,
    machine: machineInfo(),
    options: { ...ctxBase, repeat: opts.repeat, baseline: opts.baseline, reference: opts.reference },
    targets: targets.map((t) => ({ name: t.name, label: t.label, ...(t.version ? { version: t.version } : {}) })),
    scenarios: scenarios.map((s) => ({ name: s.name, title: s.title, metrics: s.metrics })),
    results,
    notes,
    elapsedMs: Date.now() - started,
  };
}
