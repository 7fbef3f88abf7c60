import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  adoptSockets,
  nativeSpliceStats,
  nativeSpliceUnavailable,
  type NativeSplice,
  type NativeSpliceResult,
} from '../../src/splice/native.js';
import { eventually } from '../helpers/eventually.js';
import { limitedChild } from '../helpers/limited-child.js';
import { tcpServer, type TestServer } from '../helpers/servers.js';

type Teardown = { teardown(fn: () => unknown): void };

const skip = nativeSpliceUnavailable === null ? false : `native splice(2) addon unavailable: ${nativeSpliceUnavailable}`;

if (nativeSpliceUnavailable !== null) {
  console.error(`\n#### NATIVE SPLICE NOT TESTED: ${nativeSpliceUnavailable} ####\n`);
}

// In CI an addon that did not build or load is a failure; elsewhere the tests are skipped (loudly).
t.test('the native splice addon is available', { skip: process.env.CI ? false : skip }, (t) => {
  if (nativeSpliceUnavailable === null) t.pass('loaded');
  else t.fail(`native splice(2) addon unavailable in CI: ${nativeSpliceUnavailable}`);
  t.end();
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Spliced {
  /** the client's socket, connected through the adopted pair */
  client: net.Socket;
  /** the backend's end of the connection */
  backend: net.Socket;
  /** settles with onDone's result */
  result: Promise<NativeSpliceResult>;
  /** the handle, once adopted */
  splice: Promise<NativeSplice>;
  /** how many times onDone was called */
  calls(): number;
}

interface Options {
  idleMs?: number;
  /** runs on the proxy's two sockets before adoptSockets (a = from the client, b = to the backend) */
  beforeAdopt?: (a: net.Socket, b: net.Socket) => Promise<void> | void;
  /** runs on the backend's socket as soon as it is accepted */
  onBackend?: (s: net.Socket) => void;
  /** runs on the client's socket as soon as it is created */
  onClient?: (s: net.Socket) => void;
}

/** A backend and a proxy (adopting every connection to it), both stopped at teardown. */
async function proxyPair(t: Teardown, opts: Options = {}) {
  const backends: net.Socket[] = [];
  const waiting: Array<(s: net.Socket) => void> = [];
  const backend = await tcpServer(
    (s) => {
      opts.onBackend?.(s);
      const w = waiting.shift();
      if (w) w(s);
      else backends.push(s);
    },
    { allowHalfOpen: true },
  );
  const adopted: Array<{ result: Promise<NativeSpliceResult>; splice: Promise<NativeSplice>; calls: () => number }> = [];
  const proxy = await tcpServer(
    (a) => {
      a.pause();
      let calls = 0;
      let resolveSplice!: (s: NativeSplice) => void;
      const splice = new Promise<NativeSplice>((r) => (resolveSplice = r));
      const result = new Promise<NativeSpliceResult>((resolve) => {
        const b = net.connect({ port: backend.port, host: '127.0.0.1', allowHalfOpen: true }, async () => {
          await opts.beforeAdopt?.(a, b);
          resolveSplice(
            adoptSockets(a, b, opts.idleMs ?? 0, {
              spliceDone: (r) => {
                calls++;
                resolve(r);
              },
            }),
          );
        });
        b.on('error', () => {});
      });
      adopted.push({ result, splice, calls: () => calls });
    },
    { allowHalfOpen: true },
  );
  t.teardown(async () => {
    await proxy.close();
    await backend.close();
  });
  const nextBackend = () => new Promise<net.Socket>((resolve) => (backends.length ? resolve(backends.shift()!) : waiting.push(resolve)));
  return {
    backend,
    proxy,
    /** Opens one client connection through the proxy. */
    async connect(): Promise<Spliced> {
      const client = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
      client.on('error', () => {});
      opts.onClient?.(client);
      await once(client, 'connect');
      const b = await nextBackend();
      // The proxy's accept callback ran before the backend saw its connection.
      const entry = adopted[adopted.length - 1]!;
      return { client, backend: b, result: entry.result, splice: entry.splice, calls: entry.calls };
    },
  };
}

/** Collects everything a socket receives until its 'end' (or 'close'). */
function collect(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.resume(); // also when it was paused explicitly
  return new Promise((resolve) => {
    let done = false;
    const fin = () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    };
    s.once('end', fin);
    s.once('close', fin);
  });
}

/** Writes `data` in 64 KiB pieces with backpressure, then ends if asked. */
async function writeAll(s: net.Socket, data: Buffer, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += 65536) {
    if (s.destroyed) return;
    if (!s.write(data.subarray(off, off + 65536))) {
      await new Promise<void>((resolve) => {
        const go = () => {
          s.off('drain', go);
          s.off('close', go);
          resolve();
        };
        s.on('drain', go);
        s.on('close', go);
      });
    }
  }
  if (end && !s.destroyed) s.end();
}

