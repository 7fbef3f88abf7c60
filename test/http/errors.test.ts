import t from 'tap';
import net from 'node:net';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { closedPort, tcpServer, type TestServer } from '../helpers/servers.js';
import { holdingPeer, httpPeer, RawClient, get, type HttpPeer } from '../helpers/http.js';

/**
 * Errors in http mode are HTTP answers, each logged with its SPEC
 * termination word: from a misbehaving client (400, 408, 431, smuggling
 * shapes) and from a misbehaving or missing server (502, 503, 504).
 */
type Teardown = { teardown(fn: () => unknown): void };

async function mux(t: Teardown, backends: Record<string, unknown>[], frontend: Record<string, unknown> = {}): Promise<RunningMux> {
  const m = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '300ms' }, default: 'web', ...frontend }],
    backends: backends.map((b) => ({ mode: 'http', ...b })),
  });
  t.teardown(() => m.stop());
  return m;
}

async function peer(t: Teardown, tag = 'web'): Promise<HttpPeer> {
  const p = await httpPeer(tag);
  t.teardown(() => p.close());
  return p;
}

async function rawServer(t: Teardown, onSocket: (socket: net.Socket) => void): Promise<TestServer> {
  const s = await tcpServer(onSocket);
  t.teardown(() => s.close());
  return s;
}

/** Sends `bytes` on a new connection and returns the first response and whether the connection then closed. */
async function ask(port: number, bytes: string | Buffer): Promise<{ status: number; body: string; closed: boolean; client: RawClient }> {
  const client = await RawClient.connect(port);
  client.write(bytes);
  const r = await client.response();
  await client.until(() => false);
  client.close();
  return { status: r.status, body: r.body.toString(), closed: client.isEnded, client };
}

async function lastLine(m: RunningMux): Promise<Record<string, unknown>> {
  return m.waitForLog((l) => l.msg === 'connection');
}

t.test('400: a malformed head, first request or later one', async (t) => {
  const web = await peer(t);
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }]);
  const first = await ask(m.port('fe'), 'GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n');
  t.equal(first.status, 400);
  t.ok(first.closed, 'the connection closes after the answer');
  t.match(await lastLine(m), { termination: 'bad-request', method: 'GET', path: '/' });

  const client = await RawClient.connect(m.port('fe'));
  client.write(get('/ok'));
  t.equal((await client.response()).status, 200);
  client.write('HELLO\r\n\r\n');
  t.equal((await client.response()).status, 400, 'not HTTP at all on a kept-alive connection');
  await client.until(() => false);
  t.ok(client.isEnded, 'then the connection ends');
  client.close();
  t.equal(web.seen.length, 1, 'nothing malformed reached the server');
});

t.test('400 from Node\'s parser: bytes the sniffer lets through and llhttp refuses', async (t) => {
  const web = await peer(t);
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }]);
  // A bare LF line end: tolerated by the sniffer, refused by llhttp's strict mode.
  const r = await ask(m.port('fe'), 'GET / HTTP/1.1\r\nHost: a\n\r\n');
  t.equal(r.status, 400);
  t.match(await lastLine(m), { termination: 'bad-request' });
  t.equal(web.seen.length, 0);
});

t.test('408: a head not complete within timeouts.httpRequest', async (t) => {
  const web = await peer(t);
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }], { timeouts: { httpRequest: '200ms' } });
  const started = Date.now();
  const r = await ask(m.port('fe'), 'GET /slow HTTP/1.1\r\nHost: a\r\n');
  t.equal(r.status, 408);
  t.ok(Date.now() - started >= 150, 'after the timeout');
  t.match(await lastLine(m), { termination: 'client-timeout', path: '/slow' });
});

