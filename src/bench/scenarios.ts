/**
 * The scenarios: what is measured, and how each figure reads. A scenario run
 * gets one freshly started target and returns its figures by metric key.
 */
import { bulk, churn, CLIENT_ADDRESSES, hold, httpClose, pingPong, policyRequest, rawReply, rawReplyFromMany, tlsHello, websocket, type Exchange } from './load.js';
import { childrenOf, cpuMsOf, rssOf, sleep } from './process.js';

/** A proxy process and its direct children (cluster workers, when there are some), summed. */
function treeSum(pid: number, read: (pid: number) => number | null): number | null {
  let total = 0;
  for (const p of [pid, ...childrenOf(pid)]) {
    const v = read(p);
    if (v === null) return null;
    total += v;
  }
  return total;
}
import type { RunningTarget } from './targets.js';

export interface Metric {
  readonly key: string;
  /** Row heading, e.g. "throughput", "p99". */
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /** Display precision (decimals). */
  readonly decimals: number;
}

export interface ScenarioContext {
  readonly durationMs: number;
  /**
   * The same load, unmeasured, before each measurement: a freshly started
   * Node proxy runs cold (interpreted, then optimised) for its first few
   * thousand connections, a production proxy does not.
   */
  readonly warmupMs: number;
  /** Concurrent clients of the rate and latency scenarios. */
  readonly connections: number;
  /** Connections held by the memory scenario. */
  readonly hold: number;
  /** A line of progress (stderr). */
  readonly progress: (text: string) => void;
}

export interface ScenarioOutcome {
  readonly figures: Record<string, number>;
  /** Anything worth keeping in the JSON (error counts, per-kind counts…). */
  readonly details: Record<string, unknown>;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  readonly metrics: readonly Metric[];
  /** Roughly how long one run takes, for the progress estimate. */
  estimateMs(ctx: ScenarioContext): number;
  run(target: RunningTarget, ctx: ScenarioContext): Promise<ScenarioOutcome>;
}

/**
 * Runs the measured part and reports the proxy's CPU time over it (user +
 * system, from /proc): CPU per unit of work is the efficiency figure that the
 * sharing of cores distorts least.
 */
async function withCpu<T>(target: RunningTarget, run: () => Promise<T>): Promise<{ result: T; proxyCpuMs: number | null }> {
  const before = target.pid === null ? null : treeSum(target.pid, cpuMsOf);
  const result = await run();
  const after = target.pid === null ? null : treeSum(target.pid, cpuMsOf);
  return { result, proxyCpuMs: before === null || after === null ? null : after - before };
}

function per(cpuMs: number | null, units: number, scale: number): number | null {
  return cpuMs === null || units <= 0 ? null : (cpuMs * scale) / units;
}

/**
 * How long the held connections sit idle before the proxy's RSS is read: long
 * enough for a process that tidies up when new connections stop (sniffmux
 * collects its garbage after a second of quiet, src/runtime/idle-gc.ts) to
 * have done so, as it would have long before anyone looks at a real idle one.
 */
const IDLE_SETTLE_MS = 3000;

const GBITS: Metric = { key: 'gbits', label: 'throughput', unit: 'Gbit/s', better: 'higher', decimals: 2 };
const PER_SECOND = (unit: string): Metric => ({ key: 'rate', label: 'rate', unit, better: 'higher', decimals: 0 });

function bulkScenario(streams: number, direction: 'c2s' | 's2c'): Scenario {
  const arrow = direction === 'c2s' ? 'client → server' : 'server → client';
  return {
    name: `bulk-${direction}-${streams}`,
    title: `bulk throughput, ${streams} stream${streams > 1 ? 's' : ''}, ${arrow}`,
    metrics: [GBITS],
    estimateMs: (ctx) => Math.min(500, ctx.warmupMs) + ctx.durationMs + 300,
    async run(target, ctx) {
      if (ctx.warmupMs > 0) await bulk(target.port, streams, direction, Math.min(500, ctx.warmupMs));
      const { result: r, proxyCpuMs } = await withCpu(target, () => bulk(target.port, streams, direction, ctx.durationMs));
      return {
        figures: { gbits: r.bitsPerSecond / 1e9 },
        details: { bytes: r.bytes, errors: r.errors, proxyCpuMs, proxyCpuMsPerGB: per(proxyCpuMs, r.bytes, 1e9) },
      };
    },
  };
}

function churnScenario(name: string, title: string, kinds: readonly { name: string; exchange: Exchange }[], unit: string): Scenario {
  return {
    name,
    title,
    metrics: [PER_SECOND(unit)],
    estimateMs: (ctx) => ctx.warmupMs + ctx.durationMs + 300,
    async run(target, ctx) {
      if (ctx.warmupMs > 0) await churn(target.port, ctx.connections, ctx.warmupMs, kinds);
      const { result: r, proxyCpuMs } = await withCpu(target, () => churn(target.port, ctx.connections, ctx.durationMs, kinds));
      return {
        figures: { rate: r.perSecond },
        details: { completed: r.completed, errors: r.errors, byKind: r.byKind, proxyCpuMs, proxyCpuUsPerOp: per(proxyCpuMs, r.completed, 1000) },
      };
    },
  };
}

