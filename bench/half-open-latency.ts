/**
 * Where a real client's time goes during the half-open flood of
 * test/hostile/floods.test.ts (same frontend, same flood): each real request
 * (an HTTP one through http mode, a 64 KB raw TCP echo) is timed from the
 * client's connect call to its connect event, to when Node emitted the
 * connection in sniffmux, to when sniffmux began on it, to its last byte;
 * beside it, event-loop delay in sniffmux and in this process, the
 * listener's accept-queue depth (`ss -ltn`, sampled every 20 ms), SYN
 * retransmits and listen overflows (`nstat`), and sniffmux's CPU per flood
 * connection (/proc/PID/stat).
 *
 *   npm run build && node --import tsx bench/half-open-latency.ts [--flood inproc|child] [--backends inproc|child]
 *                      [--connections 1000] [--parallel 300] [--kind all|http|line|tls|ssh|silent] [--runs 1]
 *
 * `--flood child` and `--backends child` move the flood and the two backends
 * out of this process, so that its own event loop cannot be what the real
 * clients wait for.
 */
import http from 'node:http';
import net from 'node:net';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { startBinary, sleep, type Binary } from '../test/hostile/lib.js';
import { cpuMsOf } from '../src/bench/process.js';

const { values } = parseArgs({
  options: {
    flood: { type: 'string', default: 'inproc' },
    backends: { type: 'string', default: 'inproc' },
    connections: { type: 'string', default: '1000' },
    parallel: { type: 'string', default: '300' },
    kind: { type: 'string', default: 'all' },
    runs: { type: 'string', default: '1' },
  },
});
const N = Number(values.connections);
const PARALLEL = Number(values.parallel);
const DIR = mkdtempSync(path.join(os.tmpdir(), 'smx-half-open-'));
const HELLO = path.resolve(import.meta.dirname, '../fixtures/clienthellos/clienthello-chromium-156.bin');

/** Preloaded into sniffmux: its event-loop delay per 100 ms, and when Node emitted each real client's connection. */
const PRELOAD = path.join(DIR, 'preload.mjs');
writeFileSync(
  PRELOAD,
  `import { monitorEventLoopDelay } from 'node:perf_hooks';
import { appendFileSync } from 'node:fs';
import net from 'node:net';
const out = process.env.HALF_OPEN_OUT;
const h = monitorEventLoopDelay({ resolution: 5 });
h.enable();
const emit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, socket, ...rest) {
  if (event === 'connection' && (socket.remoteAddress === '127.0.0.2' || socket.remoteAddress === '127.0.0.3')) {
    appendFileSync(out, JSON.stringify({ accepted: socket.remoteAddress + ':' + socket.remotePort, t: Date.now() }) + '\\n');
  }
  return emit.call(this, event, socket, ...rest);
};
setInterval(() => { appendFileSync(out, JSON.stringify({ t: Date.now(), eld: h.max / 1e6 }) + '\\n'); h.reset(); }, 100).unref();
`,
);

/** The flood: N connections from 20 addresses, PARALLEL at a time; each sends its bytes, half-closes and never reads. */
const FLOOD = `
const net = require('node:net');
const hello = require('node:fs').readFileSync(${JSON.stringify(HELLO)});
const all = { http: 'GET /api/x HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n', line: 'GET /ap', tls: hello.subarray(0, 100), ssh: 'SSH-2.0-x\\r\\n' };
exports.start = (port, n, parallel, kind) => {
  const kinds = kind === 'all' ? Object.values(all) : kind === 'silent' ? [] : [all[kind]];
  const sockets = [];
  let next = 0;
  const one = (i) => new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.1.' + (1 + (i % 20)), allowHalfOpen: true }, () => {
      s.pause();
      if (kinds.length > 0) s.end(kinds[i % kinds.length]);
      resolve();
    });
    s.on('error', () => resolve());
    sockets.push(s);
  });
  const worker = async () => { while (next < n) await one(next++); };
  return { opened: Promise.all(Array.from({ length: parallel }, worker)), destroy: () => sockets.forEach((s) => s.destroy()) };
};
if (process.argv[2] === 'child') {
  const flood = exports.start(...process.argv.slice(3, 6).map(Number), process.argv[6]);
  flood.opened.then(() => process.stdout.write('flooded\\n'));
  process.stdin.on('data', () => { flood.destroy(); process.exit(0); });
}`;
const FLOOD_FILE = path.join(DIR, 'flood.cjs');
writeFileSync(FLOOD_FILE, FLOOD);
type Flood = { opened: Promise<unknown>; destroy(): void };
const startFlood = createRequire(import.meta.url)(FLOOD_FILE).start as (port: number, n: number, parallel: number, kind: string) => Flood;

