/**
 * Health checks over real sockets: the rise/fall rule on its own, tcp and
 * http checks taking a stopped server out and a restarted one back (seen in
 * the logs, /status.json, /metrics and where new connections go), the http
 * check's path and expected status, the timeout, and stopping.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { RiseFall, HealthChecker, type ProbeOutcome } from '../../src/backend/health/checker.js';
import { ServerState } from '../../src/backend/server-state.js';
import { createLogger } from '../../src/observe/log.js';
import { startMux, type LogLine, type RunningMux } from '../helpers/mux.js';
import { closedPort, exchange, firstLine, tcpServer, type TestServer } from '../helpers/servers.js';
import { adminRequest, metricValue, statusJson } from '../helpers/admin.js';

const INTERVAL = 100;
/**
 * How soon a transition must show: `fall` (or `rise`) checks, one interval
 * apart, plus the check in flight when the server changed and slack for a
 * busy test machine.
 */
const WITHIN = (2 + 1) * INTERVAL + 500;

t.test('rise/fall: only an unbroken run flips the state', async (t) => {
  const state = new RiseFall(true, 2, 3);
  const seen = [false, false, true, false, false, false, false, true, false, true, true].map((ok) => state.observe(ok));
  t.same(seen, [null, null, null, null, null, 'down', null, null, null, null, 'up']);
  t.equal(state.up, true);
  const once = new RiseFall(true, 1, 1);
  t.same([false, false, true, true].map((ok) => once.observe(ok)), ['down', null, 'up', null]);
});

/** A server that greets with its tag and echoes, listening on a given port (0 = any), so it can be restarted in place. */
async function taggedOn(t: Test, tag: string, port = 0): Promise<TestServer & { readonly port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(`${tag}\n`);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as net.AddressInfo).port;
  let closed = false;
  const close = (): Promise<void> => {
    if (closed) return Promise.resolve();
    closed = true;
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  t.teardown(close);
  return { port: bound, address: `127.0.0.1:${bound}`, accepted: 0, close };
}

async function tagOfNewConnection(mux: RunningMux): Promise<string> {
  const reply = await exchange(mux.port('app'), 'ping', { until: (r) => r.toString().includes('ping') });
  return firstLine(reply.received);
}

const isTransition = (server: string, msg: string) => (l: LogLine) => l.msg === msg && l.server === server;

t.test('tcp check: a stopped server goes down after `fall` failures and comes back after `rise` successes', async (t) => {
  const a = await taggedOn(t, 'A');
  let b = await taggedOn(t, 'B');
  const mux = await startMux({
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'app', listen: ['127.0.0.1:0'], inspect: { delay: '20ms' }, default: 'echo' }],
    backends: [
      {
        name: 'echo',
        healthCheck: { type: 'tcp', interval: INTERVAL, rise: 2, fall: 2, timeout: 500 },
        servers: [
          { name: 'a', address: a.address },
          { name: 'b', address: b.address },
        ],
      },
    ],
  });
  t.teardown(() => mux.stop());
  t.same(new Set([await tagOfNewConnection(mux), await tagOfNewConnection(mux)]), new Set(['A', 'B']), 'both serve at first');

  const stoppedAt = performance.now();
  await b.close();
  const down = await mux.waitForLog(isTransition('b', 'server down'));
  const tookDown = performance.now() - stoppedAt;
  t.match(down, { level: 'warn', backend: 'echo', server: 'b', reason: /^connect failed: ECONNREFUSED \(2 failed checks\)$/ });
  t.ok(tookDown < WITHIN, `down after ${Math.round(tookDown)} ms`);

  const status = await statusJson(mux);
  const [sa, sb] = status.backends[0].servers;
  t.match(sb, { name: 'b', state: 'down', check: { last: { ok: false, detail: 'connect failed: ECONNREFUSED' } } });
  t.match(sa, { name: 'a', state: 'up', check: { last: { ok: true, detail: 'connected' } } });
  t.equal(status.backends[0].state, 'degraded');
  const metrics = (await adminRequest(mux, '/metrics')).body;
  t.equal(metricValue(metrics, 'sniffmux_server_up{backend="echo",server="b"}'), 0);
  t.equal(metricValue(metrics, 'sniffmux_server_up{backend="echo",server="a"}'), 1);
  t.ok(metricValue(metrics, 'sniffmux_health_checks_total{backend="echo",server="b",result="fail"}')! >= 2);
  t.ok(metricValue(metrics, 'sniffmux_health_checks_total{backend="echo",server="a",result="pass"}')! >= 1);

  const failuresBefore = mux.logs.filter((l) => l.msg === 'server connect failed').length;
  const tags = [];
  for (let i = 0; i < 4; i++) tags.push(await tagOfNewConnection(mux));
  t.same(tags, ['A', 'A', 'A', 'A'], 'new connections go to the server still up');
  t.equal(mux.logs.filter((l) => l.msg === 'server connect failed').length, failuresBefore, 'the down server is not even tried');

  const restartedAt = performance.now();
  b = await taggedOn(t, 'B', b.port);
  const up = await mux.waitForLog(isTransition('b', 'server up'));
  const tookUp = performance.now() - restartedAt;
  t.match(up, { level: 'info', backend: 'echo', server: 'b', reason: 'connected (2 passed checks)' });
  t.ok(tookUp < WITHIN, `up after ${Math.round(tookUp)} ms`);
  t.equal((await statusJson(mux)).backends[0].servers[1].state, 'up');
  t.equal(metricValue((await adminRequest(mux, '/metrics')).body, 'sniffmux_server_up{backend="echo",server="b"}'), 1);
  const after = new Set([await tagOfNewConnection(mux), await tagOfNewConnection(mux)]);
  t.same(after, new Set(['A', 'B']), 'the restarted server takes connections again');

  t.equal(mux.logs.filter(isTransition('b', 'server down')).length, 1, 'one "server down" line for the whole outage');
  t.equal(mux.logs.filter(isTransition('b', 'server up')).length, 1, 'one "server up" line');
  t.equal(mux.logs.filter((l) => l.server === 'a' && /^server (up|down)$/.test(l.msg)).length, 0, 'nothing about the healthy server');
});

