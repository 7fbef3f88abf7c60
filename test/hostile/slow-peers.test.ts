/**
 * Issue 7, item 3: slow peers. A backend sends a large stream to a client
 * that reads 1 KB/s, and the reverse; in tcp mode, through terminated TLS
 * and in http mode. While the slow side crawls, sniffmux's buffers for that
 * connection (every userland socket buffer it owns: client, TLS, server and
 * the http session's own; once the native splice(2) loop carries a tcp-mode
 * connection, that loop's own buffers and the bytes in its pipes, kernel
 * memory sniffmux holds beyond the sockets' buffers) are sampled and must stay within a bound far below
 * the stream's size; the rest waits in the peers and the kernel, as
 * backpressure wants. Then the slow side speeds up and every byte must
 * arrive, checked with SHA-256.
 *
 * sniffmux runs in this process (its sockets can be looked at); the peers
 * hold at most a chunk each, so the process's RSS growth is sniffmux's.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { makeCerts } from '../helpers/certs.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { tcpServer } from '../helpers/servers.js';
import type { NativeSplice } from '../../src/splice/native.js';
import { fmt, mb, rssSampler, scale, scenario, sleep } from './lib.js';

const TOTAL = scale(32, 1024) * 1048576;
const SLOW_MS = scale(1500, 20_000);
/** What sniffmux may hold for one connection, all its buffers together. */
const BOUND = 1048576;

/** A stream of TOTAL pseudo-random bytes, written with backpressure, hashed as it goes. */
const BLOCK = randomBytes(4 * 1048576);
function* chunks(): Generator<Buffer> {
  const size = 65536;
  for (let at = 0, i = 0; at < TOTAL; at += size, i++) {
    const offset = (i * 65521) % (BLOCK.length - size);
    yield BLOCK.subarray(offset, offset + Math.min(size, TOTAL - at));
  }
}

/** Writes the stream to `out` respecting backpressure; resolves with its SHA-256. */
async function send(out: Writable, end = true): Promise<string> {
  const hash = createHash('sha256');
  for (const chunk of chunks()) {
    hash.update(chunk);
    if (out.destroyed) break;
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  if (end) out.end();
  return hash.digest('hex');
}

/**
 * Reads `input`: 1 KB/s (100 bytes every 100 ms) for SLOW_MS while
 * `sample` runs, then at full speed until `size` bytes arrived; resolves
 * with the count and SHA-256 of what arrived.
 */
async function slowRead(input: Readable, size: number, sample: () => void): Promise<{ bytes: number; sha: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  input.pause();
  const until = performance.now() + SLOW_MS;
  while (performance.now() < until) {
    const piece = input.read(100) as Buffer | null;
    if (piece) {
      hash.update(piece);
      bytes += piece.length;
    }
    sample();
    await sleep(100);
  }
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      hash.update(d);
      bytes += d.length;
      if (bytes >= size) done();
    };
    const done = (): void => {
      input.removeListener('data', onData);
      resolve();
    };
    input.on('data', onData);
    input.once('end', done);
    input.once('close', done);
    input.resume();
  });
  return { bytes, sha: hash.digest('hex') };
}

type Buffered = { writableLength?: number; readableLength?: number } | null | undefined;
const held = (...streams: Buffered[]): number => streams.reduce((n, s) => n + (s?.writableLength ?? 0) + (s?.readableLength ?? 0), 0);

/**
 * Every byte sniffmux holds for its open connections: in userland (socket
 * buffers both ways, the TLS layer's, the http session's, the native splice's
 * own) and in the native splice's pipes.
 */
function sniffmuxHolds(mux: RunningMux): { userland: number; pipes: number } {
  let total = 0;
  let pipes = 0;
  for (const connection of mux.instance.openConnections()) {
    // A FastConnection has no socket: the native thread holds what it holds (peeked bytes stay in the kernel).
    const fast = (connection as unknown as { job?: NativeSplice }).job;
    if (fast) {
      const native = fast.counters();
      total += native.heldUserland;
      pipes += native.heldInPipes;
      continue;
    }
    const c = connection as unknown as {
      socket: net.Socket;
      client: net.Socket;
      server: net.Socket | null;
      peeked: Buffer;
      httpSession: { buffer: Buffer; exchange: { proxyReq: http.ClientRequest | null; res: http.ServerResponse } | null } | null;
      native: NativeSplice | null;
    };
    total += held(c.socket, c.client !== c.socket ? c.client : null, c.server) + c.peeked.length;
    const native = c.native?.counters();
    if (native) {
      total += native.heldUserland;
      pipes += native.heldInPipes;
    }
    const session = c.httpSession;
    if (session) {
      total += session.buffer.length;
      const exchange = session.exchange;
      if (exchange) {
        total += held(exchange.proxyReq?.socket, exchange.proxyReq, exchange.res);
      }
    }
  }
  return { userland: total, pipes };
}

