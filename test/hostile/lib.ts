/**
 * Shared pieces of the hostile-world suite (issue 7): the scale knob, the
 * report rows, the real binary with its memory read from /proc, a prober that
 * plays the one real client who must be served promptly throughout, and byte
 * streams checked end to end with SHA-256.
 *
 * Everything stays on loopback (127.0.0.0/8). HOSTILE_LONG=1 (set by
 * `npm run test:hostile`) scales counts and durations up; without it each
 * file takes a few seconds and runs as part of `npm test`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI } from '../helpers/cli.js';
import type { LogLine } from '../helpers/mux.js';
import { tempDir } from '../helpers/temp-dir.js';

export const LONG = process.env.HOSTILE_LONG === '1';

/** The short figure for `npm test`, the long one for `npm run test:hostile`. */
export function scale<T>(short: T, long: T): T {
  return LONG ? long : short;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---- report rows -------------------------------------------------------------------

/** One row of docs/reliability.md. */
export interface Row {
  readonly scenario: string;
  /** What was held or pushed through ("5,000 silent connections from 20 addresses"). */
  readonly load: string;
  /** What went wrong on purpose ("none", "server reset mid-stream"...). */
  readonly faults: string;
  /** Bytes of accepted connections that did not arrive intact: must be 0. */
  readonly bytesLost: number;
  /** Peak resident memory, MB, and whose ("sniffmux" = the binary alone, "test process" = sniffmux in-process with its peers). */
  readonly maxRssMB: number;
  readonly rssOf: 'sniffmux' | 'test process';
  /** The figures that show it held ("real client p99 12 ms, max 40 ms"). */
  readonly figures: string;
}

/** Where rows go: HOSTILE_REPORT, else a file in the temp folder that bench/reliability-report.ts reads. */
export const REPORT_FILE = process.env.HOSTILE_REPORT ?? path.join(tmpdir(), 'sniffmux-reliability.jsonl');

export function writeRow(row: Row & { readonly result: 'pass' | 'FAIL' }): void {
  mkdirSync(path.dirname(REPORT_FILE), { recursive: true });
  appendFileSync(REPORT_FILE, `${JSON.stringify({ ...row, long: LONG, at: new Date().toISOString() })}\n`);
}

type Tap = {
  test(name: string, fn: (t: any) => Promise<void>): Promise<unknown>;
};

/**
 * A subtest whose outcome becomes a report row: `fn` returns the row's
 * figures, the row's result is the subtest's (every assertion passed).
 */
export async function scenario(t: Tap, name: string, fn: (t: any) => Promise<Row | Omit<Row, 'scenario'>>): Promise<void> {
  await t.test(name, async (st: any) => {
    let row: Row | null = null;
    try {
      row = { scenario: name, ...(await fn(st)) };
    } finally {
      const fallback: Row = { scenario: name, load: '-', faults: '-', bytesLost: -1, maxRssMB: 0, rssOf: 'sniffmux', figures: 'did not finish' };
      writeRow({ ...(row ?? fallback), result: row !== null && st.passing() ? 'pass' : 'FAIL' });
    }
  });
}

export const mb = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

// ---- memory --------------------------------------------------------------------------

/** VmRSS and VmHWM (peak) of a process, bytes. */
export function procMemory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Samples `read()` every `everyMs` and keeps the highest; `stop()` returns it. Unref'd: a scenario that fails before stop() must not keep the test process alive. */
function peakSampler(read: () => number, everyMs: number): { max(): number; stop(): number } {
  let max = 0;
  const sample = (): void => {
    try {
      max = Math.max(max, read());
    } catch {
      // The process is gone.
    }
  };
  sample();
  const timer = setInterval(sample, everyMs).unref();
  return {
    max: () => max,
    stop: () => {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

/** The highest RSS of a process (bytes), sampled every `everyMs`. */
export function rssSampler(pid: number | null = null, everyMs = 50): { max(): number; stop(): number } {
  return peakSampler(() => (pid === null ? process.memoryUsage.rss() : procMemory(pid).rss), everyMs);
}

/** The most descriptors process `pid` had open, sampled every `everyMs` (from /proc, as an operator would look). */
export function descriptorSampler(pid: number, everyMs = 2): { stop(): number } {
  return peakSampler(() => readdirSync(`/proc/${pid}/fd`).length, everyMs);
}

// ---- the real binary -----------------------------------------------------------------------

export interface Binary {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly dir: string;
  readonly configFile: string;
  /** Every JSON line it printed, parsed. */
  readonly logs: LogLine[];
  /** stderr and non-JSON stdout. */
  readonly other: () => string;
  /** stdout exactly as the process wrote it. */
  readonly stdout: () => Buffer;
  port(frontend: string, index?: number): number;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  count(predicate: (line: LogLine) => boolean): number;
  /** Rewrites the config file (for a reload). */
  writeConfig(config: unknown): void;
  memory(): { rss: number; peak: number };
  exited(): Promise<number | null>;
  /** SIGTERM and wait; SIGKILL if it has not exited within `withinMs`. */
  stop(withinMs?: number): Promise<number | null>;
}

/**
 * `node dist/cli.js run -c FILE` with `config` written as JSON, optionally
 * under a lowered `ulimit -n`. Resolves once it has logged 'sniffmux started'.
 */
export async function startBinary(config: unknown, opts: { nofile?: number; env?: Record<string, string> } = {}): Promise<Binary> {
  const dir = tempDir('smx-hostile-');
  const configFile = path.join(dir, 'sniffmux.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const args = [CLI, 'run', '-c', configFile];
  const child =
    opts.nofile === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
      : spawn('sh', ['-c', `ulimit -n ${opts.nofile} && exec "$0" "$@"`, process.execPath, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, ...opts.env },
        });
  const logs: LogLine[] = [];
  const stdout: Buffer[] = [];
  let other = '';
  let partial = '';
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    stdout.push(d);
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const text of lines) {
      if (!text) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        other += `${text}\n`;
        continue;
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (other += d.toString('utf8')));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waitForLog = (predicate: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> => {
    const found = logs.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such log line within ${timeoutMs} ms; stderr: ${other}`)), timeoutMs);
      waiters.push({
        predicate,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exit.then((code) => reject(new Error(`sniffmux exited (${code}); stderr: ${other}`)));
    });
  };
  await waitForLog((l) => l.msg === 'sniffmux started');
  const binary: Binary = {
    child,
    pid: child.pid!,
    dir,
    configFile,
    logs,
    other: () => other,
    stdout: () => Buffer.concat(stdout),
    port(frontend, index = 0) {
      const found = logs.filter((l) => l.msg === 'listening' && l.frontend === frontend)[index];
      if (!found) throw new Error(`no listener ${index} for ${frontend}`);
      return found.port as number;
    },
    waitForLog,
    count: (predicate) => logs.reduce((n, l) => (predicate(l) ? n + 1 : n), 0),
    writeConfig: (next) => writeFileSync(configFile, JSON.stringify(next, null, 2)),
    memory: () => procMemory(child.pid!),
    exited: () => exit,
    async stop(withinMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exit;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), withinMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
  };
  return binary;
}

// ---- the real client ------------------------------------------------------------------------

export interface ProbeStats {
  readonly count: number;
  readonly failures: number;
  readonly errors: string[];
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Calls `once` back to back with a pause of `everyMs` between calls until
 * stopped, and times each: the real client that must be served throughout.
 */
export function prober(once: () => Promise<void>, everyMs = 50): { stop(): Promise<ProbeStats> } {
  const times: number[] = [];
  const errors: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await once();
        times.push(performance.now() - started);
      } catch (error) {
        errors.push((error as Error).message);
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const sorted = [...times].sort((a, b) => a - b);
      return {
        count: times.length + errors.length,
        failures: errors.length,
        errors: errors.slice(0, 5),
        p50: Math.round(percentile(sorted, 50)),
        p99: Math.round(percentile(sorted, 99)),
        max: Math.round(sorted.at(-1) ?? 0),
      };
    },
  };
}

/** Fails with `what` when `promise` has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e as Error);
      },
    );
  });
}

/**
 * One HTTP/1.1 request on a fresh connection (from `localAddress`; over TLS
 * with that SNI when `servername` is given, any certificate accepted);
 * resolves with the whole response once the server closes or Content-Length is met.
 */
export function httpOnce(
  port: number,
  request: string,
  opts: { localAddress?: string; timeoutMs?: number; host?: string; servername?: string } = {},
): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const where = { port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress };
      const send = (): void => void socket.write(request);
      const socket =
        opts.servername === undefined
          ? net.connect(where, send)
          : tls.connect({ ...where, servername: opts.servername, rejectUnauthorized: false }, send);
      let got = Buffer.alloc(0);
      const done = (): void => {
        socket.destroy();
        resolve(got.toString('latin1'));
      };
      socket.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        const text = got.toString('latin1');
        const headEnd = text.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, headEnd));
        if (length && got.length - headEnd - 4 >= Number(length[1])) done();
      });
      socket.on('end', done);
      socket.on('error', reject);
    }),
    opts.timeoutMs ?? 5000,
    `${opts.servername === undefined ? 'HTTP' : 'TLS'} request to :${port}`,
  );
}

// ---- byte streams, checked end to end --------------------------------------------------------

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Sends `size` random bytes through `port` to an echo backend in `chunk`-sized
 * writes `gapMs` apart (after `banner`, which picks the route), reads them
 * back and compares SHA-256. Resolves with the bytes lost (0 when the echo is
 * intact; what did not come back when the connection was cut), never rejects.
 */
export function echoStream(
  port: number,
  size: number,
  opts: { chunk?: number; gapMs?: number; localAddress?: string; timeoutMs?: number; banner?: string; tls?: tls.ConnectionOptions } = {},
): Promise<{ lost: number; error: string | null }> {
  const banner = Buffer.from(opts.banner ?? '', 'latin1');
  const data = randomBytes(size);
  const expected = Buffer.concat([banner, data]);
  const chunk = opts.chunk ?? 16384;
  return new Promise((resolve) => {
    const where = { port, host: '127.0.0.1', localAddress: opts.localAddress };
    const socket: net.Socket = opts.tls ? tls.connect({ ...where, rejectUnauthorized: false, ...opts.tls }) : net.connect({ ...where, allowHalfOpen: true });
    const got: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const back = Buffer.concat(got);
      const intact = back.length === expected.length && sha256(back) === sha256(expected);
      resolve({
        lost: intact ? 0 : Math.max(0, expected.length - commonPrefix(back, expected)),
        error: intact ? null : (error ?? `echo differs (${back.length}/${expected.length} bytes)`),
      });
    };
    const timer = setTimeout(() => finish(`timed out after ${opts.timeoutMs ?? 30_000} ms`), opts.timeoutMs ?? 30_000);
    socket.on('data', (d: Buffer) => {
      got.push(d);
      received += d.length;
      if (received >= expected.length) finish(null);
    });
    socket.on('error', (e) => finish(e.message));
    socket.on('end', () => finish('ended early'));
    socket.on('close', () => finish('closed early'));
    const write = async (): Promise<void> => {
      if (banner.length > 0) socket.write(banner);
      for (let at = 0; at < size && !settled; at += chunk) {
        if (!socket.write(data.subarray(at, at + chunk))) await new Promise((r) => socket.once('drain', r));
        if (opts.gapMs) await sleep(opts.gapMs);
      }
    };
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => void write());
  });
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Sockets connectOnly opened and that are still open: destroyAll() ends a test cleanly whatever happened. */
const opened = new Set<net.Socket>();

export function destroyAll(): void {
  for (const socket of opened) socket.destroy();
  opened.clear();
}

/** Opens a socket and resolves once connected (or rejects). Errors after that are swallowed. */
export function connectOnly(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true }, () => {
      socket.removeListener('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', reject);
    // Tracked from the start: one still connecting when a test ends must not keep the process alive.
    opened.add(socket);
    socket.once('close', () => opened.delete(socket));
  });
}

/** The loopback source address number `i` of `n` (127.0.1.1 …): floods come from many addresses. */
export function source(i: number, n: number): string {
  return `127.0.1.${1 + (i % n)}`;
}

/** Runs `fn` over 0..count-1 with at most `parallel` in flight. */
export async function pool<T>(count: number, parallel: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

export const fmt = (n: number): string => n.toLocaleString('en-US');
