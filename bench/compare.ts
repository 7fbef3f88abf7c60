/**
 * The side-by-side run: the scenarios of `sniffmux bench` against direct,
 * sniffmux, HAProxy, nginx stream, sslh-select and a naive Node proxy,
 * interleaved (round-robin over the targets in every round, medians of the
 * rounds), plus the micro-benchmarks. Writes bench/results/<date>.{json,md,svg}.
 *
 *   npm run bench                          # build, then this with the defaults
 *   node --import tsx bench/compare.ts [--duration 2s] [--repeat 3] [--hold 9000]
 *        [--connections 50] [--scenario NAME...] [--target NAME...] [--out DIR] [--tag NAME]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '../src/config/index.js';
import { childrenOf, freePort, sleep, startBackendProcess } from '../src/bench/process.js';
import { runBenchmarks, type BenchReport } from '../src/bench/runner.js';
import { findScenarios } from '../src/bench/scenarios.js';
import { cpuTable, markdownTable, textTable } from '../src/bench/table.js';
import { direct, sniffmuxProcess, type SniffmuxVariant, type Target } from '../src/bench/targets.js';
import { microTable, runMicro, type MicroResult } from './micro/sniff-and-route.js';
import { ensurePeersInstalled, haproxy, naiveNode, nginx, sslh } from './peers.js';
import { chartSvg } from './svg.js';
import { nativeSpliceUnavailable } from '../src/splice/native.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist/cli.js');
const log = (line: string) => process.stderr.write(line + '\n');

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '2s' },
    repeat: { type: 'string', default: '3' },
    hold: { type: 'string', default: '9000' },
    connections: { type: 'string', default: '50' },
    scenario: { type: 'string', multiple: true },
    target: { type: 'string', multiple: true },
    out: { type: 'string', default: path.join(ROOT, 'bench/results') },
    tag: { type: 'string' },
    'no-micro': { type: 'boolean' },
    /** Rewrite the .md and .svg of an existing results JSON (no measurement). */
    render: { type: 'string' },
  },
});

type FullReport = BenchReport & { micro: MicroResult[]; notes: string[]; command: string; sniffmuxRevision: string };

if (values.render) {
  const r = JSON.parse(readFileSync(values.render, 'utf8')) as FullReport;
  const base = values.render.replace(/\.json$/, '');
  writeFileSync(`${base}.svg`, chartSvg(r));
  writeFileSync(`${base}.md`, markdown(r, base));
  log(`written: ${base}.md, ${base}.svg`);
  process.exit(0);
}