/** Resolves once `s` has received at least n bytes (listening with 'data'). */
function received(s: net.Socket, n: number): Promise<void> {
  let got = 0;
  return new Promise((resolve) => {
    const on = (c: Buffer) => {
      got += c.length;
      if (got >= n) {
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
  });
}

const closed = (s: net.Socket): Promise<unknown> => (s.closed ? Promise.resolve() : once(s, 'close'));

/** The peer hung up on s: FIN ('end'), or a reset/close. */
function hungUp(s: net.Socket): Promise<void> {
  if (s.readableEnded || s.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('end', () => resolve());
    s.once('close', () => resolve());
    s.once('error', () => resolve());
  });
}
const fdCount = (): number => readdirSync('/proc/self/fd').length;

t.test('20 MB each way at once arrive byte-identical (SHA-256)', { skip }, async (t) => {
  const up = randomBytes(20 * 1024 * 1024);
  const down = randomBytes(20 * 1024 * 1024);
  const pair = await proxyPair(t);
  const c = await pair.connect();
  const atBackend = collect(c.backend);
  const atClient = collect(c.client);
  // Both directions at full speed at the same time; each side ends when done sending.
  await Promise.all([writeAll(c.client, up), writeAll(c.backend, down)]);
  const [gotUp, gotDown, r] = await Promise.all([atBackend, atClient, c.result]);
  t.equal(gotUp.length, up.length, 'the backend got every byte');
  t.equal(sha256(gotUp), sha256(up), 'client -> backend SHA-256 identical');
  t.equal(gotDown.length, down.length, 'the client got every byte');
  t.equal(sha256(gotDown), sha256(down), 'backend -> client SHA-256 identical');
  t.equal(r.end, 'done');
  t.equal(r.aToB, up.length, 'aToB counts every byte');
  t.equal(r.bToA, down.length, 'bToA counts every byte');
  t.equal(c.calls(), 1, 'onDone once');
});

t.test('small exchanges are copied (recv/send), a bulk direction is spliced from its first full 16 KiB read', { skip }, async (t) => {
  const pair = await proxyPair(t);
  const c = await pair.connect();
  const smallChunks = () => nativeSpliceStats()!.smallChunks;
  const before = smallChunks();
  for (let i = 0; i < 20; i++) {
    const ping = Buffer.from(`ping ${i}\n`);
    const atBackend = received(c.backend, ping.length);
    c.client.write(ping);
    await atBackend;
    const atClient = received(c.client, 5);
    c.backend.write(`pong${i % 10}`);
    await atClient;
  }
  const small = smallChunks();
  t.equal(small - before, 40, 'each of the 40 small messages was one copied chunk');
  const big = randomBytes(8 * 1024 * 1024);
  const atBackend = collect(c.backend);
  await writeAll(c.client, big);
  c.backend.end();
  const [got] = await Promise.all([atBackend, c.result]);
  t.equal(sha256(got), sha256(big), '8 MB arrived intact after the small ones');
  const copied = smallChunks() - small;
  t.ok(copied < 8, `then spliced: only ${copied} of the 8 MB's chunks were copied (512 if all had been)`);
});

t.test('half-close: the client ends, the server still answers, then ends', { skip }, async (t) => {
  const pair = await proxyPair(t, {
    onBackend: (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => s.end(`got ${Buffer.concat(chunks).length} bytes after your FIN`));
    },
  });
  const c = await pair.connect();
  const reply = collect(c.client);
  c.client.end(Buffer.alloc(5000, 1));
  t.equal((await reply).toString(), 'got 5000 bytes after your FIN');
  const r = await c.result;
  t.equal(r.end, 'done');
  t.equal(r.firstEnd, 'a', 'the client sent its FIN first');
  t.equal(r.aToB, 5000);
  t.equal(r.bToA, 'got 5000 bytes after your FIN'.length);
  await closed(c.client);
  t.pass('the client socket closed');
});

t.test('half-close: the server ends first, the client still sends, then ends', { skip }, async (t) => {
  let serverGot: Promise<Buffer> | null = null;
  const pair = await proxyPair(t, {
    onBackend: (s) => {
      serverGot = collect(s);
      s.end('banner, and that is all from me\n');
    },
  });
  const c = await pair.connect();
  const atClient = collect(c.client);
  t.equal((await atClient).toString(), 'banner, and that is all from me\n', 'the client got the FIN after the banner');
  c.client.end('the client still talks after the server FIN');
  t.equal((await serverGot!).toString(), 'the client still talks after the server FIN', 'the half-closed server still reads');
  const r = await c.result;
  t.equal(r.end, 'done');
  t.equal(r.firstEnd, 'b', 'the server sent its FIN first');
});