/** An HTTP server whose status can be changed, recording the requests it gets. */
async function httpServer(
  t: Test,
): Promise<{ port: number; status: number; requests: http.IncomingMessage[]; firstRequest: Promise<http.IncomingMessage> }> {
  let first: (req: http.IncomingMessage) => void = () => {};
  const state = {
    port: 0,
    status: 200,
    requests: [] as http.IncomingMessage[],
    firstRequest: new Promise<http.IncomingMessage>((resolve) => (first = resolve)),
  };
  const server = http.createServer((req, res) => {
    state.requests.push(req);
    first(req);
    res.writeHead(state.status, { 'content-type': 'text/plain' });
    res.end('health\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve()) && server.closeAllConnections()));
  return state;
}

t.test('http check: the path is requested and the status must match `expect`', async (t) => {
  const web = await httpServer(t);
  const exact = await httpServer(t);
  const mux = await startMux({
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'app', listen: ['127.0.0.1:0'], default: 'web' }],
    backends: [
      {
        name: 'web',
        healthCheck: { type: 'http', path: '/health?deep=1', expect: '2xx', interval: INTERVAL, rise: 1, fall: 1, timeout: 500 },
        servers: [{ name: 'w1', address: `127.0.0.1:${web.port}` }],
      },
      {
        name: 'exact',
        healthCheck: { type: 'http', expect: 204, interval: INTERVAL, rise: 1, fall: 1 },
        servers: [{ name: 'e1', address: `127.0.0.1:${exact.port}` }],
      },
    ],
  });
  t.teardown(() => mux.stop());

  // The exact backend answers 200 where 204 is expected: down at its first check.
  const wrong = await mux.waitForLog(isTransition('e1', 'server down'));
  t.equal(wrong.reason, 'HTTP 200 (expected 204) (1 failed checks)');
  t.equal((await exact.firstRequest).url, '/', 'path defaults to /');

  const req = await web.firstRequest;
  t.equal(req.method, 'GET');
  t.equal(req.url, '/health?deep=1');
  t.equal(req.headers['user-agent'], 'sniffmux-health-check');
  t.equal(req.headers.host, `127.0.0.1:${web.port}`);

  web.status = 503;
  const down = await mux.waitForLog(isTransition('w1', 'server down'));
  t.equal(down.reason, 'HTTP 503 (expected 2xx) (1 failed checks)');
  const status = await statusJson(mux);
  t.match(status.backends[0], {
    state: 'down',
    healthCheck: { type: 'http', path: '/health?deep=1', expect: '2xx', interval: INTERVAL, rise: 1, fall: 1, timeout: 500 },
    servers: [{ state: 'down', check: { last: { ok: false, detail: 'HTTP 503 (expected 2xx)' } } }],
  });
  // With every server down, a client gets no-server.
  const refused = await exchange(mux.port('app'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(refused.received.toString(), /^HTTP\/1\.1 503/);
  t.match(await mux.waitForLog((l) => l.msg === 'connection'), { termination: 'no-server', backend: 'web', server: null });

  web.status = 204;
  t.match(await mux.waitForLog(isTransition('w1', 'server up')), { reason: 'HTTP 204 (1 passed checks)' });
});

t.test('a check that gets no answer fails after `timeout`', async (t) => {
  // Accepts connections and never answers: the http check must give up on its own.
  const silent = await tcpServer(() => {});
  t.teardown(() => silent.close());
  const mux = await startMux({
    frontends: [{ name: 'app', listen: ['127.0.0.1:0'], default: 'web' }],
    backends: [
      {
        name: 'web',
        healthCheck: { type: 'http', interval: INTERVAL, rise: 1, fall: 2, timeout: 150 },
        servers: [{ name: 'w1', address: silent.address }],
      },
    ],
  });
  t.teardown(() => mux.stop());
  t.match(await mux.waitForLog(isTransition('w1', 'server down')), { reason: 'no answer within 150 ms (2 failed checks)' });
});

t.test('servers start up: a dead server is up until `fall` checks have failed', async (t) => {
  const dead = await closedPort();
  const mux = await startMux({
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'app', listen: ['127.0.0.1:0'], default: 'web' }],
    backends: [{ name: 'web', healthCheck: { interval: '1s', fall: 3 }, servers: [{ name: 'w1', address: `127.0.0.1:${dead}` }] }],
  });
  t.teardown(() => mux.stop());
  const status = await statusJson(mux);
  t.match(status.backends[0].servers[0], { state: 'up', check: { pending: Number } });
  t.equal(status.backends[0].healthCheck.type, 'tcp');
});

t.test('a checker stops: the check in flight is aborted and its result dropped', async (t) => {
  const server = new ServerState({ name: 's', address: { host: '127.0.0.1', port: 1, text: '127.0.0.1:1' }, maxconn: 0, weight: 1, backup: false });
  let calls = 0;
  let finish: (o: ProbeOutcome) => void = () => {};
  let started: () => void = () => {};
  const inFlight = new Promise<void>((resolve) => (started = resolve));
  let signal: AbortSignal | null = null;
  const checker = new HealthChecker(
    'b',
    server,
    { type: 'tcp', path: '/', expect: { text: '200', min: 200, max: 200 }, interval: 1, rise: 1, fall: 1, timeout: 10_000 },
    (s) => {
      calls++;
      signal = s;
      started();
      return new Promise((resolve) => (finish = resolve));
    },
    createLogger('silent'),
  );
  // The checker's timers are unref'd (they must not keep a process alive), so this test holds the loop open itself.
  const keepAlive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(keepAlive));
  checker.start();
  await inFlight;
  checker.stop();
  t.equal(signal!.aborted, true, 'the probe is told to give up');
  finish({ ok: false, detail: 'late' });
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(checker.last, null, 'a result arriving after stop is dropped');
  t.equal(server.up, true);
  // Nothing to await for "no further check": wait many 1 ms intervals and count.
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(calls, 1, 'no check after stop');
});

