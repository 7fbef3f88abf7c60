import t from 'tap';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { closedPort, echoServer, exchange, firstLine, sha256, taggedEcho, tcpServer } from '../helpers/servers.js';
import { startMux } from '../helpers/mux.js';
import { nativeSpliceUnavailable } from '../../src/splice/native.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { eventually } from '../helpers/eventually.js';

/** argv: port, count. 20 at a time, each connection sends 5 pieces a tick apart, then FIN; prints [{ sent, got }] as JSON. */
const PIECEWISE_CLIENTS = `
import net from 'node:net';
const [port, count] = process.argv.slice(-2).map(Number);
const results = [];
const one = () => new Promise((resolve, reject) => {
  let sent = '', got = '';
  const socket = net.connect(port, '127.0.0.1', async () => {
    for (let i = 0; i < 5; i++) {
      const piece = 'piece-' + i + '-' + 'x'.repeat(i * 7) + ';';
      sent += piece;
      socket.write(piece);
      await new Promise((r) => setImmediate(r));
    }
    socket.end();
  });
  socket.setEncoding('utf8');
  socket.on('data', (d) => (got += d));
  socket.on('close', () => resolve({ sent, got }));
  socket.on('error', reject);
});
let started = 0;
await Promise.all(Array.from({ length: 20 }, async () => {
  while (started < count) { started++; results.push(await one()); }
}));
process.stdout.write(JSON.stringify(results));
`;

type Teardown = { teardown(fn: () => unknown): void };

/** How the mux of the tests below splices (global.splice). */
let spliceMode: 'native' | 'js' = 'js';

/** A one-frontend mux whose every connection goes to `servers` (tcp mode). */
async function muxTo(t: Teardown, servers: string[], backend: Record<string, unknown> = {}, frontend: Record<string, unknown> = {}) {
  const mux = await startMux({
    global: { splice: spliceMode },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '200ms' }, default: 'be', ...frontend }],
    backends: [{ name: 'be', servers: servers.map((address, i) => ({ name: `s${i + 1}`, address })), ...backend }],
  });
  t.teardown(() => mux.stop());
  return mux;
}

/**
 * Every test runs twice: through the native splice(2) loop (src/splice/native.ts,
 * what `auto` picks when it is built) and through the JavaScript splice.
 */
