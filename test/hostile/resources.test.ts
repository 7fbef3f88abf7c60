/**
 * Issue 7, item 6: resource ceilings.
 *
 * Running out of file descriptors (sslh's CVE-2025-46807): the real binary
 * runs under `ulimit -n 256` and gets far more connections than that allows.
 * It must stay below the limit itself (libuv, on EMFILE, accepts and closes
 * every client in the backlog, silently): serve as many as its descriptor
 * budget allows, hold the next ones unread and serve them once connections
 * close, refuse the rest with a log line each (Node cannot stop accepting),
 * never cut a connection it already serves, keep its servers up, and serve
 * new clients afterwards.
 *
 * Memory pressure: the binary runs with a small V8 heap
 * (--max-old-space-size) and gets more sniffing connections than the heap
 * holds. It must shed the excess instead of aborting, and accept again once
 * they close.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { echoServer } from '../helpers/servers.js';
import { DESCRIPTOR_HEADROOM } from '../../src/runtime/descriptors.js';
import { connectOnly, descriptorSampler, destroyAll, echoStream, fmt, httpOnce, mb, pool, rssSampler, scale, scenario, sha256, sleep, source, startBinary } from './lib.js';

const NOFILE = 256;

interface Client {
  readonly socket: net.Socket;
  state: 'waiting' | 'served' | 'closed';
  /** Bytes echoed back after the banner. */
  got: Buffer[];
  /** `address:port` as sniffmux logs it, once connected. */
  name: string;
}

const BANNER = 'SSH-2.0-fd\r\n';

/** Connects and sends a banner; 'served' once the echo of the banner is back. */
function open(port: number, i: number): Client {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: source(i, 20), allowHalfOpen: true });
  const client: Client = { socket, state: 'waiting', got: [], name: '' };
  let echoed = 0;
  socket.on('connect', () => {
    client.name = `${socket.localAddress}:${socket.localPort}`;
    socket.write(BANNER);
  });
  socket.on('data', (d: Buffer) => {
    if (echoed < BANNER.length) {
      const take = Math.min(BANNER.length - echoed, d.length);
      echoed += take;
      if (echoed === BANNER.length) client.state = 'served';
      d = d.subarray(take);
    }
    if (d.length > 0) client.got.push(d);
  });
  const closed = (): void => {
    if (client.state !== 'served') client.state = 'closed';
  };
  socket.on('end', closed);
  socket.on('close', closed);
  socket.on('error', () => {});
  return client;
}

/** A served client sends `size` bytes and checks the echo: the bytes lost (0 when intact). */
function verify(client: Client, size: number): Promise<number> {
  const data = randomBytes(size);
  client.got = [];
  client.socket.write(data);
  return new Promise((resolve) => {
    const deadline = setTimeout(() => finish(), 10_000);
    const check = (): void => {
      if (Buffer.concat(client.got).length >= size) finish();
    };
    const finish = (): void => {
      clearTimeout(deadline);
      client.socket.removeListener('data', check);
      const back = Buffer.concat(client.got);
      resolve(back.length === size && sha256(back) === sha256(data) ? 0 : size);
    };
    client.socket.on('data', check);
    check();
  });
}

const count = (clients: Client[], state: Client['state']): number => clients.filter((c) => c.state === state).length;

/** Resolves once `settled()` holds (checked every 50 ms), or after `withinMs` anyway: the assertions that follow say what was reached. */
async function until(settled: () => boolean, withinMs: number): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!settled() && performance.now() < deadline) await sleep(50);
}

