import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { httpPeer, RawClient, get } from '../helpers/http.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { taggedEcho, type TestServer } from '../helpers/servers.js';
import { nativeSpliceUnavailable } from '../../src/splice/native.js';

/**
 * The native thread accepts a listener's clients itself (no TCPWrap, no
 * JavaScript until its first bytes are peeked), and a client it cannot
 * carry becomes a net.Socket of the same descriptor. Whoever accepts, a user
 * sees the same: each test runs with the thread accepting and with Node
 * accepting (SNIFFMUX_NATIVE_ACCEPT=0, read when the listener is bound).
 */
if (nativeSpliceUnavailable !== null) {
  t.fail(`the native splice addon is needed for these tests and is unavailable: ${nativeSpliceUnavailable} (npm install builds it)`);
  process.exit(1);
}

type Accept = 'native' | 'node';
const MODES: readonly Accept[] = ['native', 'node'];

async function startAccepting(t: Tap, accept: Accept, raw: unknown): Promise<RunningMux> {
  const before = process.env.SNIFFMUX_NATIVE_ACCEPT;
  process.env.SNIFFMUX_NATIVE_ACCEPT = accept === 'native' ? '1' : '0';
  let mux: RunningMux;
  try {
    mux = await startMux(raw);
  } finally {
    if (before === undefined) delete process.env.SNIFFMUX_NATIVE_ACCEPT;
    else process.env.SNIFFMUX_NATIVE_ACCEPT = before;
  }
  t.teardown(() => mux.stop());
  return mux;
}

type Tap = { teardown(fn: () => unknown): void };

async function echoBackend(t: Tap, tag: string): Promise<TestServer> {
  const server = await taggedEcho(tag);
  t.teardown(() => server.close());
  return server;
}

const tcpConfig = (address: string, listen = '127.0.0.1:0', extra: object = {}) => ({
  frontends: [{ name: 'fe', listen: [listen], default: 'raw', ...extra }],
  backends: [{ name: 'raw', servers: [{ name: 'r1', address }] }],
});