for (const mode of ['native', 'js'] as const) {
  t.test(`global.splice: ${mode}`, async (t) => {
    if (mode === 'native' && nativeSpliceUnavailable !== null) {
      const why = `the native splice(2) addon is not available: ${nativeSpliceUnavailable} (npm install builds it with node-gyp)`;
      if (process.env.CI) t.fail(why);
      else t.comment(`SKIPPED: ${why}`);
      return;
    }
    spliceMode = mode;
    t.test('20 MB each way arrive byte-identical (SHA-256)', async (t) => {
      const echo = await echoServer();
      t.teardown(() => echo.close());
      const mux = await muxTo(t, [echo.address]);
      const payload = randomBytes(20 * 1024 * 1024);
      const received = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const socket = net.connect(mux.port('fe'), '127.0.0.1', () => {
          socket.end(payload);
        });
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => resolve(Buffer.concat(chunks)));
        socket.on('error', reject);
      });
      t.equal(received.length, payload.length, 'every byte came back');
      t.equal(sha256(received), sha256(payload), 'SHA-256 identical');
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.equal(line.bytesIn, payload.length, 'bytesIn counts every byte from the client');
      t.equal(line.bytesOut, payload.length, 'bytesOut counts every byte to the client');
      t.equal(line.protocol, 'other');
    });

    t.test('half-close passes on: the server still answers after the client FIN', async (t) => {
      // The server reads until the client's FIN, then answers with what it got, then closes.
      const server = await tcpServer(
        (socket) => {
          const chunks: Buffer[] = [];
          socket.on('data', (c: Buffer) => chunks.push(c));
          socket.on('end', () => socket.end(`got ${Buffer.concat(chunks).length} bytes after your FIN`));
        },
        { allowHalfOpen: true },
      );
      t.teardown(() => server.close());
      const mux = await muxTo(t, [server.address]);
      const { received } = await exchange(mux.port('fe'), Buffer.alloc(5000, 1), { end: true });
      t.equal(received.toString(), 'got 5000 bytes after your FIN');
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.equal(line.termination, 'client-close', 'the client closed first');
      t.equal(line.bytesOut, received.length);
    });

    t.test('a backend server that is down: the next server takes the connection', async (t) => {
      const down = await closedPort();
      const up = await taggedEcho('up');
      t.teardown(() => up.close());
      const mux = await muxTo(t, [`127.0.0.1:${down}`, up.address], { retries: 1 });
      for (let i = 0; i < 3; i++) {
        const { received } = await exchange(mux.port('fe'), 'ping', { until: (r) => r.toString().endsWith('ping') });
        t.equal(firstLine(received), 'up');
      }
      const lines = await mux.waitForConnections(3);
      t.equal(lines.length, 3, 'one line per connection');
      for (const line of lines) t.equal(line.server, 's2');
      t.ok(mux.logs.some((l) => l.msg === 'server connect failed' && l.server === 's1'), 'the failed connect is logged');
    });

    t.test('a client that keeps sending while its server is connected (or refused, then retried): every byte arrives, in order', async (t) => {
      // The bytes after the sniffed first piece come while the connect is in flight; with a native
      // connect the client's descriptor is the native thread's from the moment it connects, and
      // JavaScript must not read one of them meanwhile (nor lose them when the connect fails).
      const down = await closedPort();
      const echo = await echoServer();
      t.teardown(() => echo.close());
      const mux = await muxTo(t, [`127.0.0.1:${down}`, echo.address], { retries: 1 });
      const CONNECTIONS = 200;
      // The clients run in a process of their own, so that their bytes come while this one is busy connecting.
      const child = spawn(process.execPath, ['--input-type=module', '-e', PIECEWISE_CLIENTS, String(mux.port('fe')), String(CONNECTIONS)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      const [code] = (await once(child, 'exit')) as [number];
      t.equal(code, 0, 'the client process ran');
      const results = JSON.parse(out) as { sent: string; got: string }[];
      t.equal(results.length, CONNECTIONS);
      const wrong = results.filter((r) => r.got !== r.sent);
      t.equal(wrong.length, 0, `all ${CONNECTIONS} echoes complete and in order${wrong[0] ? `; e.g. sent ${wrong[0].sent}, got ${wrong[0].got}` : ''}`);
      const lines = await mux.waitForConnections(CONNECTIONS);
      t.ok(lines.every((l) => l.server === 's2' && l.bytesIn === results[0]!.sent.length), 'every one logged at s2 with all its bytes');
      t.ok(mux.logs.some((l) => l.msg === 'server connect failed' && l.server === 's1'), 'the refused first tries happened');
    });

    if (mode === 'native') {
      t.test('a client whose first bytes decide a tcp backend is carried without a socket (FastConnection); one that needs more falls back', async (t) => {
        const echo = await echoServer();
        t.teardown(() => echo.close());
        const mux = await muxTo(t, [echo.address], {}, { rules: [{ if: { protocol: 'http' }, use: 'be' }], default: 'be' });
        const kinds = (): string[] => [...mux.instance.openConnections()].map((c) => c.constructor.name);
        const open = async (first: string): Promise<net.Socket> => {
          const socket = net.connect(mux.port('fe'), '127.0.0.1');
          await once(socket, 'connect');
          socket.write(first);
          await once(socket, 'data'); // echoed: routed and spliced
          return socket;
        };
        const raw = await open('raw bytes');
        t.same(kinds(), ['FastConnection'], 'raw bytes: decided by the first segment, carried natively');
        // Half an HTTP request line: the http probe needs more, so the JavaScript path sniffs on (and the rule still routes it).
        const partial = net.connect(mux.port('fe'), '127.0.0.1');
        await once(partial, 'connect');
        partial.write('GET /a');
        await eventually('the JavaScript path took it', () => kinds().includes('ClientConnection'));
        partial.write(' HTTP/1.1\r\nHost: x\r\n\r\n');
        await once(partial, 'data');
        t.same(kinds().sort(), ['ClientConnection', 'FastConnection'], 'the undecided one went the JavaScript way');
        raw.end();
        partial.end();
        const lines = await mux.waitForConnections(2);
        t.same(lines.map((l) => [l.protocol, l.backend, l.bytesIn]).sort(), [['http', 'be', 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n'.length], ['other', 'be', 'raw bytes'.length]]);
      });
    }

    t.test('every server down: connect-error, and an HTTP client gets a 503', async (t) => {
      const down1 = await closedPort();
      const down2 = await closedPort();
      const mux = await muxTo(t, [`127.0.0.1:${down1}`, `127.0.0.1:${down2}`], { retries: 1 });
      const { received } = await exchange(mux.port('fe'), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      t.match(received.toString(), /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.equal(line.termination, 'connect-error');
      t.equal(line.backend, 'be');
      const raw = await exchange(mux.port('fe'), Buffer.from([1, 2, 3]));
      t.equal(raw.received.length, 0, 'a non-HTTP client is just closed');
    });

    // The connect timeout (a 504 for an HTTP client, a raw client closed, `connect-timeout` in the log, a
    // retry to the next server) is proven in test/hostile/backend-faults.test.ts, scenario "backend: blackhole
    // (connect timeout)", which runs in `npm test` too: a connect that hangs needs a listener whose accept
    // queue is full, and that takes a process whose event loop is blocked.

    t.test('the connection log line carries the SPEC fields and byte counts', async (t) => {
      const backend = await taggedEcho('tagged');
      t.teardown(() => backend.close());
      const mux = await muxTo(t, [backend.address], {}, { rules: [{ if: { protocol: 'http' }, use: 'be' }] });
      const request = 'GET /chat?room=1 HTTP/1.1\r\nHost: example.test\r\n\r\n';
      await exchange(mux.port('fe'), request, { until: (r) => r.length >= 'tagged\n'.length + request.length });
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.match(line, {
        msg: 'connection',
        client: /^127\.0\.0\.1:\d+$/,
        frontend: 'fe',
        listen: '127.0.0.1:0',
        protocol: 'http',
        tls: false,
        sni: null,
        method: 'GET',
        path: '/chat?room=1',
        backend: 'be',
        server: 's1',
        bytesIn: request.length,
        bytesOut: 'tagged\n'.length + request.length,
        timings: { sniff: Number, queue: 0, connect: Number, total: Number },
        termination: 'client-close',
      });
    });

    t.test('half-close the other way: the server ends first, the client still sends, then ends', async (t) => {
      // The server says goodbye and ends its side at once, but reads on until the client's FIN.
      let serverGot: (bytes: Buffer) => void = () => {};
      const gotByServer = new Promise<Buffer>((resolve) => (serverGot = resolve));
      const server = await tcpServer(
        (socket) => {
          const chunks: Buffer[] = [];
          socket.end('bye\n');
          socket.on('data', (c: Buffer) => chunks.push(c));
          socket.on('end', () => serverGot(Buffer.concat(chunks)));
        },
        { allowHalfOpen: true },
      );
      t.teardown(() => server.close());
      const mux = await muxTo(t, [server.address]);
      const payload = randomBytes(5000);
      const fromServer = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const socket = net.connect({ port: mux.port('fe'), host: '127.0.0.1', allowHalfOpen: true }, () => socket.write('hi'));
        socket.on('data', (c: Buffer) => chunks.push(c));
        // The server's FIN arrived: this side is still open for writing.
        socket.on('end', () => {
          socket.end(payload);
          resolve(Buffer.concat(chunks));
        });
        socket.on('error', reject);
      });
      t.equal(fromServer.toString(), 'bye\n', "the server's goodbye, then its FIN");
      const got = await gotByServer;
      t.equal(sha256(got), sha256(Buffer.concat([Buffer.from('hi'), payload])), 'what the client sent after the server ended reached it intact');
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.equal(line.termination, 'server-close', 'the server closed first');
      t.equal(line.bytesIn, 2 + payload.length);
      t.equal(line.bytesOut, 4);
    });

    /**
     * An idle spliced connection: a first echo, then silence. Resolves when
     * sniffmux closes it, with how long it had been idle.
     */
    async function idleEcho(port: number): Promise<{ socket: net.Socket; closed: Promise<number> }> {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - idleSince)));
      socket.write('ping');
      await new Promise((r) => socket.once('data', r));
      const idleSince = performance.now();
      return { socket, closed };
    }

    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

    t.test("an idle spliced connection closes at the frontend's timeouts.tunnel, not at timeouts.client", async (t) => {
      const echo = await echoServer();
      t.teardown(() => echo.close());
      const mux = await muxTo(t, [echo.address], {}, { timeouts: { client: '100ms', tunnel: '500ms' } });
      const { socket, closed } = await idleEcho(mux.port('fe'));
      await sleep(250);
      t.equal(socket.destroyed, false, 'still open well past timeouts.client');
      const idle = await closed;
      t.ok(idle >= 480, `closed after ${Math.round(idle)} ms idle (tunnel 500 ms)`);
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.match(line, { termination: 'client-timeout', backend: 'be', server: 's1', bytesIn: 4, bytesOut: 4 });
    });

    t.test("the backend's timeouts.tunnel governs a spliced connection: it survives past client, is closed at tunnel, and only silence counts", async (t) => {
      const echo = await echoServer();
      t.teardown(() => echo.close());
      const mux = await muxTo(t, [echo.address], { timeouts: { tunnel: '600ms' } }, { timeouts: { client: '100ms', tunnel: '1h' } });
      const { socket, closed } = await idleEcho(mux.port('fe'));
      // Traffic every 300 ms keeps it open past twice the tunnel timeout.
      for (let i = 0; i < 4; i++) {
        await sleep(300);
        socket.write('x');
        await new Promise((r) => socket.once('data', r));
      }
      t.equal(socket.destroyed, false, 'open after 1.2 s of traffic with pauses shorter than the tunnel timeout');
      const lastActivity = performance.now();
      const idle = await closed;
      const sinceLast = performance.now() - lastActivity;
      t.ok(sinceLast >= 580, `closed after ${Math.round(sinceLast)} ms of silence (tunnel 600 ms, frontend client 100 ms)`);
      t.ok(idle > sinceLast, 'the connection lived longer than its last silence');
      const line = await mux.waitForLog((l) => l.msg === 'connection');
      t.match(line, { termination: 'client-timeout', bytesIn: 8, bytesOut: 8 });
    });
  });
}