const durationMs = parseDuration(values.duration!);
if (typeof durationMs === 'string') throw new Error(durationMs);
if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` first (npm run bench does)');

ensurePeersInstalled(log);

const notes: string[] = [
  'All processes run on the same 2-core machine: the load generator (one Node process), the bench backend (one Node process) and the proxy share the cores, so ratios to direct understate what a proxy on its own cores would reach, and the direct figures are bounded by the Node load generator and backend.',
  'Each proxy runs as one process with one thread (HAProxy nbthread 1, nginx one worker without master, sslh-select, sniffmux workers: 1, whose native splice(2) loop runs on a second thread of that process: the JavaScript thread peeks at the first bytes of a new connection as it accepts it (the native thread waits for them when none have come yet) and routes it, then the native thread connects and moves the bytes: small chunks copied, bulk spliced), except "sniffmux 2 workers" (workers: 2, workerBalance: kernel), logging off, started fresh for each measurement and warmed up with the same load (unmeasured) before it.',
];

/** sniffmux from dist/ (plain node, as `sniffmux run` would), whatever loader runs this script. */
function sniffmux(name: string, label: string, variant: SniffmuxVariant = {}): Target {
  return sniffmuxProcess({ name, label, variant, cli: CLI });
}

/**
 * http mode: measured only if it is at work — a request through sniffmux with
 * `mode: http, http: { forwardedFor: true }` reaches the backend with an
 * X-Forwarded-For header. (The config may accept the keys before the mode exists.)
 */
async function httpModeAvailable(): Promise<string | null> {
  const variant = { mode: 'http' as const, http: { forwardedFor: true } };
  const backend = await startBackendProcess();
  try {
    const running = await sniffmux('probe', 'probe', variant).start(backend.port);
    try {
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        const s = net.connect(running.port, '127.0.0.1', () => s.write('GET /__bench/forwarded HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n'));
        s.on('data', (d: Buffer) => (text += d.toString('latin1')));
        s.on('error', () => resolve(text));
        s.on('close', () => resolve(text));
      });
      return answer.endsWith('yes') ? null : 'mode: http is accepted by the config but requests reach the server without X-Forwarded-For (http mode is not at work yet)';
    } finally {
      await running.stop();
    }
  } catch (error) {
    return `the config rejects it (${(error as Error).message.split('\n')[0]})`;
  } finally {
    await backend.daemon.stop();
  }
}

/** 2 workers: measured only if `workers: 2` actually starts worker processes. */
async function workersAvailable(): Promise<string | null> {
  const target = sniffmux('probe', 'probe', { workers: 2 });
  const running = await target.start(await freePort());
  try {
    await sleep(500);
    const children = childrenOf(running.pid!);
    return children.length > 0 ? null : 'global.workers: 2 is accepted by the config but starts no worker process yet, so sniffmux with 2 workers is not measured';
  } finally {
    await running.stop();
  }
}

// sniffmux as configured by default (splice: auto, the native splice(2) loop when built), and its JavaScript splice beside it.
const all: Target[] = [direct, sniffmux('sniffmux', nativeSpliceUnavailable === null ? 'sniffmux' : 'sniffmux (JS splice)')];
if (nativeSpliceUnavailable === null) all.push(sniffmux('sniffmux-js', 'sniffmux JS splice', { splice: 'js' }));
else notes.push(`sniffmux's native splice(2) path is not built here (${nativeSpliceUnavailable}): sniffmux is measured with its JavaScript splice.`);
const httpNote = await httpModeAvailable();
if (httpNote) notes.push(`sniffmux http mode: skipped — ${httpNote}.`);
else all.push(sniffmux('sniffmux-http', 'sniffmux http mode', { mode: 'http', http: { forwardedFor: true } }));
const workersNote = await workersAvailable();
if (workersNote) notes.push(`sniffmux 2 workers: skipped — ${workersNote}.`);
// The kernel hands connections to the workers (workerBalance: kernel): with the primary doing it, every new connection crosses over IPC.
else all.push(sniffmux('sniffmux-2w', 'sniffmux 2 workers', { workers: 2, workerBalance: 'kernel' }));
all.push(haproxy(), nginx(), sslh(), naiveNode());
for (const n of notes.slice(2)) log(`note: ${n}`);

const targets = values.target ? all.filter((t) => t.name === 'direct' || values.target!.includes(t.name)) : all;
const scenarios = findScenarios(values.scenario ?? []);
const hold = Number(values.hold);

const report = await runBenchmarks(scenarios, targets, {
  durationMs,
  connections: Number(values.connections),
  hold,
  repeat: Number(values.repeat),
  baseline: 'direct',
  reference: targets.some((t) => t.name === 'haproxy') ? 'haproxy' : null,
  progress: log,
});

let micro: MicroResult[] = [];
if (!values['no-micro']) {
  log('micro-benchmarks (no sockets)…');
  micro = runMicro();
}

/** Which sniffmux was measured: the commit, and whether src/ had uncommitted changes. */
function sniffmuxRevision(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} with uncommitted changes in src/` : commit;
  } catch {
    return 'unknown';
  }
}

const full: FullReport = {
  ...report,
  sniffmuxRevision: sniffmuxRevision(),
  notes: [...notes, ...report.notes],
  micro,
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
};

mkdirSync(values.out!, { recursive: true });
const base = path.join(values.out!, values.tag ?? report.machine.date.slice(0, 10));
writeFileSync(`${base}.json`, JSON.stringify(full, null, 2) + '\n');
writeFileSync(`${base}.svg`, chartSvg(full));
writeFileSync(`${base}.md`, markdown(full, base));
process.stdout.write(textTable(full) + '\n' + cpuTable(full, 'text'));
log(`written: ${base}.json, ${base}.md, ${base}.svg (${Math.round(report.elapsedMs / 1000)} s)`);

/**
 * Issue 6, item 4: what 100,000 idle spliced connections would need, from
 * the memory scenario's figures (RSS before holding + per connection ×
 * 100,000), next to the per-connection bytes. The descriptors are the other
 * ceiling: two per connection in the proxy.
 */
function scaleTable(r: FullReport): string | null {
  const rows = r.results.filter((x) => x.scenario === 'memory' && x.median !== null);
  if (rows.length === 0) return null;
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const lines = [
    '## Scale: memory per idle spliced connection',
    '',
    `Proxy RSS with ${r.options.hold.toLocaleString('en-US')} idle spliced connections held, and what 100,000 would need at the same rate (RSS before + 100,000 × per connection; medians of the rounds). Each connection also takes two descriptors in the proxy: 100,000 need \`ulimit -n\` above 200,000.`,
    '',
    '| proxy | bytes per connection | RSS before | RSS holding | estimate for 100,000 |',
    '|---|---:|---:|---:|---:|',
  ];
  const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
  for (const row of rows) {
    const before = median(row.details.map((d) => Number(d.rssBefore)).filter(Number.isFinite));
    const after = median(row.details.map((d) => Number(d.rssAfter)).filter(Number.isFinite));
    const perConnection = row.median! * 1024;
    const label = r.targets.find((t) => t.name === row.target)?.label ?? row.target;
    lines.push(`| ${label} | ${Math.round(perConnection).toLocaleString('en-US')} | ${mib(before)} | ${mib(after)} | ${mib(before + 100_000 * perConnection)} |`);
  }
  return lines.join('\n') + '\n';
}