t.test('file descriptors', async (t) => {
  const echo = await echoServer();
  const web = http.createServer((req, res) => (req.resume(), res.end('ok')));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    await echo.close();
    web.closeAllConnections();
    web.close();
  });

  await scenario(t, 'resources: out of file descriptors (ulimit -n 256)', async (t) => {
    const mux = await startBinary(
      {
        global: { grace: '1s' },
        admin: { listen: '127.0.0.1:0' },
        frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '500ms' }, rules: [{ if: { protocol: 'http' }, use: 'web' }], default: 'echo' }],
        backends: [
          { name: 'echo', healthCheck: { type: 'tcp', interval: '100ms', fall: 2, rise: 1 }, servers: [{ name: 'e1', address: echo.address }] },
          { name: 'web', mode: 'http', servers: [{ name: 'w1', address: `127.0.0.1:${(web.address() as net.AddressInfo).port}` }] },
        ],
      },
      { nofile: NOFILE },
    );
    t.teardown(() => mux.stop());
    const port = mux.port('fe');
    const rss = rssSampler(mux.pid);
    const descriptors = descriptorSampler(mux.pid);
    const total = scale(400, 1500);

    // The budget sniffmux made from its open-file limit, said at start.
    const said = mux.logs.find((l) => typeof l.openFileLimit === 'number');
    t.ok(said, `it says what the limit allows at start: ${said ? JSON.stringify(said.msg) : 'nothing'}`);
    const budget = { connections: Number(said?.connections ?? 0), held: Number(said?.held ?? 0) };
    t.equal(said?.openFileLimit, NOFILE, 'read from the process\'s own limit');
    t.ok(budget.connections > 20 && budget.held > 0 && 2 * budget.connections + budget.held < NOFILE, `${budget.connections} served and ${budget.held} held fit in ${NOFILE} descriptors`);

    const clients: Client[] = [];
    for (let i = 0; i < total; i++) {
      clients.push(open(port, i));
      if (i % 50 === 49) await sleep(20);
    }
    // Every client is soon served, held (still waiting, unread) or refused.
    await until(() => count(clients, 'served') + count(clients, 'closed') >= total - budget.held, 10_000);
    await sleep(300); // nothing more happens to the held ones while every slot is taken
    const served1 = count(clients, 'served');
    const waiting1 = count(clients, 'waiting');
    const closed1 = count(clients, 'closed');
    t.equal(mux.child.exitCode, null, 'sniffmux is still running');
    t.equal(served1, budget.connections, `${served1} of ${total} served at once: the budget`);
    t.equal(waiting1, budget.held, `${waiting1} held unread, as many as the budget holds`);
    const refusals = new Map(
      mux.logs.filter((l) => l.msg === 'connection' && l.termination === 'maxconn').map((l) => [String(l.client), String(l.reason)]),
    );
    const closedClients = clients.filter((c) => c.state === 'closed');
    const unexplained = closedClients.filter((c) => !/^out of file descriptors/.test(refusals.get(c.name) ?? ''));
    t.same(unexplained.map((c) => c.name), [], `each of the ${closed1} closed clients was refused by sniffmux, with a log line saying why (none closed silently by libuv)`);
    const shortage = mux.logs.find((l) => l.level === 'warn' && /out of file descriptors/.test(l.msg));
    t.notOk(shortage, `sniffmux never ran out of descriptors (no EMFILE on accept or connect)${shortage ? `: ${JSON.stringify(shortage)}` : ''}`);

    // The connections being served are not disturbed: each echoes 64 KB intact.
    const servedClients = clients.filter((c) => c.state === 'served');
    const lost1 = (await Promise.all(servedClients.map((c) => verify(c, 65536)))).reduce((a, b) => a + b, 0);
    t.equal(lost1, 0, `the ${servedClients.length} served connections echo 64 KB each, intact`);

    // Slots free: every held connection is served now.
    const heldClients = clients.filter((c) => c.state === 'waiting');
    for (const c of servedClients) c.socket.destroy();
    await until(() => heldClients.every((c) => c.state !== 'waiting'), 10_000);
    const lateServed = heldClients.filter((c) => c.state === 'served');
    t.equal(lateServed.length, heldClients.length, `all ${heldClients.length} held connections were served once slots freed (none closed)`);
    const lost2 = (await Promise.all(lateServed.map((c) => verify(c, 4096)))).reduce((a, b) => a + b, 0);
    t.equal(lost2, 0, 'and echo intact');
    for (const c of clients) c.socket.destroy();
    await until(() => mux.count((l) => l.msg === 'connection') >= total, 5000);

    // Recovered: fresh clients are served, through both routes.
    const fresh = await echoStream(port, 65536, { timeoutMs: 5000 });
    t.equal(fresh.error, null, 'a new raw TCP client is served');
    const reply = await httpOnce(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    t.match(reply, /^HTTP\/1\.1 200/, 'a new HTTP client is served');
    t.notOk(
      mux.logs.some((l) => l.msg === 'server down'),
      'the health check did not blame the server for our lack of descriptors',
    );
    const cut = mux.logs.filter((l) => l.msg === 'connection' && ['connect-error', 'connect-timeout'].includes(String(l.termination))).length;
    t.equal(cut, 0, 'no accepted connection failed for want of a descriptor to its server');
    const peak = rss.stop();
    // Clients waiting to start take a second descriptor once served, the native thread holds some of its own: all in the budget.
    const mostOpen = descriptors.stop();
    t.ok(mostOpen <= NOFILE - DESCRIPTOR_HEADROOM, `its headroom stayed free: at most ${mostOpen} descriptors open of ${NOFILE}`);
    t.equal(mux.child.exitCode, null, 'still running');
    return {
      load: `${fmt(total)} connections at once against ulimit -n ${NOFILE}`,
      faults: 'more clients than the open-file limit allows, in bursts of 50',
      bytesLost: lost1 + lost2 + fresh.lost,
      maxRssMB: mb(peak),
      rssOf: 'sniffmux' as const,
      figures: `${served1} served at once (the budget for ${NOFILE} descriptors), ${waiting1} held and served once slots freed, ${closed1} refused by sniffmux with a log line each, 0 closed silently, EMFILE never reached, at most ${mostOpen} descriptors open; new clients served; server never marked down`,
    };
  });

  await scenario(t, 'resources: memory pressure (--max-old-space-size=64)', async (t) => {
    const heapMB = 64;
    const mux = await startBinary(
      {
        global: { grace: '1s' },
        frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '20s' }, rules: [{ if: { protocol: 'http' }, use: 'web' }], default: 'echo' }],
        backends: [
          { name: 'echo', servers: [{ name: 'e1', address: echo.address }] },
          { name: 'web', mode: 'http', servers: [{ name: 'w1', address: `127.0.0.1:${(web.address() as net.AddressInfo).port}` }] },
        ],
      },
      { env: { NODE_OPTIONS: `--max-old-space-size=${heapMB}` } },
    );
    t.teardown(() => mux.stop());
    const port = mux.port('fe');
    const rss = rssSampler(mux.pid);
    const total = scale(8000, 15_000);
    let refused = 0;
    // Each sends 8 KB of a request line that never ends: it stays sniffing, holding its bytes.
    const line = `GET /${'a'.repeat(8000)}`;
    const sockets = await pool(total, 300, async (i) => {
      const socket = await connectOnly(port, source(i, 20)).catch(() => null);
      if (socket === null) {
        refused++;
        return null;
      }
      socket.on('data', () => {});
      socket.write(line);
      return socket;
    });
    // sniffmux accepts behind the kernel: wait until it has seen them all (or shed some).
    await mux.waitForLog((l) => l.msg.startsWith('memory is tight'), 15_000).catch(() => null);
    await sleep(1000);
    t.equal(mux.child.signalCode, null, 'V8 did not abort the process');
    t.equal(mux.child.exitCode, null, 'sniffmux is still running');
    const tight = mux.logs.find((l) => l.msg.startsWith('memory is tight'));
    t.ok(tight, `it shed connections when the heap was tight (${tight ? `${tight.heapUsedMB} of ${tight.heapLimitMB} MB, ${tight.active} connections open` : 'never'})`);
    refused += mux.count((l) => l.msg === 'connection' && l.termination === 'maxconn');
    t.ok(refused > 0, `${fmt(refused)} of ${fmt(total)} connections refused`);
    for (const s of sockets) s?.destroy();
    destroyAll();
    // Recovery: new clients are served again once the flood has closed (sniffmux first has to see it close).
    const closedAt = performance.now();
    let fresh = await echoStream(port, 65536, { timeoutMs: 5000 });
    while (fresh.error && performance.now() - closedAt < 10_000) {
      await sleep(250);
      fresh = await echoStream(port, 65536, { timeoutMs: 5000 });
    }
    const recoveredAfter = performance.now() - closedAt;
    t.equal(fresh.error, null, `once they closed, a new raw TCP client is served (after ${Math.round(recoveredAfter)} ms)`);
    if (fresh.error) t.comment(mux.other().slice(-2000));
    const reply = await httpOnce(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n').catch((e: Error) => e.message);
    t.match(reply, /^HTTP\/1\.1 200/, 'and a new HTTP client right after it');
    if (!reply.startsWith('HTTP/1.1 200')) {
      // The flood came from 127.0.1.x, the new clients from 127.0.0.1: their lines, once the HTTP client's (served or refused) is logged.
      const newClient = (l: { msg: string; client?: unknown }): boolean => l.msg === 'connection' && String(l.client).startsWith('127.0.0.1:');
      await mux.waitForLog((l) => newClient(l) && (l.protocol === 'http' || l.termination === 'maxconn'), 3000).catch(() => null);
      t.comment(JSON.stringify([...mux.logs.filter((l) => l.msg !== 'connection').slice(-10), ...mux.logs.filter(newClient)]));
      t.comment(`sniffmux: exit ${mux.child.exitCode} signal ${mux.child.signalCode}; ${mux.other().slice(-2000)}`);
    }
    const flips = mux.count((l) => l.msg.startsWith('memory is tight'));
    t.comment(`memory went tight ${flips} time(s) during the flood and its drain`);
    const peak = rss.stop();
    return {
      load: `${fmt(total)} connections each holding 8 KB of an unfinished request line, heap limit ${heapMB} MB`,
      faults: 'more sniffing connections than the V8 heap can hold',
      bytesLost: fresh.lost,
      maxRssMB: mb(peak),
      rssOf: 'sniffmux' as const,
      figures: `tight at ${tight?.heapUsedMB ?? '?'} MB with ${fmt(Number(tight?.active ?? 0))} open: ${fmt(refused)} refused instead of an abort; serving again ${Math.round(recoveredAfter)} ms after they closed`,
    };
  });
});