interface Outcome {
  readonly received: number;
  readonly intact: boolean;
  /** the most held at once, userland and pipes together, and each part's most */
  readonly maxHeld: number;
  readonly maxUserland: number;
  readonly maxPipes: number;
  readonly peakRss: number;
  readonly rssGrowth: number;
}

async function measure(mux: RunningMux, run: (sample: () => void) => Promise<{ bytes: number; sent: string; got: string }>): Promise<Outcome> {
  global.gc?.();
  const before = process.memoryUsage.rss();
  const rss = rssSampler(null, 50);
  let maxHeld = 0;
  let maxUserland = 0;
  let maxPipes = 0;
  const sample = (): void => {
    const { userland, pipes } = sniffmuxHolds(mux);
    maxHeld = Math.max(maxHeld, userland + pipes);
    maxUserland = Math.max(maxUserland, userland);
    maxPipes = Math.max(maxPipes, pipes);
  };
  const { bytes, sent, got } = await run(sample);
  const peak = rss.stop();
  return { received: bytes, intact: bytes === TOTAL && sent === got, maxHeld, maxUserland, maxPipes, peakRss: peak, rssGrowth: Math.max(0, peak - before) };
}

const kb = (bytes: number): number => Math.round(bytes / 1024);

/** "64 KB (0 KB in userland, 64 KB in native splice pipes)", the split only when the native splice held any of it. */
function heldText(o: Outcome): string {
  return o.maxPipes === 0 ? `${kb(o.maxHeld)} KB` : `${kb(o.maxHeld)} KB (${kb(o.maxUserland)} KB in userland, ${kb(o.maxPipes)} KB in native splice pipes)`;
}

function check(t: any, outcome: Outcome, what: string) {
  t.equal(outcome.received, TOTAL, `every byte arrived (${fmt(outcome.received)})`);
  t.ok(outcome.intact, 'SHA-256 of what arrived is the SHA-256 of what was sent');
  t.ok(outcome.maxHeld > 0 && outcome.maxHeld < BOUND, `sniffmux held at most ${heldText(outcome)} for the connection while ${what} (bound ${BOUND / 1024} KB)`);
  t.ok(outcome.rssGrowth < 64 * 1048576, `process RSS grew by ${mb(outcome.rssGrowth)} MB while ${mb(TOTAL)} MB went through`);
  return {
    bytesLost: outcome.intact ? 0 : TOTAL - Math.min(TOTAL, outcome.received),
    maxRssMB: mb(outcome.peakRss),
    rssOf: 'test process' as const,
    figures: `sniffmux held at most ${heldText(outcome)} for the connection; RSS +${mb(outcome.rssGrowth)} MB`,
  };
}

const certs = makeCerts({ 'slow.test': ['slow.test'] });
const sizeText = `${mb(TOTAL) >= 1024 ? `${mb(TOTAL) / 1024} GB` : `${mb(TOTAL)} MB`}`;