function markdown(r: FullReport, base: string): string {
  const m = r.machine;
  const loads = r.results.flatMap((x) => x.details.map((d) => d.loadAverage)).filter((x): x is number => typeof x === 'number');
  const lines = [
    `# sniffmux bench — ${m.date.slice(0, 10)}`,
    '',
    `- machine: ${m.cpu} × ${m.cores} cores, ${m.memoryGiB} GiB, ${m.kernel}, open-file limit ${m.openFileLimit ?? '?'}`,
    `- sniffmux ${r.sniffmuxRevision}, built to dist/ and run as \`node dist/cli.js run -c …\``,
    `- node ${m.node}; peers: ${r.targets.filter((t) => t.version).map((t) => `${t.label}: ${t.version}`).join('; ')}`,
    `- ${r.options.repeat} interleaved rounds (round-robin over the targets, order rotated each round), medians; ${r.options.durationMs} ms per measurement after ${r.options.warmupMs} ms of unmeasured warm-up; ${r.options.connections} concurrent clients; memory: ${r.options.hold} idle connections held`,
    `- reproduce: \`${r.command}\` (total ${Math.round(r.elapsedMs / 60000)} min)`,
    ...(loads.length ? [`- 1-minute load average during the measurements: ${Math.min(...loads)}–${Math.max(...loads)} (anything above the load of this run itself means other work shared the machine)`] : []),
    '',
    '## Ratios to the direct connection',
    '',
    'Each cell: the median, and in parentheses the performance relative to direct (>1 better; for latency direct ÷ value).',
    '',
    markdownTable(r, 'ratio'),
  ];
  if (r.options.reference) {
    lines.push('## Ratios to HAProxy', '', 'The same medians; in parentheses the performance relative to HAProxy (>1: better than HAProxy; for latency and memory HAProxy ÷ value).', '', markdownTable(r, 'ratioToReference'));
  }
  lines.push(
    '## Proxy CPU per unit of work',
    '',
    "Each proxy's own CPU time (user + system, from /proc) over the measured window, divided by the work done; medians of the rounds. Lower is better. This is the figure the sharing of the 2 cores distorts least.",
    '',
    cpuTable(r, 'markdown'),
  );
  const scale = scaleTable(r);
  if (scale) lines.push(scale);
  lines.push(`![chart](${path.basename(base)}.svg)`, '', '## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  const failures = r.results.filter((x) => x.errors);
  if (failures.length) lines.push('## Failures', '', ...failures.map((f) => `- ${f.scenario} · ${f.target}: ${f.errors!.join('; ')}`), '');
  const failed = new Map<string, number[]>();
  for (const x of r.results) {
    const counts = x.details.map((d) => (typeof d.errors === 'number' ? d.errors : 0));
    if (counts.some((c) => c > 0) && x.metric === r.scenarios.find((s) => s.name === x.scenario)!.metrics[0]!.key) failed.set(`${x.scenario} · ${r.targets.find((t) => t.name === x.target)?.label ?? x.target}`, counts);
  }
  if (failed.size) {
    lines.push('## Failed exchanges', '', 'Exchanges that did not complete (connection reset or closed before the full answer), per round; they are not counted in the rates.', '');
    for (const [k, counts] of failed) lines.push(`- ${k}: ${counts.join(', ')}`);
    lines.push('');
  }
  if (r.micro.length) lines.push('## Micro-benchmarks (no sockets)', '', '`node --import tsx bench/micro/sniff-and-route.ts`: a new Sniffer per connection, then the seed rules (fixtures/configs/seed.yaml).', '', microTable(r.micro));
  return lines.join('\n') + '\n';
}