t.test('a client reset mid-stream closes the server side: a-error', { skip }, async (t) => {
  const pair = await proxyPair(t);
  const c = await pair.connect();
  const serverHungUp = hungUp(c.backend);
  c.backend.on('data', () => {}); // the server reads
  void writeAll(c.client, randomBytes(4 * 1024 * 1024), false);
  await received(c.backend, 256 * 1024);
  c.client.resetAndDestroy();
  const r = await c.result;
  t.equal(r.end, 'a-error');
  t.equal(r.error, 'ECONNRESET');
  t.equal(r.firstEnd, 'a');
  await serverHungUp;
  t.pass('the server side was closed');
});

t.test('a server reset mid-stream closes the client side: b-error', { skip }, async (t) => {
  const pair = await proxyPair(t);
  const c = await pair.connect();
  const clientHungUp = hungUp(c.client);
  void writeAll(c.backend, randomBytes(4 * 1024 * 1024), false);
  await received(c.client, 256 * 1024);
  c.backend.resetAndDestroy();
  const r = await c.result;
  t.equal(r.end, 'b-error');
  t.equal(r.error, 'ECONNRESET');
  t.equal(r.firstEnd, 'b');
  await clientHungUp;
  t.pass('the client side was closed');
});

t.test('idle timeout', { skip }, async (t) => {
  const IDLE = 300;
  // Generous upper bound: the loop checks at least every 250 ms; the machine may be busy.
  const LATE = IDLE + 250 + 750;

  t.test('a client that stops reading: a-timeout, both closed', async (t) => {
    const pair = await proxyPair(t, { idleMs: IDLE, onClient: (s) => s.pause() });
    const c = await pair.connect();
    // More than every buffer on the way can hold: the backend's writes stall.
    let lastProgress = performance.now();
    const sending = writeAll(c.backend, randomBytes(32 * 1024 * 1024));
    c.backend.on('drain', () => (lastProgress = performance.now()));
    const r = await c.result;
    const after = performance.now() - lastProgress;
    t.equal(r.end, 'a-timeout', 'the client is the side holding things up');
    t.ok(after < LATE, `ended ${Math.round(after)} ms after the last progress`);
    c.client.resume(); // reads what was on its way, then sees the end
    await Promise.all([hungUp(c.client), hungUp(c.backend), sending]);
    t.pass('both sides closed');
  });

  t.test('a server that stops reading: b-timeout, both closed', async (t) => {
    const pair = await proxyPair(t, { idleMs: IDLE, onBackend: (s) => s.pause() });
    const c = await pair.connect();
    const sending = writeAll(c.client, randomBytes(32 * 1024 * 1024));
    const r = await c.result;
    t.equal(r.end, 'b-timeout', 'the server is the side holding things up');
    c.backend.resume();
    await Promise.all([hungUp(c.client), hungUp(c.backend), sending]);
    t.pass('both sides closed');
  });

  t.test('a quiet connection: the side silent for longer times out', async (t) => {
    // The server greets; 100 ms later the client answers; then nothing.
    const pair = await proxyPair(t, { idleMs: IDLE, onBackend: (s) => s.write('hello\n') });
    const c = await pair.connect();
    const clientHungUp = hungUp(c.client);
    await received(c.client, 6);
    await new Promise((r) => setTimeout(r, 100)); // the scenario: the client answers later
    const start = performance.now();
    c.client.write('hi\n');
    await received(c.backend, 3);
    const r = await c.result;
    const elapsed = performance.now() - start;
    t.equal(r.end, 'b-timeout', 'the server said nothing for longer');
    t.ok(elapsed >= IDLE - 5, `not before the idle time (${Math.round(elapsed)} ms)`);
    t.ok(elapsed < LATE, `not long after it (${Math.round(elapsed)} ms)`);
    await clientHungUp;
  });
});

t.test('abort() closes both sides: aborted; abort after done is a no-op', { skip }, async (t) => {
  const pair = await proxyPair(t);
  const c = await pair.connect();
  const clientHungUp = hungUp(c.client);
  const serverHungUp = hungUp(c.backend);
  c.client.write('ping');
  await received(c.backend, 4);
  const splice = await c.splice;
  splice.abort();
  const r = await c.result;
  t.equal(r.end, 'aborted');
  t.equal(r.firstEnd, null, 'neither side had ended');
  t.equal(r.aToB, 4);
  await Promise.all([clientHungUp, serverHungUp]);
  t.pass('both sides closed');
  splice.abort();
  splice.abort();
  await new Promise((r) => setImmediate(r));
  t.equal(c.calls(), 1, 'onDone was called exactly once');
});

