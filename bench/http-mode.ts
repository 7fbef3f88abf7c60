/**
 * Keep-alive HTTP requests per second: directly to a Node HTTP server,
 * through sniffmux in tcp mode (the first request routes the connection, then
 * bytes are spliced), and through sniffmux in http mode (every request
 * framed, routed, parsed by Node and proxied over kept-alive server
 * connections). Each party in its own process, on loopback.
 *
 *   npm run build && node --import tsx bench/http-mode.ts [--seconds 5] [--connections 50] [--rounds 3] [--size 2]
 *
 * Every connection keeps one request in flight (a GET, answered with
 * `--size` bytes and a Content-Length) and sends the next as soon as the
 * response is complete. Rounds interleave the three targets; the table shows
 * the median of the rounds, p50/p99 latency of the median round, and the CPU
 * time the sniffmux process spent per request (from /proc: on a small
 * machine the load generator, the server and sniffmux share the cores, so
 * requests/s alone understates or overstates the cost of a mode).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuMsOf, freePort, spawnDaemon, waitForPort, type Daemon } from '../src/bench/process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist/cli.js');

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    size: { type: 'string', default: '2' },
  },
});
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const size = Number(values.size);

/** CPU time of the sniffmux process so far, ms (NaN for direct: no process of ours). */
const cpuMs = (pid: number | undefined): number => (pid === undefined ? NaN : (cpuMsOf(pid) ?? NaN));

/** Starts a process and resolves once `port` accepts connections. */
async function daemon(args: string[], port: number): Promise<Daemon> {
  const child = spawnDaemon(process.execPath, args);
  await waitForPort(port, 10_000, child.alive).catch(async (error: Error) => {
    await child.stop();
    throw new Error(`${args.join(' ')}: ${error.message}\n${child.output()}`);
  });
  return child;
}

const REQUEST = Buffer.from('GET /bench HTTP/1.1\r\nHost: bench.test\r\n\r\n', 'latin1');
const HEAD_END = Buffer.from('\r\n\r\n');

interface Round {
  readonly requests: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  /** CPU time of the sniffmux process per request, µs (NaN for direct). */
  readonly muxCpuUs: number;
}

/** `connections` keep-alive clients, one request in flight each, for `seconds`. */
async function measure(port: number, muxPid?: number): Promise<Round> {
  const latencies: number[] = [];
  let requests = 0;
  let errors = 0;
  let running = true;
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from({ length: connections }, () => new Promise<void>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve());
      sockets.push(socket);
      let buffer: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      const send = (): void => {
        sentAt = performance.now();
        socket.write(REQUEST);
      };
      socket.once('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        for (;;) {
          const end = buffer.indexOf(HEAD_END);
          if (end < 0) return;
          const head = buffer.toString('latin1', 0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffer.length < end + 4 + length) return;
          buffer = buffer.subarray(end + 4 + length);
          if (!head.startsWith('HTTP/1.1 200')) errors++;
          requests++;
          latencies.push(performance.now() - sentAt);
          if (running) send();
        }
      });
      socket.on('error', () => errors++);
    })),
  );
  const started = performance.now();
  const before = requests;
  const cpuBefore = cpuMs(muxPid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const done = requests - before;
  const cpu = cpuMs(muxPid) - cpuBefore;
  const elapsed = (performance.now() - started) / 1000;
  running = false;
  for (const s of sockets) s.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { requests: done, perSecond: done / elapsed, p50: at(0.5), p99: at(0.99), errors, muxCpuUs: (cpu * 1000) / done };
}

const backendPort = await freePort();
const tcpPort = await freePort();
const httpPort = await freePort();
const body = 'x'.repeat(size);
const backendScript =
  `require('http').createServer((q,s)=>{s.writeHead(200,{'Content-Type':'text/plain','Content-Length':${size}});s.end(${JSON.stringify(body)})})` +
  `.listen(${backendPort},'127.0.0.1')`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'smx-httpbench-'));
const config = path.join(dir, 'bench.json');
writeFileSync(
  config,
  JSON.stringify({
    log: { level: 'warn' },
    frontends: [
      { name: 'tcp', listen: [`127.0.0.1:${tcpPort}`], default: 'tcp_be' },
      { name: 'http', listen: [`127.0.0.1:${httpPort}`], default: 'http_be' },
    ],
    backends: [
      { name: 'tcp_be', servers: [{ name: 's1', address: `127.0.0.1:${backendPort}` }] },
      { name: 'http_be', mode: 'http', servers: [{ name: 's1', address: `127.0.0.1:${backendPort}` }] },
    ],
  }),
);

const backend = await daemon(['-e', backendScript], backendPort);
const mux = await daemon([CLI, 'run', '-c', config], httpPort);
const targets: [string, number, number | undefined][] = [
  ['direct', backendPort, undefined],
  ['sniffmux tcp mode', tcpPort, mux.pid],
  ['sniffmux http mode', httpPort, mux.pid],
];
const results = new Map<string, Round[]>(targets.map(([name]) => [name, []]));
try {
  // A warm-up round of each (JIT, kept-alive server connections), then interleaved rounds.
  for (const [, port] of targets) await measure(port);
  for (let r = 0; r < rounds; r++) {
    for (const [name, port, pid] of targets) {
      const round = await measure(port, pid);
      results.get(name)!.push(round);
      process.stderr.write(`round ${r + 1} ${name}: ${Math.round(round.perSecond)} req/s\n`);
    }
  }
} finally {
  await mux.stop();
  await backend.stop();
  rmSync(dir, { recursive: true, force: true });
}

const median = (rs: Round[]): Round => [...rs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(rs.length / 2)]!;
const direct = median(results.get('direct')!).perSecond;
const lines = [
  `keep-alive requests/s, ${connections} connections, ${seconds}s x ${rounds} rounds (median), ${size}-byte bodies`,
  `node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${os.type()} ${os.release()}`,
  '',
  '| target | req/s | vs direct | p50 ms | p99 ms | sniffmux CPU µs/req | errors |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...targets.map(([name]) => {
    const m = median(results.get(name)!);
    const cpu = Number.isNaN(m.muxCpuUs) ? '–' : m.muxCpuUs.toFixed(0);
    return `| ${name} | ${Math.round(m.perSecond)} | ${((m.perSecond / direct) * 100).toFixed(0)}% | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${cpu} | ${m.errors} |`;
  }),
];
process.stdout.write(lines.join('\n') + '\n');
