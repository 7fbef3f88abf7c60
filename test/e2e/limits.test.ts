import t from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RawClient } from '../helpers/http.js';
import { startMux } from '../helpers/mux.js';
import { exchange, firstLine, taggedEcho } from '../helpers/servers.js';

type Teardown = { teardown(fn: () => unknown): void };

async function setup(t: Teardown, global: Record<string, unknown>, delay = '30s') {
  const silentBackend = await taggedEcho('none-route');
  const web = await taggedEcho('web');
  const mux = await startMux({
    global,
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        inspect: { delay },
        rules: [{ if: { protocol: 'none' }, use: 'silent' }],
        default: 'web',
      },
    ],
    backends: [
      { name: 'silent', servers: [{ name: 'n1', address: silentBackend.address }] },
      { name: 'web', servers: [{ name: 'w1', address: web.address }] },
    ],
  });
  const sockets: net.Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await mux.stop();
    await silentBackend.close();
    await web.close();
  });
  /** Opens `n` connections that send nothing, from `sources` loopback addresses (127.0.0.1 first); resolves once all are connected. */
  const silent = (n: number, sources = 1): Promise<net.Socket[]> =>
    Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          new Promise<net.Socket>((resolve, reject) => {
            const localAddress = `127.0.1.${1 + (i % sources)}`.replace(/^127\.0\.1\.1$/, '127.0.0.1');
            const s = net.connect({ port: mux.port('fe'), host: '127.0.0.1', localAddress }, () => resolve(s));
            s.on('error', reject);
            s.on('data', () => {});
            sockets.push(s);
          }),
      ),
    );
  return { mux, silent };
}

/** An HTTP request from another loopback address, as a real client elsewhere would be. */
function realClient(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.once('data', (d: Buffer) => {
      resolve(firstLine(d));
      s.destroy();
    });
    s.on('error', reject);
  });
}

t.test('2,000 silent clients do not delay a real one', async (t) => {
  const { mux, silent } = await setup(t, {});
  await silent(2000, 20);
  t.equal(await realClient(mux.port('fe')), 'web', 'the real client is routed');
  const line = await mux.waitForLog((l) => l.msg === 'connection' && String(l.client).startsWith('127.0.0.2:'));
  t.ok((line.timings as { sniff: number }).sniff < 1000, `decided on its request line, not after the 30 s delay (${(line.timings as { sniff: number }).sniff} ms)`);
  t.ok(mux.instance.activeConnections >= 2000, 'the silent ones are all still open, waiting');
});

t.test('sniff budget per source: one address cannot hold more than its share', async (t) => {
  const { mux, silent } = await setup(t, { sniffBudget: { perSource: 50 } });
  await silent(50);
  const refused = await exchange(mux.port('fe'), null);
  t.equal(refused.received.length, 0, 'the 51st connection from that address is closed');
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.termination === 'maxconn');
  t.match(line.client, /^127\.0\.0\.1:/);
  t.equal(await realClient(mux.port('fe')), 'web', 'another address is served');
});

t.test('a refused IPv6 client is logged as [address]:port, as the connection lines are', async (t) => {
  const web = await taggedEcho('web');
  const mux = await startMux({
    global: { sniffBudget: { perSource: 1 } },
    frontends: [{ name: 'fe', listen: ['[::1]:0'], inspect: { delay: '30s' }, default: 'web' }],
    backends: [{ name: 'web', servers: [{ name: 'w1', address: web.address }] }],
  });
  const silent = net.connect({ host: '::1', port: mux.port('fe') });
  t.teardown(async () => {
    silent.destroy();
    await mux.stop();
    await web.close();
  });
  await new Promise((resolve, reject) => silent.once('connect', resolve).once('error', reject));
  const refused = net.connect({ host: '::1', port: mux.port('fe') });
  const refusedPort = await new Promise<number>((resolve, reject) => refused.once('connect', () => resolve(refused.localPort!)).once('error', reject));
  await new Promise((resolve) => refused.once('close', resolve).resume());
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.termination === 'maxconn');
  t.equal(line.client, `[::1]:${refusedPort}`, 'the address in brackets, then the port');
});

t.test('sniff budget in total: past it, the oldest sniffing connection is decided at once', async (t) => {
  const { mux, silent } = await setup(t, { sniffBudget: { total: 20 } });
  const first = (await silent(1))[0]!;
  const greeted = new Promise<string>((resolve) => first.once('data', (d: Buffer) => resolve(firstLine(d))));
  const younger = await silent(20);
  t.equal(await greeted, 'none-route', 'the oldest silent client went to its protocol: none route without waiting 30 s');
  t.equal(await realClient(mux.port('fe')), 'web');
  // Only the oldest: had the one it handed over to entered the budget again, it would have pushed out the next
  // oldest, and so on down to the newest, all greeted as the 21st arrived (before the real client connected).
  t.equal(younger.filter((s) => s.bytesRead > 0).length, 0, 'the 20 younger ones are still sniffing, not greeted');
});

t.test('global maxconn holds the next connection, unanswered, until one closes', async (t) => {
  const { mux, silent } = await setup(t, { maxconn: 3 }, '100ms');
  const held = await silent(3);
  // The three silent ones are routed to the none route after 100 ms and stay open there.
  await Promise.all(held.map((s) => new Promise((r) => s.once('data', r))));
  const fourth = await RawClient.connect(mux.port('fe'));
  t.teardown(() => fourth.close());
  fourth.write('\x00held');
  // Well past the inspect delay: a fourth connection that was served would have been greeted and echoed by now.
  await sleep(400);
  t.equal(fourth.pending.toString('latin1'), '', 'the fourth connection gets no answer while three are open');
  t.equal(mux.instance.activeConnections, 3, 'the open connections are at the limit');
  held[0]!.destroy();
  const served = await fourth.until((r) => r.includes('\x00held'));
  t.equal(served.toString('latin1'), 'web\n\x00held', 'once one closes, the fourth is routed and its bytes echoed');
});
