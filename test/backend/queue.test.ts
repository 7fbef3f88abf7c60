import t from 'tap';
import net from 'node:net';
import { holdingPeer, RawClient, get } from '../helpers/http.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { exchange, taggedEcho } from '../helpers/servers.js';

type Teardown = { teardown(fn: () => unknown): void };

/** Per-server maxconn with a bounded queue and timeouts.queue. */
async function setup(t: Teardown, queue: string, backend: Record<string, unknown> = {}) {
  const server = await taggedEcho('s1');
  const mux = await startMux(
    {
      frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '100ms' }, default: 'b' }],
      backends: [{ name: 'b', timeouts: { queue }, servers: [{ name: 's1', address: server.address, maxconn: 1 }], ...backend }],
    },
    { level: 'debug' },
  );
  t.teardown(async () => {
    await mux.stop();
    await server.close();
  });
  return mux;
}

/** Opens a connection and resolves once the backend has greeted it. */
function hold(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('\x00'));
    s.once('data', () => resolve(s));
    s.once('error', reject);
  });
}

t.test('a connection beyond maxconn waits in the queue and gets the freed slot', async (t) => {
  const mux = await setup(t, '10s');
  const first = await hold(mux.port('fe'));
  const secondGreeted = hold(mux.port('fe'));
  const queued = await mux.waitForLog((l) => l.msg === 'connection queued');
  t.equal(queued.queued, 1, 'the second connection is queued');
  first.end();
  const second = await secondGreeted;
  t.pass('the second connection got the slot when the first closed');
  second.destroy();
  const lines = await Promise.all([0, 1].map((i) => mux.waitForLog((l) => l.msg === 'connection' && mux.connections().indexOf(l) === i)));
  t.ok((lines[1]!.timings as { queue: number }).queue > 0, 'its log line shows time spent queued');
});

t.test('a queued connection that times out ends with queue-timeout, a 503 for HTTP', async (t) => {
  const mux = await setup(t, '200ms');
  const first = await hold(mux.port('fe'));
  const { received } = await exchange(mux.port('fe'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(received.toString(), /^HTTP\/1\.1 503 /);
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.termination === 'queue-timeout');
  t.equal(line.backend, 'b');
  t.ok((line.timings as { queue: number }).queue >= 190);
  first.destroy();
});

/** Resolves with the log line of the next connection refused with no-server, once it is written. */
function nextNoServer(mux: RunningMux): Promise<Record<string, unknown>> {
  const before = mux.connections().filter((l) => l.termination === 'no-server').length;
  return mux.waitForLog((l) => l.msg === 'connection' && l.termination === 'no-server' && mux.connections().filter((c) => c.termination === 'no-server').length > before);
}

t.test('beyond maxqueue a connection is refused at once (no-server, a 503 for HTTP); the queued ones are still served', async (t) => {
  const mux = await setup(t, '10s', { maxqueue: 2 });
  const first = await hold(mux.port('fe'));
  const queued = [hold(mux.port('fe'))];
  await mux.waitForLog((l) => l.msg === 'connection queued' && l.queued === 1);
  queued.push(hold(mux.port('fe')));
  await mux.waitForLog((l) => l.msg === 'connection queued' && l.queued === 2);

  const refusedLine = nextNoServer(mux);
  const raw = await exchange(mux.port('fe'), '\x00');
  t.equal(raw.received.length, 0, 'a raw client is closed without a byte');
  t.match(await refusedLine, { backend: 'b', server: null, timings: { queue: 0 } }, 'logged as no-server, without waiting in the queue');
  const refusedHttpLine = nextNoServer(mux);
  const http = await exchange(mux.port('fe'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(http.received.toString(), /^HTTP\/1\.1 503 /, 'an HTTP client gets a 503');
  t.match(await refusedHttpLine, { protocol: 'http', timings: { queue: 0 } });

  first.destroy();
  const second = await queued[0]!;
  t.pass('the first queued connection is served when the slot frees');
  second.destroy();
  (await queued[1]!).destroy();
  t.pass('and the second after it');
});

t.test('http mode: beyond maxqueue a request gets a 503 at once; the queued one is still served', async (t) => {
  const web = await holdingPeer('slow');
  t.teardown(() => web.close());
  const mux = await startMux(
    {
      frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'b' }],
      backends: [{ name: 'b', mode: 'http', maxqueue: 1, timeouts: { queue: '10s' }, servers: [{ name: 'w1', address: web.address, maxconn: 1 }] }],
    },
    { level: 'debug' },
  );
  t.teardown(() => mux.stop());
  const clients = await Promise.all([0, 1, 2].map(() => RawClient.connect(mux.port('fe'))));
  t.teardown(() => clients.forEach((c) => c.close()));
  const [holder, waiting, refused] = clients as [RawClient, RawClient, RawClient];
  holder.write(get('/1'));
  await web.held;
  waiting.write(get('/2'));
  await mux.waitForLog((l) => l.msg === 'request queued' && l.path === '/2');
  refused.write(get('/3'));
  t.equal((await refused.response()).status, 503, 'the request beyond the queue gets a 503');
  refused.close();
  t.match(await mux.waitForLog((l) => l.msg === 'connection' && l.path === '/3'), { termination: 'no-server', timings: { queue: 0 } });
  web.release();
  t.equal((await holder.response()).body.toString(), 'served /1');
  t.equal((await waiting.response()).body.toString(), 'served /2', 'the queued request is served when the slot frees');
});
