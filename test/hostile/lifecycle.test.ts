/**
 * Issue 7, item 5: lifecycle under load, through the real binary.
 *
 * SIGHUP every second while a mixed load runs (long raw TCP streams that span
 * several reloads, short ones back to back, TLS-terminated streams, http-mode
 * downloads and uploads on kept-alive connections), the config switching
 * between two versions that move routes and servers: no accepted connection
 * may be cut and every byte must arrive (SHA-256 per stream, per response,
 * per upload).
 *
 * SIGTERM under load: listeners close at once, in-flight streams finish and
 * the process exits 0 as soon as they have (well within `grace`); a
 * connection that would outlast `grace` is closed at the deadline and logged
 * with termination `shutdown`.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { makeCerts } from '../helpers/certs.js';
import { echoServer } from '../helpers/servers.js';
import { connectOnly, echoStream, fmt, mb, rssSampler, scale, scenario, sha256, sleep, startBinary } from './lib.js';

const certs = makeCerts({ 'life.test': ['life.test'] });
const RELOAD_SECONDS = scale(4, 30);

/** The HTTP servers: GET /data/N answers N random bytes with their SHA-256 in a header; POST /sha answers the SHA-256 of the body. */
function httpServer(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      req.on('data', (d: Buffer) => hash.update(d));
      req.on('end', () => res.end(hash.digest('hex')));
      return;
    }
    req.resume();
    const [, kind, n] = req.url!.split('/');
    if (kind === 'slow') return void setTimeout(() => res.end('slow answer'), Number(n));
    const body = randomBytes(Number(n ?? 1000));
    res.writeHead(200, { 'content-length': body.length, 'x-sha256': sha256(body) });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
const addressOf = (server: http.Server): string => `127.0.0.1:${(server.address() as net.AddressInfo).port}`;

function config(version: 'a' | 'b', addresses: { echo1: string; echo2: string; web1: string; web2: string }, grace = '5s') {
  return {
    global: { grace },
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        // Every client here speaks first, so the delay decides nothing; it only has to outlast a stall of this
        // process, which hosts the clients as well (a client stalled before its first write is, to sniffmux, silent).
        inspect: { delay: '2s' },
        tls: { certificates: [{ cert: certs['life.test']!.cert, key: certs['life.test']!.key }] },
        rules: [
          { if: { protocol: 'http' }, use: version === 'a' ? 'web-a' : 'web-b' },
          { if: { protocol: 'ssh' }, use: 'echo' },
        ],
        default: 'echo',
      },
    ],
    backends: [
      {
        name: 'echo',
        balance: version === 'a' ? 'roundrobin' : 'leastconn',
        servers:
          version === 'a'
            ? [{ name: 'e1', address: addresses.echo1 }]
            : [
                { name: 'e1', address: addresses.echo1 },
                { name: 'e2', address: addresses.echo2, weight: 2 },
              ],
      },
      { name: 'web-a', mode: 'http', servers: [{ name: 'w1', address: addresses.web1 }] },
      { name: 'web-b', mode: 'http', http: { forwardedFor: true }, servers: [{ name: 'w2', address: addresses.web2 }] },
    ],
  };
}

interface Tally {
  streams: number;
  bytes: number;
  lost: number;
  errors: string[];
}
const tally = (): Tally => ({ streams: 0, bytes: 0, lost: 0, errors: [] });

/** Runs `once` back to back in `parallel` workers until `running()` says stop. */
async function workers(parallel: number, running: () => boolean, once: (worker: number) => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: parallel }, async (_, w) => {
      while (running()) await once(w);
    }),
  );
}

/** One http-mode request on a kept-alive agent: a download (checked against the server's X-SHA256) or an upload (the server answers the SHA-256 it got). */
function httpCheck(port: number, agent: http.Agent, kind: 'get' | 'post', into: Tally): Promise<void> {
  const size = 1000 + Math.floor(Math.random() * 200_000);
  const body = kind === 'post' ? randomBytes(size) : null;
  const fail = (why: string): void => {
    into.lost += size;
    into.errors.push(`${kind} of ${size} bytes: ${why}`);
  };
  return new Promise((resolve) => {
    const req = http.request({ port, host: '127.0.0.1', agent, method: kind === 'post' ? 'POST' : 'GET', path: `/data/${size}` }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        into.streams++;
        into.bytes += size;
        const got = Buffer.concat(chunks);
        if (res.statusCode !== 200) fail(`status ${res.statusCode}`);
        else if (kind === 'get' && (got.length !== size || sha256(got) !== res.headers['x-sha256'])) fail(`${got.length} bytes arrived, SHA-256 differs`);
        else if (kind === 'post' && got.toString() !== sha256(body!)) fail('the server got different bytes');
        resolve();
      });
      res.on('error', (error) => {
        fail(error.message);
        resolve();
      });
    });
    req.on('error', (error) => {
      into.streams++;
      fail(error.message);
      resolve();
    });
    req.end(body ?? undefined);
  });
}

