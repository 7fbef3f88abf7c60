/**
 * The native splice(2) loop (src/splice/native.ts) against the JavaScript
 * splice (src/splice/splice.ts) and no proxy at all:
 *   1. throughput of one stream each way (a source sending as fast as it can,
 *      a sink reading as fast as it can: the backend sends for `down`, the
 *      client for `up`) for N seconds, with the proxy's CPU time per GB;
 *   2. memory per idle spliced connection with M held (JS sockets destroyed
 *      in the native case).
 * Each figure is measured `runs` times, the targets interleaved, with a fresh
 * proxy each time; medians and every run are printed.
 * The proxy runs in a child process (this file, `proxy` mode) so its RSS and
 * CPU are its own; source, sink and clients run here.
 *
 *   node --import tsx bench/native-splice.ts [--seconds 10] [--hold 5000] [--runs 3] [--only down,up,memory]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { splice } from '../src/splice/splice.js';
import { adoptSockets, nativeConnSize, nativeSpliceStats, nativeSpliceUnavailable } from '../src/splice/native.js';
import { cpuMsOf } from '../src/bench/process.js';

type Mode = 'js' | 'native';

/** Hears nothing: the bench counts live connections from the addon's stats. */
const NOOP_OWNER = { spliceDone(): void {} };

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => resolve((server.address() as net.AddressInfo).port)));

// ---------------------------------------------------------------- the proxy