/** Polls a condition nothing announces (a queue length), a few ms apart, for up to 2 s. */
async function until(t: Test, condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!condition()) {
    if (performance.now() > deadline) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

t.test('a server coming back up takes the connections waiting in the queue at once', async (t) => {
  const a = await taggedOn(t, 'A');
  let b = await taggedOn(t, 'B');
  const mux = await startMux({
    admin: { listen: '127.0.0.1:0' },
    frontends: [{ name: 'app', listen: ['127.0.0.1:0'], inspect: { delay: '20ms' }, default: 'echo' }],
    backends: [
      {
        name: 'echo',
        balance: 'first',
        timeouts: { queue: '10s' },
        healthCheck: { interval: INTERVAL, rise: 1, fall: 1 },
        servers: [
          { name: 'a', address: a.address, maxconn: 1 },
          { name: 'b', address: b.address, maxconn: 1 },
        ],
      },
    ],
  });
  t.teardown(() => mux.stop());
  await b.close();
  await mux.waitForLog(isTransition('b', 'server down'));

  // A holds its one slot; the next client waits in the queue (B is down).
  const held = net.connect(mux.port('app'), '127.0.0.1');
  t.teardown(() => held.destroy());
  await new Promise<void>((resolve) => held.once('data', () => resolve()).write('hold'));
  const queued = exchange(mux.port('app'), 'queued', { until: (r) => r.toString().includes('queued') });
  const pool = mux.instance.pools.get('echo')!;
  await until(t, () => pool.queued === 1, 'the second client to be queued');
  t.equal((await statusJson(mux)).backends[0].queue, 1, '/status.json shows the queue');
  t.equal(metricValue((await adminRequest(mux, '/metrics')).body, 'sniffmux_backend_queue_length{backend="echo"}'), 1);

  b = await taggedOn(t, 'B', b.port);
  t.equal(firstLine((await queued).received), 'B', 'the queued client went to B as soon as it was up, while A was still busy');
  t.equal(pool.queued, 0);
});