const BACKENDS = `
const http = require('node:http'), net = require('node:net');
const api = http.createServer({ keepAlive: true }, (q, s) => { q.resume(); q.on('end', () => s.end('pong')); });
const echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); });
api.listen(0, '127.0.0.1', () => echo.listen(0, '127.0.0.1', () => process.stdout.write(api.address().port + ' ' + echo.address().port + '\\n')));`;

function nstat(): Record<string, number> {
  const out = execFileSync('nstat', ['-az', 'TcpExtListenOverflows', 'TcpExtListenDrops', 'TcpExtTCPSynRetrans'], { encoding: 'utf8' });
  return Object.fromEntries([...out.matchAll(/^(\S+)\s+(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]));
}

const cpuMs = (pid: number): number => cpuMsOf(pid) ?? NaN;

async function backends(): Promise<{ api: number; echo: number; stop(): void }> {
  if (values.backends === 'child') {
    const child = spawn(process.execPath, ['-e', BACKENDS], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
    const [api, echo] = line.trim().split(' ').map(Number) as [number, number];
    return { api, echo, stop: () => child.kill() };
  }
  const api = http.createServer({ keepAlive: true }, (req, res) => (req.resume(), req.on('end', () => res.end('pong'))));
  const echo = net.createServer({ allowHalfOpen: true }, (s) => (s.on('error', () => {}), s.pipe(s)));
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  return {
    api: (api.address() as net.AddressInfo).port,
    echo: (echo.address() as net.AddressInfo).port,
    stop: () => (api.closeAllConnections(), api.close(), echo.close()),
  };
}

interface Sample {
  readonly kind: 'http' | 'tcp';
  readonly start: number;
  connect: number;
  total: number;
  client: string;
}

/** One request on a fresh connection from `localAddress`, timed. */
function timed(kind: Sample['kind'], port: number, localAddress: string, payload: Buffer, complete: (got: number, text: string) => boolean, into: Sample[]): Promise<void> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sample: Sample = { kind, start: Date.now(), connect: -1, total: -1, client: '' };
    const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
      sample.connect = performance.now() - t0;
      sample.client = `${socket.localAddress}:${socket.localPort}`;
      socket.write(payload);
    });
    let got = 0;
    let text = '';
    const finish = (): void => {
      sample.total = performance.now() - t0;
      into.push(sample);
      socket.destroy();
      resolve();
    };
    socket.on('data', (d: Buffer) => {
      got += d.length;
      if (kind === 'http') text += d.toString('latin1');
      if (complete(got, text)) finish();
    });
    socket.on('end', finish);
    socket.on('error', finish);
  });
}

async function statusActive(port: number): Promise<number> {
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /status.json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('end', () => resolve(got));
  });
  return JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)).connections.active as number;
}