t.test('lifecycle', async (t) => {
  const echo1 = await echoServer();
  const echo2 = await echoServer();
  const web1 = await httpServer();
  const web2 = await httpServer();
  const addresses = { echo1: echo1.address, echo2: echo2.address, web1: addressOf(web1), web2: addressOf(web2) };
  t.teardown(async () => {
    await Promise.all([echo1.close(), echo2.close()]);
    for (const w of [web1, web2]) {
      w.closeAllConnections();
      w.close();
    }
  });

  await scenario(t, 'lifecycle: SIGHUP every second under mixed load', async (t) => {
    const mux = await startBinary(config('a', addresses));
    t.teardown(() => mux.stop());
    const port = mux.port('fe');
    const rss = rssSampler(mux.pid);
    let running = true;
    const long = tally();
    const short = tally();
    const secure = tally();
    const web = tally();
    const add = (into: Tally, size: number, r: { lost: number; error: string | null }): void => {
      into.streams++;
      into.bytes += size;
      into.lost += r.lost;
      if (r.error) into.errors.push(r.error);
    };
    const agents = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const load = Promise.all([
      // Streams of ~2 s each: every one spans a reload or two.
      workers(6, () => running, async (w) => {
        const size = 256 * 1024;
        add(long, size, await echoStream(port, size, { banner: 'SSH-2.0-long\r\n', chunk: 2048, gapMs: 15, localAddress: `127.0.3.${w + 1}`, timeoutMs: 30_000 }));
      }),
      workers(4, () => running, async (w) => {
        const size = 4096 + Math.floor(Math.random() * 60_000);
        add(short, size, await echoStream(port, size, { localAddress: `127.0.4.${w + 1}`, timeoutMs: 10_000 }));
      }),
      workers(2, () => running, async (w) => {
        const size = 128 * 1024;
        add(
          secure,
          size,
          await echoStream(port, size, { banner: 'SSH-2.0-tls\r\n', chunk: 4096, gapMs: 10, localAddress: `127.0.5.${w + 1}`, tls: { servername: 'life.test' }, timeoutMs: 30_000 }),
        );
      }),
      workers(4, () => running, (w) => httpCheck(port, agents[w]!, w % 2 === 0 ? 'get' : 'post', web)),
    ]);
    let reloads = 0;
    for (let s = 0; s < RELOAD_SECONDS; s++) {
      await sleep(1000);
      mux.writeConfig(config(s % 2 === 0 ? 'b' : 'a', addresses));
      mux.child.kill('SIGHUP');
      reloads++;
    }
    await mux.waitForLog(() => mux.count((l) => l.msg === 'config reloaded') >= reloads, 5000);
    await sleep(500);
    running = false;
    await load;
    for (const a of agents) a.destroy();
    const peak = rss.stop();
    const all = [long, short, secure, web];
    const lost = all.reduce((n, x) => n + x.lost, 0);
    const streams = all.reduce((n, x) => n + x.streams, 0);
    const bytes = all.reduce((n, x) => n + x.bytes, 0);
    t.equal(mux.count((l) => l.msg === 'config reloaded'), reloads, `${reloads} reloads, each logged`);
    t.equal(mux.count((l) => l.msg === 'reload failed: keeping the running config'), 0, 'none failed');
    for (const [name, x] of Object.entries({ long, short, tls: secure, http: web })) {
      t.ok(x.streams > 0, `${name}: ${fmt(x.streams)} streams`);
      t.equal(x.errors.length, 0, `${name}: none cut ${x.errors.slice(0, 3).join('; ')}`);
      t.equal(x.lost, 0, `${name}: no byte lost`);
    }
    const cut = mux.logs.filter((l) => l.msg === 'connection' && !['client-close', 'server-close'].includes(String(l.termination)));
    t.same(
      cut.map((l) => l.termination),
      [],
      'every connection ended as its client or server chose',
    );
    const usedB = mux.logs.some((l) => l.msg === 'connection' && l.server === 'e2');
    t.ok(usedB, 'the reloaded config took effect for new connections');
    return {
      load: `${fmt(streams)} streams (${mb(bytes)} MB): TCP spanning reloads, short TCP, TLS-terminated, http-mode GET/POST kept alive`,
      faults: `SIGHUP every second for ${RELOAD_SECONDS} s (${reloads} reloads, routes and servers alternating)`,
      bytesLost: lost,
      maxRssMB: mb(peak),
      rssOf: 'sniffmux' as const,
      figures: `0 connections cut; ${fmt(long.streams)} long, ${fmt(short.streams)} short, ${fmt(secure.streams)} TLS, ${fmt(web.streams)} HTTP exchanges, SHA-256 checked`,
    };
  });

  await scenario(t, 'lifecycle: SIGTERM under load', async (t) => {
    const mux = await startBinary(config('a', addresses, '4s'));
    t.teardown(() => mux.stop());
    const port = mux.port('fe');
    const rss = rssSampler(mux.pid);
    // In flight when the signal comes: streams that need about a second more.
    const inflight = Array.from({ length: scale(20, 100) }, (_, i) =>
      echoStream(port, 96 * 1024, { banner: 'SSH-2.0-drain\r\n', chunk: 2048, gapMs: 20, localAddress: `127.0.6.${(i % 50) + 1}`, timeoutMs: 15_000 }),
    );
    await sleep(300);
    const signalled = performance.now();
    mux.child.kill('SIGTERM');
    await mux.waitForLog((l) => l.msg === 'stopping: draining connections');
    await sleep(100);
    const refused = await connectOnly(port).then(
      (s) => (s.destroy(), false),
      () => true,
    );
    const results = await Promise.all(inflight);
    const code = await mux.exited();
    const exitedAfter = performance.now() - signalled;
    const peak = rss.stop();
    const lost = results.reduce((n, r) => n + r.lost, 0);
    t.ok(refused, 'new connections are refused once stopping');
    t.equal(results.filter((r) => r.error).length, 0, `all ${results.length} in-flight streams finished`);
    t.equal(lost, 0, 'no byte lost');
    t.equal(code, 0, 'exit code 0');
    t.ok(exitedAfter < 4000, `exited ${Math.round(exitedAfter)} ms after SIGTERM: when the last stream ended, within grace (4 s)`);

    // http mode: an idle kept-alive connection does not hold the drain, a request in flight is answered first.
    const web = await startBinary(config('a', addresses, '4s'));
    t.teardown(() => web.stop());
    const idleAgent = new http.Agent({ keepAlive: true });
    const busyAgent = new http.Agent({ keepAlive: true });
    const get = (path: string, agent: http.Agent) =>
      new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        http
          .get({ port: web.port('fe'), host: '127.0.0.1', agent, path }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
          })
          .on('error', reject);
      });
    await get('/data/100', idleAgent); // leaves an idle kept-alive connection
    const slow = get('/slow/600', busyAgent); // in flight, on another connection, when the signal comes
    await sleep(150);
    const httpSignalled = performance.now();
    web.child.kill('SIGTERM');
    const answered = await slow;
    const httpCode = await web.exited();
    const httpExit = performance.now() - httpSignalled;
    idleAgent.destroy();
    busyAgent.destroy();
    t.equal(answered.body, 'slow answer', 'the request in flight was answered in full');
    t.equal(answered.connection, 'close', 'with Connection: close');
    t.equal(httpCode, 0, 'exit code 0');
    t.ok(httpExit < 2000, `exited ${Math.round(httpExit)} ms after SIGTERM: the idle kept-alive connection did not hold the drain to grace (4 s)`);

    // A connection that outlives grace is closed at the deadline.
    const late = await startBinary(config('a', addresses, '1s'));
    t.teardown(() => late.stop());
    const idle = await connectOnly(late.port('fe'));
    idle.write('SSH-2.0-idle\r\n');
    const closed = new Promise<void>((resolve) => {
      idle.on('data', () => {});
      idle.on('end', resolve);
      idle.on('close', resolve);
    });
    await late.waitForLog((l) => l.msg === 'listening');
    await sleep(300);
    const at = performance.now();
    late.child.kill('SIGTERM');
    await closed;
    const lateCode = await late.exited();
    const cutAfter = performance.now() - at;
    t.ok(cutAfter >= 900 && cutAfter < 2500, `the idle connection was closed at the grace deadline (${Math.round(cutAfter)} ms, grace 1 s)`);
    t.equal(lateCode, 0, 'exit code 0');
    t.ok(late.logs.some((l) => l.msg === 'connection' && l.termination === 'shutdown'), 'logged with termination shutdown');
    return {
      load: `${results.length} streams of 96 KB in flight (about 1 s each)`,
      faults: 'SIGTERM 300 ms in (grace 4 s); SIGTERM with an HTTP request in flight and an idle kept-alive connection; an idle TCP connection past a 1 s grace',
      bytesLost: lost,
      maxRssMB: mb(peak),
      rssOf: 'sniffmux' as const,
      figures: `listeners closed at once; all in-flight streams finished, exit 0 after ${Math.round(exitedAfter)} ms; http mode: in-flight answered (Connection: close), idle kept-alive closed, exit after ${Math.round(httpExit)} ms; the idle TCP one cut at ${Math.round(cutAfter)} ms (termination shutdown)`,
    };
  });
});