t.test('431: a head larger than inspect.maxBytes', async (t) => {
  const web = await peer(t);
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }], { inspect: { delay: '300ms', maxBytes: 1024 } });
  const r = await ask(m.port('fe'), `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(2000)}\r\n\r\n`);
  t.equal(r.status, 431);
  t.match(await lastLine(m), { termination: 'bad-request' });
  // The same on a later request of a kept-alive connection.
  const client = await RawClient.connect(m.port('fe'));
  client.write(get('/'));
  t.equal((await client.response()).status, 200);
  client.write(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(2000)}\r\n\r\n`);
  t.equal((await client.response()).status, 431);
  client.close();
});

t.test('502: a server that answers garbage, or closes without an answer', async (t) => {
  const garbage = await rawServer(t, (s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n')));
  const hangup = await rawServer(t, (s) => s.once('data', () => s.destroy()));
  const m = await mux(
    t,
    [
      { name: 'garbage', servers: [{ name: 'g1', address: garbage.address }] },
      { name: 'hangup', servers: [{ name: 'h1', address: hangup.address }] },
    ],
    { rules: [{ if: { path: { prefix: '/garbage' } }, use: 'garbage' }], default: 'hangup' },
  );
  const r1 = await ask(m.port('fe'), get('/garbage'));
  t.equal(r1.status, 502);
  t.match(r1.body, /invalid or no response/);
  t.match(await lastLine(m), { termination: 'server-close', backend: 'garbage', server: 'g1' });
  const r2 = await ask(m.port('fe'), get('/hangup'));
  t.equal(r2.status, 502);
  await m.waitForLog((l) => l.msg === 'connection' && l.backend === 'hangup');
});

t.test('503: every server refuses, no rule and no default, queue timeout', async (t) => {
  const web = await holdingPeer('slow');
  t.teardown(() => web.close());
  const down = await closedPort();
  const m = await mux(
    t,
    [
      { name: 'down', retries: 1, servers: [{ name: 'd1', address: `127.0.0.1:${down}` }] },
      { name: 'full', timeouts: { queue: '150ms' }, servers: [{ name: 'f1', address: web.address, maxconn: 1 }] },
    ],
    {
      rules: [
        { if: { path: { prefix: '/down' } }, use: 'down' },
        { if: { path: { prefix: '/full' } }, use: 'full' },
      ],
      default: undefined,
    },
  );
  const r1 = await ask(m.port('fe'), get('/down'));
  t.equal(r1.status, 503);
  t.match(await m.waitForLog((l) => l.msg === 'connection' && l.backend === 'down'), { termination: 'connect-error', server: 'd1' });
  const r2 = await ask(m.port('fe'), get('/nowhere'));
  t.equal(r2.status, 503);
  t.match(await m.waitForLog((l) => l.msg === 'connection' && l.path === '/nowhere'), { termination: 'no-server', backend: null });
  // The only slot of f1 is held by a slow request; the next one waits in the queue and times out.
  const holder = await RawClient.connect(m.port('fe'));
  holder.write(get('/full/1'));
  await web.held;
  const r3 = await ask(m.port('fe'), get('/full/2'));
  t.equal(r3.status, 503);
  t.match(await m.waitForLog((l) => l.msg === 'connection' && l.path === '/full/2'), { termination: 'queue-timeout' });
  web.release();
  t.equal((await holder.response()).body.toString(), 'served /full/1', 'the request holding the slot is served');
  holder.close();
});

t.test('504: server timeout and connect timeout', async (t) => {
  const silent = await rawServer(t, () => {});
  const m = await mux(
    t,
    [
      { name: 'silent', timeouts: { server: '200ms' }, servers: [{ name: 's1', address: silent.address }] },
      // A TLS backend whose server never answers the ClientHello: the connect (handshake included) times out.
      { name: 'nohandshake', tls: { verify: false }, timeouts: { connect: '200ms' }, servers: [{ name: 'n1', address: silent.address }] },
    ],
    { rules: [{ if: { path: { prefix: '/silent' } }, use: 'silent' }], default: 'nohandshake' },
  );
  const r1 = await ask(m.port('fe'), get('/silent'));
  t.equal(r1.status, 504);
  t.match(await m.waitForLog((l) => l.msg === 'connection' && l.backend === 'silent'), { termination: 'server-timeout', server: 's1' });
  const r2 = await ask(m.port('fe'), get('/tls'));
  t.equal(r2.status, 504);
  t.match(await m.waitForLog((l) => l.msg === 'connection' && l.backend === 'nohandshake'), { termination: 'connect-timeout' });
});

t.test('a server that dies in the middle of a response: the client connection is cut', async (t) => {
  const half = await rawServer(t, (s) => s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part', () => setTimeout(() => s.destroy(), 20))));
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'h1', address: half.address }] }]);
  const client = await RawClient.connect(m.port('fe'));
  client.write(get('/'));
  const received = await client.until(() => false);
  t.match(received.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*only part$/);
  t.match(await lastLine(m), { termination: 'server-close' });
});

t.test('smuggling shapes are refused, and nothing behind them reaches a server', async (t) => {
  const web = await peer(t);
  const m = await mux(t, [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }]);
  const smuggled = 'GET /admin HTTP/1.1\r\nHost: a\r\n\r\n';
  const attempts: [string, string][] = [
    ['CL.TE', `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${4 + smuggled.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['TE.CL', `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled}`],
    ['two Content-Lengths', `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`],
    ['obfuscated TE', `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`],
    ['space before the colon', `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled}`],
    ['TE in HTTP/1.0', `POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`],
  ];
  for (const [name, bytes] of attempts) {
    const r = await ask(m.port('fe'), bytes);
    t.equal(r.status, 400, `${name}: 400`);
    t.ok(r.closed, `${name}: connection closed`);
  }
  // A bad chunk on a chunked body that began well.
  const bad = await ask(m.port('fe'), `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n${smuggled}`);
  t.equal(bad.closed, true, 'a chunk longer than its size closes the connection');
  t.same(web.seen.map((s) => s.url).filter((u) => u === '/admin'), [], 'the smuggled request never reached the server');
  const lines = await m.waitForConnections(attempts.length + 1);
  t.ok(lines.every((l) => l.termination === 'bad-request'), 'each is logged as bad-request');
});
