/**
 * The admin listener over real sockets: /healthz, /status.json and /metrics
 * after real connections through the mux, basic auth, and the edges (no
 * admin key, address in use, several instances in one process).
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { exchange, firstLine, taggedEcho, closedPort, type TestServer } from '../helpers/servers.js';
import { adminRequest, metricValue, statusJson } from '../helpers/admin.js';

function config(servers: { a: TestServer }, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    admin: { listen: '127.0.0.1:0' },
    frontends: [
      {
        name: 'app',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '50ms' },
        rules: [{ if: { protocol: 'http' }, use: 'web' }],
        default: 'raw',
      },
    ],
    backends: [
      { name: 'web', servers: [{ name: 'w1', address: servers.a.address }] },
      { name: 'raw', servers: [{ name: 'r1', address: servers.a.address }] },
    ],
    ...extra,
  };
}

async function withMux(t: Test, raw: Record<string, unknown>): Promise<RunningMux> {
  const mux = await startMux(raw);
  t.teardown(() => mux.stop());
  return mux;
}

async function echoServer(t: Test, tag: string): Promise<TestServer> {
  const server = await taggedEcho(tag);
  t.teardown(() => server.close());
  return server;
}

/** One round trip through the mux; resolves when the echo came back and the connection is logged. */
async function roundTrip(mux: RunningMux, send: string): Promise<string> {
  const before = mux.connections().length;
  const reply = await exchange(mux.port('app'), send, { until: (r) => r.toString('latin1').includes(send) });
  await mux.waitForLog(() => mux.connections().length > before);
  return firstLine(reply.received);
}