export const SCENARIOS: readonly Scenario[] = [
  bulkScenario(1, 'c2s'),
  bulkScenario(4, 'c2s'),
  bulkScenario(1, 's2c'),
  bulkScenario(4, 's2c'),
  churnScenario('conn-http', 'new connections/s: HTTP request, Connection: close', [{ name: 'http', exchange: httpClose }], 'conn/s'),
  churnScenario('conn-tls', 'new connections/s: TLS ClientHello (curl), passed through', [{ name: 'tls', exchange: tlsHello }], 'conn/s'),
  churnScenario('conn-raw', 'new connections/s: raw bytes', [{ name: 'raw', exchange: rawReply }], 'conn/s'),
  churnScenario('conn-many', `new connections/s: raw bytes, clients from ${CLIENT_ADDRESSES.length} addresses`, [{ name: 'raw', exchange: rawReplyFromMany }], 'conn/s'),
  churnScenario('conn-policy', 'new connections/s: Flash policy requests', [{ name: 'policy', exchange: policyRequest }], 'conn/s'),
  {
    name: 'latency',
    title: 'keep-alive HTTP ping-pong over spliced connections',
    metrics: [
      { key: 'rate', label: 'requests/s', unit: 'req/s', better: 'higher', decimals: 0 },
      { key: 'p50', label: 'p50', unit: 'ms', better: 'lower', decimals: 3 },
      { key: 'p99', label: 'p99', unit: 'ms', better: 'lower', decimals: 3 },
    ],
    estimateMs: (ctx) => ctx.warmupMs + ctx.durationMs + 300,
    async run(target, ctx) {
      if (ctx.warmupMs > 0) await pingPong(target.port, ctx.connections, ctx.warmupMs);
      const { result: r, proxyCpuMs } = await withCpu(target, () => pingPong(target.port, ctx.connections, ctx.durationMs));
      return {
        figures: { rate: r.perSecond, p50: r.p50Ms, p99: r.p99Ms },
        details: { samples: r.samples, errors: r.errors, proxyCpuMs, proxyCpuUsPerOp: per(proxyCpuMs, r.samples, 1000) },
      };
    },
  },
  churnScenario(
    'mixed',
    'mixed load: HTTP, WebSocket, TLS, policy, raw at once',
    [
      { name: 'http', exchange: httpClose },
      { name: 'websocket', exchange: websocket },
      { name: 'tls', exchange: tlsHello },
      { name: 'policy', exchange: policyRequest },
      { name: 'raw', exchange: rawReply },
    ],
    'sessions/s',
  ),
  {
    name: 'memory',
    title: 'memory per idle spliced connection (proxy RSS delta / held)',
    metrics: [{ key: 'kib', label: 'per connection', unit: 'KiB', better: 'lower', decimals: 1 }],
    estimateMs: (ctx) => 4500 + ctx.hold / 2,
    async run(target, ctx) {
      if (target.pid === null) throw new Error('memory needs the proxy in its own process');
      // Warm up (JIT, pools, first allocations), then measure from a settled baseline.
      const warm = await hold(target.port, Math.min(200, ctx.hold));
      await warm.release();
      await sleep(300);
      const before = treeSum(target.pid, rssOf);
      const held = await hold(target.port, ctx.hold, 256, (n) => {
        if (n % 1000 === 0) ctx.progress(`holding ${n}/${ctx.hold}`);
      });
      // Idle means idle: every peer gets the same few seconds with nothing new arriving before its RSS is read.
      await sleep(IDLE_SETTLE_MS);
      const after = treeSum(target.pid, rssOf);
      await held.release();
      if (before === null || after === null || held.held === 0) throw new Error('could not read the proxy RSS');
      const perConnection = (after - before) / held.held;
      return {
        figures: { kib: perConnection / 1024 },
        details: { held: held.held, failed: held.failed, rssBefore: before, rssAfter: after },
      };
    },
  },
];

export function findScenarios(names: readonly string[]): Scenario[] {
  if (names.length === 0) return [...SCENARIOS];
  const out: Scenario[] = [];
  for (const name of names) {
    const matches = SCENARIOS.filter((s) => s.name === name || s.name.startsWith(`${name}-`));
    if (matches.length === 0) throw new Error(`unknown scenario '${name}' (known: ${SCENARIOS.map((s) => s.name).join(', ')}; a prefix like bulk or conn selects a group)`);
    for (const m of matches) if (!out.includes(m)) out.push(m);
  }
  return out;
}