t.test('abort() while still flushing JS writes: aborted, both closed', { skip }, async (t) => {
  const peers: net.Socket[] = [];
  const backend = await tcpServer((s) => peers.push(s)); // accepts, never reads
  t.teardown(() => backend.close());
  const a = net.connect(backend.port, '127.0.0.1');
  const b = net.connect(backend.port, '127.0.0.1');
  a.on('error', () => {});
  b.on('error', () => {});
  await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  // A write that cannot complete: the peer does not read, so adopt waits for the flush.
  a.write(Buffer.alloc(64 * 1024 * 1024));
  let calls = 0;
  const result = new Promise<NativeSpliceResult>((resolve) => {
    const splice = adoptSockets(a, b, 0, {
      spliceDone: (r) => {
        calls++;
        resolve(r);
      },
    });
    splice.abort();
    splice.abort();
  });
  const r = await result;
  t.equal(r.end, 'aborted');
  t.equal(r.firstEnd, null);
  await Promise.all([closed(a), closed(b)]);
  t.pass('both sockets closed');
  t.equal(calls, 1, 'onDone once');
});

t.test('bytes already in JS (written before adopt, read before adopt) arrive once, in order', { skip }, async (t) => {
  const fromClientEarly = randomBytes(200 * 1024); // partly in a's JS buffer at adopt, partly still in the kernel
  const fromServerEarly = Buffer.from('SERVER-BANNER\n'); // in b's JS buffer at adopt
  const toClientEarly = randomBytes(8 * 1024 * 1024); // written by the proxy to a just before adopt: not flushed yet
  const toServerEarly = Buffer.from('PROXY-HEADER\n'); // written by the proxy to b just before adopt
  let wroteEarly!: () => void;
  const early = new Promise<void>((r) => (wroteEarly = r));
  let bufferedAtAdopt = { a: 0, b: 0 };
  const pair = await proxyPair(t, {
    onBackend: (s) => s.write(fromServerEarly),
    onClient: (s) => s.pause(),
    beforeAdopt: async (a, b) => {
      const buffered = (s: net.Socket, n: number) =>
        new Promise<void>((resolve) => {
          const check = () => {
            if (s.readableLength < n) return;
            s.off('readable', check);
            resolve();
          };
          s.on('readable', check);
          check();
        });
      await Promise.all([buffered(a, 16 * 1024), buffered(b, fromServerEarly.length)]);
      bufferedAtAdopt = { a: a.readableLength, b: b.readableLength };
      a.write(toClientEarly);
      b.write(toServerEarly);
      t.ok(a.writableLength > 0, 'the write to the client is still pending when adoptSockets is called');
      wroteEarly();
    },
  });
  const c = await pair.connect();
  const atBackend = collect(c.backend);
  c.client.write(fromClientEarly);
  await early;
  const atClient = collect(c.client); // starts reading: the proxy's pending write can complete
  await c.splice;
  c.client.end('LATE-FROM-CLIENT');
  const gotB = await atBackend; // the client's FIN came through
  c.backend.end('LATE-FROM-SERVER');
  const [gotA, r] = await Promise.all([atClient, c.result]);
  const wantB = Buffer.concat([toServerEarly, fromClientEarly, Buffer.from('LATE-FROM-CLIENT')]);
  const wantA = Buffer.concat([toClientEarly, fromServerEarly, Buffer.from('LATE-FROM-SERVER')]);
  t.ok(bufferedAtAdopt.a >= 16 * 1024 && bufferedAtAdopt.b > 0, `bytes were in JS buffers at adopt (a ${bufferedAtAdopt.a}, b ${bufferedAtAdopt.b})`);
  t.equal(gotB.length, wantB.length, 'the backend got each byte once');
  t.ok(gotB.equals(wantB), 'the backend got them in order');
  t.equal(gotA.length, wantA.length, 'the client got each byte once');
  t.ok(gotA.equals(wantA), 'the client got them in order');
  t.equal(r.end, 'done');
  t.equal(r.aToB, fromClientEarly.length + 'LATE-FROM-CLIENT'.length, 'aToB: every byte from a the native loop delivered');
  t.equal(r.bufferedAToB, bufferedAtAdopt.a, 'bufferedAToB: those JS had read before adopt');
  t.equal(r.bToA, fromServerEarly.length + 'LATE-FROM-SERVER'.length);
  t.equal(r.bufferedBToA, fromServerEarly.length);
});