t.test('/healthz answers ok; unknown paths 404, other methods 405, / redirects', async (t) => {
  const a = await echoServer(t, 'A');
  const mux = await withMux(t, config({ a }));
  const health = await adminRequest(mux, '/healthz');
  t.equal(health.status, 200);
  t.equal(health.body, 'ok\n');
  t.equal(health.headers.get('cache-control'), 'no-store');
  t.equal((await adminRequest(mux, '/nope')).status, 404);
  const post = await adminRequest(mux, '/status.json', { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
  const root = await adminRequest(mux, '/');
  t.equal(root.status, 302);
  t.equal(root.headers.get('location'), '/status');
  const head = await adminRequest(mux, '/status.json', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.ok(mux.logs.some((l) => l.msg === 'admin listening'), 'logs where admin listens');
});

t.test('/status.json shows frontends, backends and servers after traffic', async (t) => {
  const a = await echoServer(t, 'A');
  const mux = await withMux(t, config({ a }));
  t.equal(await roundTrip(mux, 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n'), 'A');
  t.equal(await roundTrip(mux, 'raw bytes'), 'A');
  t.equal(await roundTrip(mux, 'more raw bytes'), 'A');

  const status = await statusJson(mux);
  t.match(status.sniffmux, { version: String, pid: process.pid, startedAt: String, uptime: Number, now: String });
  t.same(status.connections, { active: 0, maxconn: 0 });
  const [app] = status.frontends;
  t.match(app, {
    name: 'app',
    listen: [{ address: '127.0.0.1:0', bound: `127.0.0.1:${mux.port('app')}` }],
    active: 0,
    total: 3,
    maxconn: 0,
    errors: 0,
    protocols: { http: 1, other: 2 },
    terminations: { 'client-close': 3 },
  });
  const sent = 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n'.length + 'raw bytes'.length + 'more raw bytes'.length;
  t.equal(app.bytesIn, sent, 'bytes in = what the clients sent');
  t.equal(app.bytesOut, sent + 3 * 'A\n'.length, 'bytes out = the echo plus each greeting');
  t.same(
    status.backends.map((b: any) => [b.name, b.state, b.serversUp, b.total, b.queue, b.healthCheck]),
    [
      ['web', 'up', 1, 1, 0, null],
      ['raw', 'up', 1, 2, 0, null],
    ],
  );
  t.match(status.backends[1].servers[0], {
    name: 'r1',
    address: a.address,
    state: 'up',
    backup: false,
    weight: 1,
    active: 0,
    total: 2,
    failures: 0,
    bytesIn: 'raw bytes'.length + 'more raw bytes'.length,
    errors: 0,
    check: null,
  });
});

t.test('bytes of a connection still open are counted while it is open', async (t) => {
  const a = await echoServer(t, 'A');
  const mux = await withMux(t, config({ a }));
  const socket = net.connect(mux.port('app'), '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  await new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      received += d.toString();
      if (received.includes('hello')) resolve();
    });
    socket.write('hello');
  });
  const status = await statusJson(mux);
  t.equal(status.connections.active, 1);
  t.equal(status.frontends[0].active, 1);
  t.equal(status.frontends[0].bytesIn, 5);
  t.equal(status.backends[1].servers[0].active, 1);
  t.equal(status.backends[1].servers[0].bytesIn, 5);
  const metrics = (await adminRequest(mux, '/metrics')).body;
  t.equal(metricValue(metrics, 'sniffmux_active_connections{frontend="app"}'), 1);
  t.equal(metricValue(metrics, 'sniffmux_frontend_bytes_in_total{frontend="app"}'), 5);
});

t.test('/metrics: Prometheus text with the documented names and labels', async (t) => {
  const a = await echoServer(t, 'A');
  const dead = await closedPort();
  const raw = config({ a });
  (raw.backends as any[])[0].servers = [{ name: 'w1', address: `127.0.0.1:${dead}` }];
  (raw.backends as any[])[0].retries = 0;
  const mux = await withMux(t, raw);
  await roundTrip(mux, 'raw bytes');
  // An HTTP request to a backend whose only server refuses: a 503 and a connect-error.
  const reply = await exchange(mux.port('app'), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(reply.received.toString(), /^HTTP\/1\.1 503/);
  await mux.waitForLog((l) => l.msg === 'connection' && l.termination === 'connect-error');

  const res = await adminRequest(mux, '/metrics');
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = res.body;
  const expected: [string, number][] = [
    ['sniffmux_connections_total{frontend="app",protocol="other",termination="client-close"}', 1],
    ['sniffmux_connections_total{frontend="app",protocol="http",termination="connect-error"}', 1],
    ['sniffmux_active_connections{frontend="app"}', 0],
    ['sniffmux_frontend_bytes_in_total{frontend="app"}', 'raw bytes'.length + 'GET / HTTP/1.1\r\nHost: a\r\n\r\n'.length],
    ['sniffmux_backend_bytes_in_total{backend="raw"}', 'raw bytes'.length],
    ['sniffmux_server_bytes_in_total{backend="raw",server="r1"}', 'raw bytes'.length],
    ['sniffmux_server_bytes_out_total{backend="raw",server="r1"}', 'A\nraw bytes'.length],
    ['sniffmux_server_up{backend="web",server="w1"}', 1],
    ['sniffmux_server_up{backend="raw",server="r1"}', 1],
    ['sniffmux_server_active_connections{backend="raw",server="r1"}', 0],
    ['sniffmux_server_connections_total{backend="raw",server="r1"}', 1],
    ['sniffmux_server_connect_failures_total{backend="web",server="w1"}', 1],
    ['sniffmux_backend_queue_length{backend="web"}', 0],
    ['sniffmux_sniff_duration_seconds_count{frontend="app",protocol="other"}', 1],
    ['sniffmux_sniff_duration_seconds_count{frontend="app",protocol="http"}', 1],
  ];
  for (const [sample, value] of expected) t.equal(metricValue(text, sample), value, sample);
  t.match(text, /# TYPE sniffmux_sniff_duration_seconds histogram/);
  t.match(text, /sniffmux_sniff_duration_seconds_bucket\{le="0\.001",frontend="app",protocol="other"\} \d/);
  t.match(text, /# TYPE sniffmux_health_checks_total counter/);
  t.match(text, /sniffmux_build_info\{version="\d+\.\d+\.\d+[^"]*"\} 1/);
  t.match(text, /\nprocess_resident_memory_bytes \d+/, 'process metrics are appended');
  const status = await statusJson(mux);
  t.equal(status.frontends[0].errors, 1, 'the connect-error counts as an error');
  t.equal(status.backends[0].servers[0].failures, 1);
});

t.test('basic auth: 401 without or with wrong credentials, 200 with them; /healthz stays open', async (t) => {
  const a = await echoServer(t, 'A');
  const mux = await withMux(t, config({ a }, { admin: { listen: '127.0.0.1:0', auth: { user: 'ops', password: 'pa:ss wörd' } } }));
  const basic = (credentials: string): RequestInit => ({ headers: { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } });
  for (const path of ['/status', '/status.json', '/metrics']) {
    const denied = await adminRequest(mux, path);
    t.equal(denied.status, 401, `${path} without credentials`);
    t.match(denied.headers.get('www-authenticate'), /^Basic realm="sniffmux admin"/);
    t.equal((await adminRequest(mux, path, basic('ops:wrong'))).status, 401, `${path} with a wrong password`);
    t.equal((await adminRequest(mux, path, basic('ops:pa:ss wörd'))).status, 200, `${path} with the right ones`);
  }
  t.equal((await adminRequest(mux, '/status', { headers: { authorization: 'Bearer x' } })).status, 401, 'another scheme');
  t.equal((await adminRequest(mux, '/healthz')).status, 200);
});

t.test('/status is a self-contained HTML page', async (t) => {
  const a = await echoServer(t, 'A');
  const mux = await withMux(t, config({ a }));
  const page = await adminRequest(mux, '/status?refresh=2');
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  t.match(page.headers.get('content-security-policy'), /default-src 'none'.*script-src 'sha256-/);
  t.match(page.body, /^<!doctype html>/);
  t.match(page.body, /data-refresh="2"/);
  t.match(page.body, /<h3>web<\/h3>/);
  t.match(page.body, /<h3>raw<\/h3>/);
  t.notMatch(page.body, /(src|href)="https?:/, 'no external assets');
  t.match((await adminRequest(mux, '/status?refresh=0')).body, /data-refresh="5"/, 'an invalid refresh falls back to 5 s');
});

t.test('without an admin key no admin listener is opened', async (t) => {
  const a = await echoServer(t, 'A');
  const raw = config({ a });
  delete raw.admin;
  const mux = await withMux(t, raw);
  t.equal(mux.instance.adminAddress(), null);
  t.notOk(mux.logs.some((l) => l.msg === 'admin listening'));
});

t.test('an admin address in use is a one-line start-up error naming it', async (t) => {
  const a = await echoServer(t, 'A');
  const taken = await echoServer(t, 'taken');
  const raw = config({ a }, { admin: { listen: taken.address } });
  await t.rejects(startMux(raw), { code: 'SMX_ERR_ADDR_IN_USE', message: `cannot listen on ${taken.address}: address already in use` });
});

t.test('two instances in one process keep separate metrics', async (t) => {
  const a = await echoServer(t, 'A');
  const one = await withMux(t, config({ a }));
  const two = await withMux(t, config({ a }));
  await roundTrip(one, 'only through one');
  const first = (await adminRequest(one, '/metrics')).body;
  const second = (await adminRequest(two, '/metrics')).body;
  t.equal(metricValue(first, 'sniffmux_connections_total{frontend="app",protocol="other",termination="client-close"}'), 1);
  t.equal(metricValue(second, 'sniffmux_connections_total{frontend="app",protocol="other",termination="client-close"}'), null);
});