async function run(): Promise<Record<string, unknown>> {
  const peers = await backends();
  const out = path.join(DIR, `run-${Date.now()}.jsonl`);
  writeFileSync(out, '');
  const mux: Binary = await startBinary(
    {
      log: { level: 'info' },
      admin: { listen: '127.0.0.1:0' },
      frontends: [
        {
          name: 'fe',
          listen: ['127.0.0.1:0'],
          inspect: { delay: 1000 },
          timeouts: { client: '5s', handshake: 1000, httpRequest: 1000 },
          rules: [
            { if: { protocol: 'http' }, use: 'api' },
            { if: { protocol: 'ssh' }, use: 'echo' },
          ],
        },
      ],
      backends: [
        { name: 'api', mode: 'http', servers: [{ name: 'a1', address: `127.0.0.1:${peers.api}` }] },
        { name: 'echo', servers: [{ name: 'e1', address: `127.0.0.1:${peers.echo}` }] },
      ],
    },
    { env: { NODE_OPTIONS: `--import=${PRELOAD}`, HALF_OPEN_OUT: out } },
  );
  const port = mux.port('fe');
  const adminPort = mux.logs.find((l) => l.msg === 'admin listening')!.port as number;

  const ownDelay = monitorEventLoopDelay({ resolution: 5 });
  ownDelay.enable();
  let sampling = true;
  let queueMax = 0;
  const queueSampler = (async () => {
    while (sampling) {
      const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' });
      queueMax = Math.max(queueMax, Number(line.trim().split(/\s+/)[1] ?? 0));
      await sleep(20);
    }
  })();
  const samples: Sample[] = [];
  let running = true;
  const stream = Buffer.concat([Buffer.from('SSH-2.0-probe\r\n'), Buffer.alloc(65536, 7)]);
  const clients = [
    (async () => {
      while (running) {
        await timed('http', port, '127.0.0.2', Buffer.from('GET /api/ping HTTP/1.1\r\nHost: x\r\n\r\n'), (_, text) => text.endsWith('pong'), samples);
        await sleep(50);
      }
    })(),
    (async () => {
      while (running) {
        await timed('tcp', port, '127.0.0.3', stream, (got) => got >= stream.length, samples);
        await sleep(50);
      }
    })(),
  ];
  await sleep(300);
  const before = nstat();
  const cpuBefore = cpuMs(mux.pid);
  ownDelay.reset();
  const floodStart = Date.now();
  let child: ChildProcess | null = null;
  let inproc: Flood | null = null;
  if (values.flood === 'child') {
    child = spawn(process.execPath, [FLOOD_FILE, 'child', String(port), String(N), String(PARALLEL), values.kind!], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise((resolve) => child!.stdout!.once('data', resolve));
  } else {
    inproc = startFlood(port, N, PARALLEL, values.kind!);
    await inproc.opened;
  }
  const opened = Date.now() - floodStart;
  // As the test does: until sniffmux has let every flood connection go.
  while ((await statusActive(adminPort)) > 0) await sleep(100);
  const gone = Date.now() - floodStart;
  running = false;
  await Promise.all(clients);
  sampling = false;
  await queueSampler;
  const cpu = cpuMs(mux.pid) - cpuBefore;
  const after = nstat();
  child?.stdin!.write('x');
  inproc?.destroy();

  const lines = readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: number; eld?: number; accepted?: string });
  const muxDelay = Math.max(0, ...lines.filter((l) => l.eld !== undefined && l.t >= floodStart && l.t <= floodStart + gone).map((l) => l.eld!));
  const during = samples.filter((s) => s.start >= floodStart && s.start <= floodStart + gone).sort((a, b) => b.total - a.total);
  const p99 = (kind: Sample['kind']): number => {
    const times = during.filter((s) => s.kind === kind).map((s) => s.total).sort((a, b) => a - b);
    return Math.round(times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] ?? 0);
  };
  // The slowest real request, split: waiting to be accepted, then to be started, then inside sniffmux.
  const slowest = during[0];
  const line = slowest && mux.logs.find((l) => l.msg === 'connection' && l.client === slowest.client && Date.parse(String(l.time)) >= slowest.start);
  const acceptedAt = slowest && lines.find((l) => l.accepted === slowest.client && l.t >= slowest.start)?.t;
  const inSniffmux = line ? (line.timings as { total: number }).total : null;
  const startedAt = line && inSniffmux !== null ? Date.parse(String(line.time)) - inSniffmux : null;
  const report = {
    flood: values.flood,
    backends: values.backends,
    kind: values.kind,
    connections: N,
    load: os.loadavg()[0]!.toFixed(2),
    floodOpenedMs: opened,
    floodGoneMs: gone,
    realClientP99Ms: { http: p99('http'), tcp: p99('tcp') },
    slowest: slowest && {
      kind: slowest.kind,
      totalMs: Math.round(slowest.total),
      clientConnectMs: Math.round(slowest.connect),
      untilAcceptedMs: acceptedAt ? acceptedAt - slowest.start : null,
      untilStartedMs: startedAt ? startedAt - slowest.start : null,
      insideSniffmuxMs: inSniffmux,
    },
    acceptQueueMax: queueMax,
    sniffmuxLoopDelayMaxMs: Math.round(muxDelay),
    thisProcessLoopDelayMaxMs: Math.round(ownDelay.max / 1e6),
    sniffmuxCpuPerFloodConnectionMs: Math.round((cpu / N) * 100) / 100,
    nstat: Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - (before[k] ?? 0)])),
  };
  await mux.stop();
  peers.stop();
  return report;
}

for (let i = 0; i < Number(values.runs); i++) console.log(JSON.stringify(await run()));
process.exit(0);