t.test('1,000 connections at once, each echoing 4 KB; idle ones hold no pipe; no fd left behind', { skip }, async (t) => {
  const N = 1000;
  const results: Array<Promise<NativeSpliceResult>> = [];
  const echo = await tcpServer((s) => s.pipe(s), { allowHalfOpen: true });
  const proxy = await tcpServer(
    (a) => {
      a.pause();
      results.push(
        new Promise((resolve) => {
          const b = net.connect({ port: echo.port, host: '127.0.0.1', allowHalfOpen: true }, () => adoptSockets(a, b, 0, { spliceDone: resolve }));
          b.on('error', () => {});
        }),
      );
    },
    { allowHalfOpen: true },
  );
  const stopServers = async () => {
    await proxy.close();
    await echo.close();
  };
  t.teardown(stopServers);

  /** One client: sends 4 KB, waits for the echo, returns what came back and a way to finish. */
  const roundTrip = async () => {
    const payload = randomBytes(4096);
    const s = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => {});
    const chunks: Buffer[] = [];
    let got = 0;
    let echoed!: () => void;
    const full = new Promise<void>((r) => (echoed = r));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) echoed();
    });
    await once(s, 'connect');
    s.write(payload);
    await full;
    return { s, ok: Buffer.concat(chunks).equals(payload) };
  };

  // Warm-up: the native thread (epoll + eventfd) exists before the baseline.
  const warm = await roundTrip();
  warm.s.end();
  await Promise.all([closed(warm.s), results[0]]);
  results.length = 0;
  const fdsBefore = fdCount();
  const pooledBefore = nativeSpliceStats()!.pipesPooled;

  // Connect in waves of 100 (the listen backlog), all held open together.
  const clients: Array<{ s: net.Socket; ok: boolean }> = [];
  for (let i = 0; i < N; i += 100) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(100, N - i) }, roundTrip))));
  }
  t.equal(clients.filter((c) => c.ok).length, N, 'every connection echoed its 4 KB intact');
  await new Promise((r) => setImmediate(r));
  const during = nativeSpliceStats()!;
  t.ok(during.live >= N, `all ${N} live in the native loop at once (${during.live})`);
  t.equal(during.pipesInUse, 0, 'idle connections hold no pipe');
  t.ok(during.pipesPooled <= 128, `the pipe pool is capped (${during.pipesPooled})`);

  for (const c of clients) c.s.end();
  const all = await Promise.all(results);
  await Promise.all(clients.map((c) => closed(c.s)));
  t.equal(all.filter((r) => r.end === 'done').length, N, 'every connection ended done');
  t.equal(all.filter((r) => r.aToB === 4096 && r.bToA === 4096).length, N, 'byte counts per connection');
  await stopServers();
  const after = nativeSpliceStats()!;
  t.equal(after.live, 0, 'nothing live');
  const grownPool = 2 * (after.pipesPooled - pooledBefore);
  // The two listening sockets, counted in the baseline, are closed now.
  t.equal(fdCount() - grownPool, fdsBefore - 2, `no fd leaked (${fdsBefore} before, ${fdCount()} after, pool +${grownPool / 2} pipes)`);
});

const nativeModule = fileURLToPath(new URL('../../src/splice/native.ts', import.meta.url));