t.test('slow peers', async (t) => {
  let serverSha: Promise<string> = Promise.resolve('');
  // The backend of the download scenarios: sends the stream at once; of the upload ones: reads like the client does.
  let onServerSocket: (socket: net.Socket) => void = () => {};
  const raw = await tcpServer((socket) => onServerSocket(socket), { allowHalfOpen: true });
  let onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => {};
  const web = http.createServer((req, res) => onRequest(req, res));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const webAddress = `127.0.0.1:${(web.address() as net.AddressInfo).port}`;
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '100ms' },
        timeouts: { client: '2m', tunnel: '2m' },
        tls: { certificates: [{ cert: certs['slow.test']!.cert, key: certs['slow.test']!.key }] },
        rules: [{ if: { protocol: 'http' }, use: 'web' }],
        default: 'raw',
      },
    ],
    backends: [
      { name: 'raw', timeouts: { server: '2m' }, servers: [{ name: 'r1', address: raw.address }] },
      { name: 'web', mode: 'http', timeouts: { server: '2m' }, servers: [{ name: 'w1', address: webAddress }] },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    await raw.close();
    web.closeAllConnections();
    await new Promise((r) => web.close(r));
  });
  const port = mux.port('fe');

  await scenario(t, 'slow client, tcp mode', async (t) => {
    onServerSocket = (socket) => {
      serverSha = send(socket);
    };
    const outcome = await measure(mux, async (sample) => {
      const client = net.connect(port, '127.0.0.1');
      client.write('\x00hello'); // raw bytes: the tcp route
      const got = await slowRead(client, TOTAL, sample);
      client.destroy();
      return { bytes: got.bytes, sent: await serverSha, got: got.sha };
    });
    return { load: `${sizeText} from the backend`, faults: `client reads 1 KB/s for ${SLOW_MS / 1000} s, then at full speed`, ...check(t, outcome, 'the client crawled') };
  });

  await scenario(t, 'slow client, TLS terminated', async (t) => {
    onServerSocket = (socket) => {
      serverSha = send(socket);
    };
    const outcome = await measure(mux, async (sample) => {
      const client = tls.connect({ port, host: '127.0.0.1', servername: 'slow.test', rejectUnauthorized: false });
      await new Promise((r) => client.once('secureConnect', r));
      client.write('\x00hello');
      const got = await slowRead(client, TOTAL, sample);
      client.destroy();
      return { bytes: got.bytes, sent: await serverSha, got: got.sha };
    });
    return { load: `${sizeText} from the backend, TLS to the client`, faults: `client reads 1 KB/s for ${SLOW_MS / 1000} s`, ...check(t, outcome, 'the TLS client crawled') };
  });

  await scenario(t, 'slow backend, tcp mode', async (t) => {
    let sample = (): void => {};
    let arrived: (socket: net.Socket) => void = () => {};
    const got = new Promise<net.Socket>((resolve) => (arrived = resolve)).then((socket) => slowRead(socket, TOTAL + 6, sample));
    onServerSocket = (socket) => arrived(socket);
    const outcome = await measure(mux, async (s) => {
      sample = s;
      const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await new Promise((r) => client.once('connect', r));
      client.write('\x00hello');
      const sent = createHash('sha256').update('\x00hello');
      const sha = send(client, false);
      const result = await got;
      client.destroy();
      // The backend's hash covers the 6 routing bytes too.
      for (const chunk of chunks()) sent.update(chunk);
      await sha;
      return { bytes: result.bytes - 6, sent: sent.digest('hex'), got: result.sha };
    });
    return { load: `${sizeText} from the client`, faults: `backend reads 1 KB/s for ${SLOW_MS / 1000} s, then at full speed`, ...check(t, outcome, 'the backend crawled') };
  });

  await scenario(t, 'slow client, http mode download', async (t) => {
    onRequest = (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': TOTAL, 'content-type': 'application/octet-stream' });
      serverSha = send(res);
    };
    const outcome = await measure(mux, async (sample) => {
      const client = net.connect(port, '127.0.0.1');
      client.write('GET /big HTTP/1.1\r\nHost: slow.test\r\n\r\n');
      // The response head comes first: skip it, then count the body.
      const head = await new Promise<Buffer>((resolve) => {
        let acc = Buffer.alloc(0);
        const onData = (d: Buffer): void => {
          acc = Buffer.concat([acc, d]);
          const end = acc.indexOf('\r\n\r\n');
          if (end === -1) return;
          client.removeListener('data', onData);
          client.pause();
          client.unshift(acc.subarray(end + 4));
          resolve(acc.subarray(0, end));
        };
        client.on('data', onData);
      });
      t.match(head.toString(), /^HTTP\/1\.1 200/);
      const got = await slowRead(client, TOTAL, sample);
      client.destroy();
      return { bytes: got.bytes, sent: await serverSha, got: got.sha };
    });
    return { load: `${sizeText} response body (http mode)`, faults: `client reads 1 KB/s for ${SLOW_MS / 1000} s`, ...check(t, outcome, 'the HTTP client crawled') };
  });

  await scenario(t, 'slow backend, http mode upload', async (t) => {
    let sample = (): void => {};
    let arrived: (exchange: [http.IncomingMessage, http.ServerResponse]) => void = () => {};
    const got = new Promise<[http.IncomingMessage, http.ServerResponse]>((resolve) => (arrived = resolve)).then(async ([req, res]) => {
      const r = await slowRead(req, TOTAL, sample);
      res.end('stored');
      return r;
    });
    onRequest = (req, res) => arrived([req, res]);
    const outcome = await measure(mux, async (s) => {
      sample = s;
      const client = net.connect(port, '127.0.0.1');
      await new Promise((r) => client.once('connect', r));
      client.on('data', () => {});
      client.write(`POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: ${TOTAL}\r\n\r\n`);
      const sent = await send(client, false);
      const result = await got;
      client.destroy();
      return { bytes: result.bytes, sent, got: result.sha };
    });
    return { load: `${sizeText} request body (http mode)`, faults: `backend reads 1 KB/s for ${SLOW_MS / 1000} s`, ...check(t, outcome, 'the HTTP backend crawled') };
  });
});