for (const accept of MODES) {
  t.test(`${accept} accept: says who accepts, and splices a raw client with its address and bytes logged`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, tcpConfig(raw.address));
    const listening = await mux.waitForLog((l) => l.msg === 'listening');
    t.equal(listening.accept, accept, `the listening line says accept: ${accept}`);
    const client = await RawClient.connect(mux.port('fe'));
    const clientPort = client.socket.localPort;
    client.write('\x00ping');
    await client.until((r) => r.toString('latin1') === 'raw\n\x00ping');
    client.socket.end();
    await client.closed;
    const [line] = await mux.waitForConnections(1);
    t.equal(line!.client, `127.0.0.1:${clientPort}`, 'the client address and port');
    t.equal(line!.backend, 'raw');
    t.equal(line!.bytesIn, 5);
    t.equal(line!.bytesOut, 9);
    t.equal(line!.termination, 'client-close');
  });

  t.test(`${accept} accept: a client silent at first is spliced once it speaks; an HTTP-mode one is served by JavaScript`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const web = await httpPeer('web');
    t.teardown(() => web.close());
    const mux = await startAccepting(t, accept, {
      frontends: [
        {
          name: 'fe',
          listen: ['127.0.0.1:0'],
          inspect: { delay: '5s' },
          rules: [{ if: { protocol: 'http' }, use: 'web' }],
          default: 'raw',
        },
      ],
      backends: [
        { name: 'raw', servers: [{ name: 'r1', address: raw.address }] },
        { name: 'web', mode: 'http', servers: [{ name: 'w1', address: web.address }] },
      ],
    });
    const silent = await RawClient.connect(mux.port('fe'));
    t.teardown(() => silent.close());
    const http = await RawClient.connect(mux.port('fe'));
    t.teardown(() => http.close());
    http.write(get('/hello'));
    const response = await http.response();
    t.equal(response.status, 200, 'the HTTP client is answered by the http-mode backend');
    silent.write('\x00late');
    await silent.until((r) => r.toString('latin1') === 'raw\n\x00late');
    t.pass('the silent client, spliced once it spoke');
  });

  t.test(`${accept} accept: a client silent through the inspect delay goes to the default backend once it is over`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, tcpConfig(raw.address, '127.0.0.1:0', { inspect: { delay: '300ms' } }));
    const client = await RawClient.connect(mux.port('fe'));
    t.teardown(() => client.close());
    await client.until((r) => r.toString('latin1') === 'raw\n');
    client.socket.end();
    const [line] = await mux.waitForConnections(1);
    const timings = line!.timings as { sniff: number; total: number };
    t.ok(timings.sniff >= 299, `decided when the delay was over, counted from the accept (sniff ${timings.sniff} ms)`);
    t.equal(line!.protocol, 'none', 'nothing came: protocol none');
    t.equal(line!.backend, 'raw');
  });

  t.test(`${accept} accept: beyond maxconn a client waits, and is served once a slot frees`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, { global: { maxconn: 1 }, ...tcpConfig(raw.address) });
    const first = await RawClient.connect(mux.port('fe'));
    first.write('\x00one');
    await first.until((r) => r.toString('latin1') === 'raw\n\x00one');
    const second = await RawClient.connect(mux.port('fe'));
    t.teardown(() => second.close());
    second.write('\x00two');
    // A round trip on the first: by then the second has been accepted and is waiting.
    first.write('!');
    await first.until((r) => r.toString('latin1').endsWith('!'));
    t.equal(second.pending.length, 0, 'the second waits while the first is served');
    first.socket.end();
    await second.until((r) => r.toString('latin1') === 'raw\n\x00two');
    t.pass('served once the first closed');
  });

  t.test(`${accept} accept: many clients at once, more than the thread accepts before JavaScript hears of them`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, tcpConfig(raw.address));
    const COUNT = 200;
    const clients = await Promise.all(Array.from({ length: COUNT }, () => RawClient.connect(mux.port('fe'))));
    t.teardown(() => clients.forEach((c) => c.close()));
    clients.forEach((c, i) => c.write(`\x00${i}`));
    await Promise.all(clients.map((c, i) => c.until((r) => r.toString('latin1') === `raw\n\x00${i}`)));
    t.pass(`all ${COUNT} spliced, each to its own echo`);
    for (const c of clients) c.socket.end();
    const lines = await mux.waitForConnections(COUNT);
    t.equal(new Set(lines.map((l) => l.client)).size, COUNT, 'one line per client');
  });

  t.test(`${accept} accept: clients from several addresses take their turns; past the frontend's maxconn one waits unanswered until a slot frees`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, tcpConfig(raw.address, '127.0.0.1:0', { maxconn: 2 }));
    // A second address makes arrivals take their turns (fair start): the thread's clients wait as they are, then start.
    const from = async (localAddress: string, tag: string): Promise<RawClient> => {
      const socket = net.connect({ port: mux.port('fe'), host: '127.0.0.1', localAddress, allowHalfOpen: true }, () => socket.write(`\x00${tag}`));
      const client = await RawClient.connect(mux.port('fe'), socket);
      t.teardown(() => client.close());
      return client;
    };
    const a = await from('127.0.0.1', 'a');
    await a.until((r) => r.toString('latin1') === 'raw\n\x00a');
    const b = await from('127.0.0.2', 'b');
    await b.until((r) => r.toString('latin1') === 'raw\n\x00b');
    t.pass('a client from a second address is spliced');
    const c = await from('127.0.0.3', 'c');
    // Nothing to await for "not answered": a client that was served is echoed within milliseconds.
    await delay(300);
    t.equal(c.pending.toString('latin1'), '', 'the third gets no answer while two are open');
    t.equal(mux.instance.activeConnections, 2, 'the open connections are at the limit');
    a.socket.destroy();
    await c.until((r) => r.toString('latin1') === 'raw\n\x00c');
    t.pass('once one closes, the third is spliced with its bytes');
  });

  t.test(`${accept} accept: an IPv6 listener logs the client's IPv6 address`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, tcpConfig(raw.address, '[::1]:0'));
    const socket = net.connect({ host: '::1', port: mux.port('fe'), allowHalfOpen: true });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = await RawClient.connect(mux.port('fe'), socket);
    const clientPort = socket.localPort;
    client.write('\x00v6');
    await client.until((r) => r.toString('latin1') === 'raw\n\x00v6');
    client.socket.end();
    const [line] = await mux.waitForConnections(1);
    t.equal(line!.client, `[::1]:${clientPort}`, 'the client address and port');
  });

  t.test(`${accept} accept: once stopped, the port refuses; the connections it had finish`, async (t) => {
    const raw = await echoBackend(t, 'raw');
    const mux = await startAccepting(t, accept, { global: { grace: '5s' }, ...tcpConfig(raw.address) });
    const port = mux.port('fe');
    const open = await RawClient.connect(port);
    open.write('\x00kept');
    await open.until((r) => r.toString('latin1') === 'raw\n\x00kept');
    const stopped = mux.stop();
    const refused = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const tryOnce = (): void => {
        const probe = net.connect(port, '127.0.0.1');
        probe.once('connect', () => {
          // The listener closes in the thread: a probe just before may still be accepted (and is served, then drained).
          probe.destroy();
          setImmediate(tryOnce);
        });
        probe.once('error', resolve);
      };
      tryOnce();
      setTimeout(() => reject(new Error('the port still accepts')), 5000).unref();
    });
    t.equal(refused.code, 'ECONNREFUSED', 'the port refuses new clients');
    open.write('+');
    await open.until((r) => r.toString('latin1').endsWith('+'));
    t.pass('the open connection still works while the proxy drains');
    open.socket.end();
    await stopped;
  });
}