/** A proxy in its own process (so its RSS and its exit can be watched): adopts every connection to BACKEND_PORT. */
function childProxy(t: Teardown, backendPort: number, once_: boolean) {
  const code = `
    import net from 'node:net';
    import { adoptSockets } from ${JSON.stringify(nativeModule)};
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
      const b = net.connect({ port: ${backendPort}, host: '127.0.0.1', allowHalfOpen: true }, () => {
        adoptSockets(a, b, 0, { spliceDone: (r) => process.stdout.write('result ' + JSON.stringify(r) + '\\n') });
        process.stdout.write('adopted\\n');
        if (${once_}) server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let buf = '';
  const waiters: Array<{ prefix: string; resolve: (line: string) => void }> = [];
  const lines: string[] = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.findIndex((x) => line.startsWith(x.prefix));
      if (w >= 0) waiters.splice(w, 1)[0]!.resolve(line);
      else lines.push(line);
    }
  });
  const line = (prefix: string) =>
    new Promise<string>((resolve) => {
      const i = lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) resolve(lines.splice(i, 1)[0]!);
      else waiters.push({ prefix, resolve });
    });
  return { child, exited, line };
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

t.test('a slow reader: 50 MB from the backend, the proxy process RSS stays flat', { skip }, async (t) => {
  const TOTAL = 50 * 1024 * 1024;
  const backend = await tcpServer((s) => void writeAll(s, randomBytes(TOTAL)), { allowHalfOpen: true });
  t.teardown(() => backend.close());
  const proxy = childProxy(t, backend.port, false);
  const port = Number((await proxy.line('port ')).slice(5));
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => {});
  await proxy.line('adopted');
  const pid = proxy.child.pid!;
  const base = rssOf(pid);
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
  t.teardown(() => clearInterval(sampler));
  // About 25 MB/s: read 256 KB, then pause 10 ms.
  let got = 0;
  let sinceBreak = 0;
  client.on('data', (d: Buffer) => {
    got += d.length;
    sinceBreak += d.length;
    if (sinceBreak >= 256 * 1024) {
      sinceBreak = 0;
      client.pause();
      setTimeout(() => client.resume(), 10);
    }
  });
  await once(client, 'end');
  client.end();
  const result = JSON.parse((await proxy.line('result ')).slice(7)) as NativeSpliceResult;
  clearInterval(sampler);
  t.equal(got, TOTAL, 'the client got all 50 MB');
  t.equal(result.bToA, TOTAL);
  const growth = peak - base;
  t.ok(growth < 16 * 1024 * 1024, `proxy RSS grew ${(growth / 1048576).toFixed(1)} MB over ${(base / 1048576).toFixed(0)} MB (pipes only, no userspace buffering)`);
});

t.test('the process stays up while a native connection is live and exits on its own after', { skip }, async (t) => {
  const echo = await tcpServer((s) => s.pipe(s), { allowHalfOpen: true });
  t.teardown(() => echo.close());
  // The child closes its listening socket right after adopting: from then on only
  // the native connection (its ref'd threadsafe function) keeps it alive.
  const proxy = childProxy(t, echo.port, true);
  const port = Number((await proxy.line('port ')).slice(5));
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => {});
  await proxy.line('adopted');
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 150)); // idle gaps: the child must not exit in them
    client.write('ping');
    await received(client, 4);
  }
  t.equal(proxy.child.exitCode, null, 'still running while the connection is live');
  client.end();
  const result = JSON.parse((await proxy.line('result ')).slice(7)) as NativeSpliceResult;
  t.equal(result.end, 'done');
  t.equal(result.aToB, 12);
  const code = await Promise.race([proxy.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
  t.equal(code, 0, 'the child exited by itself once the connection was done');
});

t.test('no pipe to be had (EMFILE): bytes go through recv()/send() instead, intact', { skip }, async (t) => {
  // A child with a low fd limit that uses up every fd after the adopt, then echoes 2 MB through the proxy.
  const code = `
    import net from 'node:net';
    import { openSync, closeSync } from 'node:fs';
    import { createHash, randomBytes } from 'node:crypto';
    import { adoptSockets, nativeSpliceStats } from ${JSON.stringify(nativeModule)};
    const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
    const echoPort = await listen(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)));
    let adopted, done;
    const adoptedP = new Promise((r) => (adopted = r));
    const doneP = new Promise((r) => (done = r));
    const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
      const b = net.connect({ port: echoPort, host: '127.0.0.1', allowHalfOpen: true }, () => {
        adoptSockets(a, b, 0, { spliceDone: done });
        adopted();
      });
    });
    const client = net.connect({ port: await listen(proxy), host: '127.0.0.1', allowHalfOpen: true });
    await adoptedP;
    await new Promise((r) => setImmediate(r));
    const dummies = [];
    try { for (;;) dummies.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
    const payload = randomBytes(2 * 1024 * 1024);
    const chunks = [];
    client.on('data', (d) => chunks.push(d));
    const ended = new Promise((r) => client.on('end', r));
    client.end(payload);
    await ended;
    const r = await doneP;
    const stats = nativeSpliceStats();
    for (const fd of dummies) closeSync(fd);
    const got = Buffer.concat(chunks);
    const h = (b) => createHash('sha256').update(b).digest('hex');
    console.log(JSON.stringify({ same: got.length === payload.length && h(got) === h(payload), dummies: dummies.length, r, stats }));
    process.exit(0);
  `;
  const report = await limitedChild<{
    same: boolean;
    dummies: number;
    r: NativeSpliceResult;
    stats: { fallbackChunks: number; pipesCreated: number };
  }>(t, 128, code);
  t.ok(report.dummies > 0, `every free fd was taken (${report.dummies})`);
  t.equal(report.stats.pipesCreated, 0, 'pipe2() never succeeded');
  t.ok(report.stats.fallbackChunks > 0, `chunks went through the per-thread buffer (${report.stats.fallbackChunks})`);
  t.ok(report.same, '2 MB echoed intact');
  t.equal(report.r.end, 'done');
  t.equal(report.r.aToB, 2 * 1024 * 1024);
});

t.test('counters(): bytes each way while the connection is open, what the loop holds, the same totals at the end', { skip }, async (t) => {
  const pair = await proxyPair(t, { onClient: (s) => s.pause() });
  const c = await pair.connect();
  const splice = await c.splice;
  c.client.write(Buffer.alloc(1000, 1));
  await received(c.backend, 1000);
  // The loop stores its count just after the splice that delivered: the backend can have the bytes a moment before.
  await eventually('the count of bytes delivered', () => splice.counters().toB === 1000);
  t.match(splice.counters(), { fromA: 1000, toB: 1000, fromB: 0, toA: 0, heldUserland: 0, heldInPipes: 0 }, 'live: 1,000 bytes from the client, delivered');
  // The client does not read: what the backend sends beyond the buffers on the way waits in the loop's pipe.
  const sending = writeAll(c.backend, randomBytes(32 * 1024 * 1024), false);
  await eventually('bytes held in a pipe', () => splice.counters().heldInPipes > 0);
  const stuck = splice.counters();
  t.ok(stuck.heldInPipes <= 1024 * 1024, `the loop holds at most one pipe for the stalled direction (${stuck.heldInPipes} bytes)`);
  t.equal(stuck.heldUserland, 0, 'and nothing in userland');
  t.ok(stuck.fromB >= stuck.toA + stuck.heldInPipes, `bytes read from the backend (${stuck.fromB}) = delivered (${stuck.toA}) + in the pipe`);
  const atClient = collect(c.client);
  await sending;
  c.backend.end();
  c.client.end();
  const [got, r] = await Promise.all([atClient, c.result]);
  t.equal(got.length, 32 * 1024 * 1024, 'the client got all 32 MB once it read');
  t.same(r.bytes, { fromA: 1000, toB: 1000, fromB: 32 * 1024 * 1024, toA: 32 * 1024 * 1024 }, 'the result has the totals');
  t.match(splice.counters(), { ...r.bytes, heldUserland: 0, heldInPipes: 0 }, 'counters() after the end: the totals');
});

t.test('slow readers cannot take every descriptor: at most pipesMax pipes, the rest through recv()/send(), intact', { skip }, async (t) => {
  // A child whose open-file limit gives pipesMax 6 (96 / 16): 10 clients that do not read, each sent 12 MB (more than the buffers on the way hold).
  const code = `
    import net from 'node:net';
    import { createHash } from 'node:crypto';
    import { adoptSockets, nativeSpliceStats } from ${JSON.stringify(nativeModule)};
    const N = 10, SIZE = 12 * 1024 * 1024;
    const block = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < block.length; i++) block[i] = (i * 7 + (i >> 11)) & 255;
    const expected = createHash('sha256');
    for (let at = 0; at < SIZE; at += block.length) expected.update(block);
    const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
    const backendPort = await listen(net.createServer((s) => {
      let at = 0;
      const pump = () => { while (at < SIZE) { at += block.length; if (!s.write(block)) return; } s.end(); };
      s.on('drain', pump);
      pump();
    }));
    const results = [];
    const proxyPort = await listen(net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
      results.push(new Promise((done) => {
        const b = net.connect({ port: backendPort, host: '127.0.0.1', allowHalfOpen: true }, () => adoptSockets(a, b, 0, { spliceDone: done }));
      }));
    }));
    const clients = [];
    for (let i = 0; i < N; i++) {
      const s = net.connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
      s.pause();
      clients.push(s);
    }
    let most = 0;
    // Until a refused direction has copied its first chunk too: the thread counts the refusal a moment before the
    // copy, so the counters read in between show one and not the other. Bounded, so a missing copy is reported.
    const deadline = Date.now() + 10000;
    for (;;) {
      const st = nativeSpliceStats();
      most = Math.max(most, st.pipesInUse + st.pipesPooled);
      if (st.live === N && st.pipesRefused > 0 && st.pipesInUse === st.pipesMax && (st.fallbackChunks > 0 || Date.now() > deadline)) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const stalled = nativeSpliceStats();
    const got = await Promise.all(clients.map((s) => new Promise((resolve) => {
      const h = createHash('sha256');
      let n = 0;
      s.on('data', (d) => { n += d.length; h.update(d); });
      s.on('end', () => { s.end(); resolve(n === SIZE && h.digest('hex') === expected.copy().digest('hex')); });
      s.resume();
    })));
    const ends = (await Promise.all(results)).map((r) => r.end);
    console.log(JSON.stringify({ intact: got.filter(Boolean).length, ends, most, stalled, after: nativeSpliceStats() }));
    process.exit(0);
  `;
  const report = await limitedChild<{
    intact: number;
    ends: string[];
    most: number;
    stalled: { pipesMax: number; pipesInUse: number; pipesRefused: number; fallbackChunks: number };
    after: { live: number; pipesInUse: number };
  }>(t, 96, code);
  t.equal(report.stalled.pipesMax, 6, 'pipesMax is a sixteenth of the open-file limit');
  t.ok(report.most <= report.stalled.pipesMax, `never more than pipesMax pipes, in use and pooled (${report.most})`);
  t.ok(report.stalled.pipesRefused > 0, `pipes were refused while ${report.stalled.pipesInUse} were held by stalled directions`);
  t.ok(report.stalled.fallbackChunks > 0, `the other directions went through recv()/send() (${report.stalled.fallbackChunks} chunks)`);
  t.equal(report.intact, 10, 'every client got its 12 MB intact once it read');
  t.same(report.ends, Array(10).fill('done'));
  t.match(report.after, { live: 0, pipesInUse: 0 });
});

/**
 * A child (open-file limit 64) whose proxy fills its descriptors just before the hand-over, so the dup() fails:
 * `server` picks how the proxy's server side was made (a JS socket, or a descriptor from nativeConnect).
 */
function refusedHandOver(t: Parameters<typeof limitedChild>[0], server: 'socket' | 'nativeConnect') {
  const spliceModule = fileURLToPath(new URL('../../src/splice/splice.ts', import.meta.url));
  const connect =
    server === 'socket'
      ? `const b = net.connect({ port: echoPort, host: '127.0.0.1', allowHalfOpen: true }, () => then((owner) => adoptSockets(a, b, 0, owner), b));`
      : `nativeConnect('127.0.0.1', echoPort, (error, fd) => { if (error) throw error; then((owner) => adoptConnected(a, fd, Buffer.from('REPLAY-'), 0, owner), null); });`;
  const code = `
    import net from 'node:net';
    import { openSync, closeSync } from 'node:fs';
    import { adoptConnected, adoptSockets, nativeConnect, startNativeSplice } from ${JSON.stringify(nativeModule)};
    import { splice } from ${JSON.stringify(spliceModule)};
    if (startNativeSplice() !== null) throw new Error('no native splice');
    const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
    const echoPort = await listen(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)));
    let report;
    const reported = new Promise((r) => (report = r));
    const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
      // The client's first bytes are read into a's JS buffer before the adopt.
      const then = (adopt, b) => {
        const ready = () => {
          if (a.readableLength < 5) return;
          a.off('readable', ready);
          const buffered = a.readableLength;
          const dummies = [];
          try { for (;;) dummies.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
          let done = 0;
          adopt({
            spliceDone: () => done++,
            spliceRefused: (a2, b2, reason) => {
              for (const fd of dummies) closeSync(fd);
              report({ reason, sameA: a2 === a, sameB: b2 === b, socketB: b2 instanceof net.Socket, buffered, readable: a2.readableLength, paused: a2.isPaused(), done });
              splice(a2, b2);
            },
          });
        };
        a.on('readable', ready);
      };
      ${connect}
    });
    const client = net.connect({ port: await listen(proxy), host: '127.0.0.1', allowHalfOpen: true });
    client.write('EARLY');
    const r = await reported;
    const chunks = [];
    client.on('data', (d) => chunks.push(d));
    client.end('LATE');
    await new Promise((res) => client.on('end', res));
    console.log(JSON.stringify({ ...r, echoed: Buffer.concat(chunks).toString() }));
    process.exit(0);
  `;
  type Report = { reason: string; sameA: boolean; sameB: boolean; socketB: boolean; buffered: number; readable: number; paused: boolean; done: number; echoed: string };
  return limitedChild<Report>(t, 64, code);
}

t.test('no descriptor for the dup() at the hand-over (EMFILE): onRefused gets both sockets back as they were, buffered bytes in front', { skip }, async (t) => {
  const report = await refusedHandOver(t, 'socket');
  t.equal(report.reason, 'EMFILE', 'refused: EMFILE');
  t.ok(report.sameA && report.sameB, 'the same two sockets came back');
  t.equal(report.readable, report.buffered, 'what JS had buffered is in front of them again');
  t.ok(report.paused, 'paused');
  t.equal(report.done, 0, 'onDone was not called');
  t.equal(report.echoed, 'EARLYLATE', 'the JavaScript splice then carried every byte, in order');
});

t.test('the same for a server side made by nativeConnect: it comes back as a socket, with the replay written to it', { skip }, async (t) => {
  const report = await refusedHandOver(t, 'nativeConnect');
  t.equal(report.reason, 'EMFILE', 'refused: EMFILE');
  t.ok(report.sameA, 'the client socket came back');
  t.ok(report.socketB, 'and the server side as a socket made from its descriptor');
  t.equal(report.readable, report.buffered, 'what JS had buffered from the client is in front again');
  t.ok(report.paused, 'paused');
  t.equal(report.done, 0, 'onDone was not called');
  t.equal(report.echoed, 'REPLAY-EARLYLATE', 'the replay reached the server first, then every client byte, in order');
});