async function proxyMain(mode: Mode, backendPort: number): Promise<void> {
  let spliced = 0;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
    a.on('error', () => {});
    const b = net.connect({ port: backendPort, host: '127.0.0.1', allowHalfOpen: true }, () => {
      if (mode === 'native') {
        adoptSockets(a, b, 0, NOOP_OWNER); // a module-level owner: a closure here would keep a and b alive
      } else {
        splice(a, b);
        spliced++;
        a.on('close', () => b.destroy());
        b.on('close', () => a.destroy());
      }
    });
    b.on('error', () => {});
  });
  const port = await listen(server);
  process.stdout.write(`port ${port}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'status') {
      for (let i = 0; i < 3; i++) globalThis.gc?.();
      const m = process.memoryUsage();
      const live = mode === 'native' ? nativeSpliceStats()!.live : spliced;
      process.stdout.write(`status ${JSON.stringify({ live, rss: m.rss, heapUsed: m.heapUsed, external: m.external })}\n`);
    }
  }
  process.exit(0);
}

interface Proxy {
  child: ChildProcess;
  port: number;
  status(): Promise<{ live: number; rss: number; heapUsed: number; external: number }>;
  stop(): Promise<void>;
}

async function startProxy(mode: Mode, backendPort: number): Promise<Proxy> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', self, 'proxy', mode, String(backendPort)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = () => new Promise<string>((r) => waiting.push(r));
  const port = Number((await next()).split(' ')[1]);
  return {
    child,
    port,
    async status() {
      child.stdin!.write('status\n');
      return JSON.parse((await next()).slice(7));
    },
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.stdin!.end();
      }),
  };
}

const cpuMs = (pid: number): number => cpuMsOf(pid) ?? NaN;

// ----------------------------------------------------------- 1. throughput

type Direction = 'down' | 'up';
const DIRECTIONS: Record<Direction, string> = { down: 'server → client', up: 'client → server' };
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

/** Writes CHUNK as fast as `s` takes it, until it closes. */
function blast(s: net.Socket): void {
  const pump = () => {
    while (!s.destroyed && s.write(CHUNK));
  };
  s.on('drain', pump);
  pump();
}

/** Counts what `s` receives for `seconds` from its first byte on; bytes per second. */
function measureReceived(s: net.Socket, seconds: number): Promise<number> {
  let bytes = 0;
  let start = 0;
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => {
      if (start === 0) {
        start = performance.now();
        setTimeout(() => resolve(bytes / ((performance.now() - start) / 1000)), seconds * 1000);
      }
      bytes += d.length;
    });
  });
}

/**
 * The backend of one direction: for `down` it sends as fast as the
 * connection takes it, for `up` it reads and reports the rate it received.
 */
async function backendFor(direction: Direction, seconds: number) {
  const sockets = new Set<net.Socket>();
  let received: (rate: number) => void = () => {};
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    if (direction === 'down') blast(s);
    else void measureReceived(s, seconds).then((rate) => received(rate));
  });
  const port = await listen(server);
  return {
    port,
    /** Connects a client through `port` and resolves with the rate the receiving end saw. */
    run(through: number): Promise<number> {
      const c = net.connect(through, '127.0.0.1');
      c.on('error', () => {});
      const rate = direction === 'down' ? measureReceived(c, seconds) : new Promise<number>((r) => (received = r));
      if (direction === 'up') c.once('connect', () => blast(c));
      return rate.finally(() => c.destroy());
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

type Target = 'direct' | Mode;
const LABEL: Record<Target, string> = { direct: 'direct', js: 'JS splice', native: 'native splice' };

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const list = (xs: number[], digits = 0): string => xs.map((x) => x.toFixed(digits)).join(', ');

async function throughput(direction: Direction, seconds: number, runs: number): Promise<void> {
  const backend = await backendFor(direction, seconds);
  const targets: Target[] = ['direct', 'js', ...(nativeSpliceUnavailable ? [] : (['native'] as Mode[]))];
  const rates: Record<Target, number[]> = { direct: [], js: [], native: [] };
  const cpuPerGB: Record<Target, number[]> = { direct: [], js: [], native: [] };
  // Interleaved: run 1 of each target, then run 2 of each..., so a change in the machine's load touches all alike.
  for (let run = 0; run < runs; run++) {
    for (const target of targets) {
      if (target === 'direct') {
        rates.direct.push(await backend.run(backend.port));
        continue;
      }
      const proxy = await startProxy(target, backend.port);
      const cpu0 = cpuMs(proxy.child.pid!);
      const rate = await backend.run(proxy.port);
      const cpu = cpuMs(proxy.child.pid!) - cpu0;
      rates[target].push(rate);
      cpuPerGB[target].push(cpu / ((rate * seconds) / 1e9));
      await proxy.stop();
    }
  }
  await backend.close();
  console.log(`one stream, ${DIRECTIONS[direction]}, ${seconds} s per run, ${runs} runs interleaved (127.0.0.1):`);
  for (const target of targets) {
    const mb = rates[target].map((r) => r / 1e6);
    const cpu = target === 'direct' ? '' : `   proxy CPU ${median(cpuPerGB[target]).toFixed(0).padStart(5)} ms per GB (runs ${list(cpuPerGB[target])})`;
    console.log(
      `  ${LABEL[target].padEnd(14)} ${median(mb).toFixed(0).padStart(6)} MB/s = ${((median(mb) * 8) / 1000).toFixed(2).padStart(5)} Gbit/s (runs ${list(mb)})${cpu}`,
    );
  }
  if (nativeSpliceUnavailable) console.log(`  native splice  unavailable: ${nativeSpliceUnavailable}`);
}

// --------------------------------------------------------- 2. idle memory

async function idleMemory(hold: number, runs: number): Promise<void> {
  // An echo backend: each client sends one byte and waits for it, so every path is known to be live.
  const backendSockets = new Set<net.Socket>();
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    backendSockets.add(s);
    s.on('error', () => {});
    s.on('close', () => backendSockets.delete(s));
    s.pipe(s);
  });
  const backendPort = await listen(backend);
  const modes: Mode[] = ['js', ...(nativeSpliceUnavailable ? [] : (['native'] as Mode[]))];
  const per: Record<Mode, { rss: number[]; heap: number[]; external: number[]; rssMB: number[] }> = {
    js: { rss: [], heap: [], external: [], rssMB: [] },
    native: { rss: [], heap: [], external: [], rssMB: [] },
  };
  for (let run = 0; run < runs; run++) {
    for (const mode of modes) {
      const proxy = await startProxy(mode, backendPort);
      const clients: net.Socket[] = [];
      const open = async () => {
        const s = net.connect(proxy.port, '127.0.0.1');
        s.on('error', () => {});
        await new Promise<void>((resolve) => {
          s.once('connect', () => s.write('x'));
          s.once('data', () => resolve());
        });
        clients.push(s);
      };
      // Warm-up connection, then the baseline.
      await open();
      const before = await proxy.status();
      for (let i = 1; i < hold; i += 250) await Promise.all(Array.from({ length: Math.min(250, hold - i) }, open));
      let after = await proxy.status();
      for (let i = 0; i < 50 && after.live < hold; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await proxy.status();
      }
      if (after.live < hold) console.log(`  (${LABEL[mode]}, run ${run + 1}: only ${after.live} of ${hold} live)`);
      const delta = (k: 'rss' | 'heapUsed' | 'external') => (after[k] - before[k]) / (hold - 1);
      per[mode].rss.push(delta('rss'));
      per[mode].heap.push(delta('heapUsed'));
      per[mode].external.push(delta('external'));
      per[mode].rssMB.push(after.rss / 1048576);
      for (const s of clients) s.destroy();
      await proxy.stop();
    }
  }
  for (const s of backendSockets) s.destroy();
  await new Promise((r) => backend.close(r));
  console.log(`idle connections held through the proxy: ${hold}, ${runs} runs interleaved (bytes per connection: proxy RSS, JS heap, external; medians, runs in brackets):`);
  for (const mode of modes) {
    const p = per[mode];
    console.log(
      `  ${LABEL[mode].padEnd(14)} RSS ${median(p.rss).toFixed(0).padStart(6)} B/conn (${list(p.rss)}), JS heap ${median(p.heap).toFixed(0).padStart(6)}, ` +
        `external ${median(p.external).toFixed(0).padStart(5)}; RSS holding ${median(p.rssMB).toFixed(1)} MB`,
    );
  }
  if (nativeSpliceUnavailable) console.log(`  native splice: unavailable: ${nativeSpliceUnavailable}`);
  else console.log(`  (native per-connection struct: ${nativeConnSize} bytes)`);
}

// ---------------------------------------------------------------------- main

if (process.argv[2] === 'proxy') {
  await proxyMain(process.argv[3] as Mode, Number(process.argv[4]));
} else {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      hold: { type: 'string', default: '5000' },
      runs: { type: 'string', default: '3' },
      only: { type: 'string', default: 'down,up,memory' },
    },
  });
  const runs = Number(values.runs);
  const only = new Set(values.only.split(','));
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.availableParallelism()}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const direction of ['down', 'up'] as Direction[]) if (only.has(direction)) await throughput(direction, Number(values.seconds), runs);
  if (only.has('memory')) await idleMemory(Number(values.hold), runs);
  console.log(`load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}
