import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { startCli } from '../helpers/cli.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { closedPort, firstLine, taggedEcho, type TestServer } from '../helpers/servers.js';
import { parseProxyHeader } from '../../src/sniff/proxy-protocol.js';
import { tempDir } from '../helpers/temp-dir.js';

type Teardown = { teardown(fn: () => unknown): void };

async function servers(t: Teardown, names: string[]): Promise<Map<string, TestServer>> {
  const map = new Map<string, TestServer>();
  for (const name of names) map.set(name, await taggedEcho(name));
  t.teardown(() => Promise.all([...map.values()].map((s) => s.close())));
  return map;
}

async function mux(t: Teardown, backend: Record<string, unknown>): Promise<RunningMux> {
  const m = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '50ms' }, default: 'b' }],
    backends: [{ name: 'b', ...backend }],
  });
  t.teardown(() => m.stop());
  return m;
}

/** The server that greeted each held connection (held connections are pushed as greeted, not in the order they were opened). */
const servedBy = new WeakMap<net.Socket, string>();

/** Opens a connection (from `localAddress`) and resolves with the server that greeted it; keeps it open when `hold`. */
function whoServes(port: number, opts: { localAddress?: string; hold?: net.Socket[] } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress ?? '127.0.0.1' }, () => s.write('\x00'));
    s.once('data', (d: Buffer) => {
      resolve(firstLine(d));
      servedBy.set(s, firstLine(d));
      if (opts.hold) opts.hold.push(s);
      else s.destroy();
    });
    s.on('error', reject);
  });
}

/** 60 clients, each from its own loopback address. */
const CLIENTS = Array.from({ length: 60 }, (_, i) => `127.0.${2 + Math.floor(i / 30)}.${1 + (i % 30)}`);

/** The server each of CLIENTS lands on through this port, one client after the other. */
async function serversFor(port: number): Promise<string[]> {
  const seen: string[] = [];
  for (const ip of CLIENTS) seen.push(await whoServes(port, { localAddress: ip }));
  return seen;
}

function tally(names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

t.test('roundrobin with weights: 3:1:1 over 50 connections', async (t) => {
  const s = await servers(t, ['a', 'b', 'c']);
  const m = await mux(t, {
    servers: [
      { name: 'a', address: s.get('a')!.address, weight: 3 },
      { name: 'b', address: s.get('b')!.address },
      { name: 'c', address: s.get('c')!.address },
    ],
  });
  const seen: string[] = [];
  for (let i = 0; i < 50; i++) seen.push(await whoServes(m.port('fe')));
  t.same(tally(seen), { a: 30, b: 10, c: 10 });
});

t.test('leastconn sends new connections to the least busy server', async (t) => {
  const s = await servers(t, ['a', 'b']);
  const m = await mux(t, { balance: 'leastconn', servers: [...s].map(([name, srv]) => ({ name, address: srv.address })) });
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((x) => x.destroy()));
  const first = await Promise.all([0, 1, 2, 3].map(() => whoServes(m.port('fe'), { hold: held })));
  t.same(tally(first), { a: 2, b: 2 }, 'four held connections spread evenly');
  held.filter((x) => servedBy.get(x) === 'a').forEach((x) => x.destroy());
  await m.waitForLog((l) => l.msg === 'connection' && m.connections().filter((c) => c.server === 'a').length === 2);
  t.same(await Promise.all([0, 1].map(() => whoServes(m.port('fe'), { hold: held }))), ['a', 'a'], 'a, now idle, takes the next two');
});

t.test('first fills one server to its maxconn before the next', async (t) => {
  const s = await servers(t, ['a', 'b']);
  const m = await mux(t, {
    balance: 'first',
    servers: [
      { name: 'a', address: s.get('a')!.address, maxconn: 3 },
      { name: 'b', address: s.get('b')!.address },
    ],
  });
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((x) => x.destroy()));
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) seen.push(await whoServes(m.port('fe'), { hold: held }));
  t.same(seen, ['a', 'a', 'a', 'b', 'b']);
});

t.test('source: two sniffmux instances agree per client; removing a server moves only its clients', async (t) => {
  const names = ['s1', 's2', 's3', 's4'];
  const s = await servers(t, names);
  const list = (keep: string[]) => keep.map((name) => ({ name, address: s.get(name)!.address }));
  const one = await mux(t, { balance: 'source', servers: list(names) });
  const two = await mux(t, { balance: 'source', servers: list(names) });
  const without = await mux(t, { balance: 'source', servers: list(['s1', 's2', 's4']) });
  const first = await serversFor(one.port('fe'));
  t.same(await serversFor(two.port('fe')), first, 'the same server for every client from both instances');
  t.ok(Object.keys(tally(first)).length === 4, `all four servers get clients: ${JSON.stringify(tally(first))}`);
  const after = await serversFor(without.port('fe'));
  const moved = CLIENTS.filter((_, i) => after[i] !== first[i]);
  t.ok(moved.length > 0, 'some clients moved');
  t.ok(
    CLIENTS.every((_, i) => after[i] === first[i] || first[i] === 's3'),
    'only clients of the removed server s3 moved',
  );
});

t.test('source: two sniffmux processes run from one config file send every client to the same server', async (t) => {
  const names = ['s1', 's2', 's3', 's4'];
  const s = await servers(t, names);
  const file = path.join(tempDir('smx-source-'), 'sniffmux.yaml');
  const serverLines = names.map((name) => `      - { name: ${name}, address: ${s.get(name)!.address} }\n`).join('');
  writeFileSync(
    file,
    `frontends:\n  - name: fe\n    listen: [127.0.0.1:0]\n    inspect: { delay: 50ms }\n    default: b\nbackends:\n  - name: b\n    balance: source\n    servers:\n${serverLines}`,
  );
  const [one, two] = await Promise.all(
    [0, 1].map(async () => {
      const cli = startCli(['run', '-c', file]);
      t.teardown(() => {
        cli.child.kill('SIGTERM');
        return cli.exited();
      });
      return Number((await cli.waitFor(/"port":(\d+),"msg":"listening"/))[1]);
    }),
  );
  const first = await serversFor(one!);
  t.same(await serversFor(two!), first, 'each client gets the same server from both processes');
  t.equal(Object.keys(tally(first)).length, 4, `the clients are spread over all four servers: ${JSON.stringify(tally(first))}`);
});

t.test('backup servers take connections only when no regular server can', async (t) => {
  const s = await servers(t, ['spare']);
  const down = await closedPort();
  const m = await mux(t, {
    retries: 2,
    servers: [
      { name: 'main', address: `127.0.0.1:${down}` },
      { name: 'spare', address: s.get('spare')!.address, backup: true },
    ],
  });
  t.equal(await whoServes(m.port('fe')), 'spare', 'the main server refuses: the backup serves');
  const line = await m.waitForLog((l) => l.msg === 'connection');
  t.equal(line.server, 'spare');
});

t.test('PROXY v1 to a backend: the client address as a backend parses it', async (t) => {
  const received: Buffer[] = [];
  let got!: () => void;
  const arrived = new Promise<void>((r) => (got = r));
  const backend = net.createServer((sock) => {
    sock.on('data', (d: Buffer) => {
      received.push(d);
      if (Buffer.concat(received).includes('hello')) got();
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => backend.close());
  const m = await mux(t, { proxyProtocol: 'v1', servers: [{ name: 'p', address: `127.0.0.1:${(backend.address() as net.AddressInfo).port}` }] });
  const client = net.connect({ port: m.port('fe'), host: '127.0.0.1', localAddress: '127.0.0.9' }, () => client.write('hello'));
  client.on('error', () => {});
  await arrived;
  const bytes = Buffer.concat(received);
  const parsed = parseProxyHeader(bytes);
  t.equal(parsed.kind, 'header');
  if (parsed.kind !== 'header') return;
  t.match(parsed.header, { version: 1, family: 'TCP4', source: { address: '127.0.0.9', port: client.localPort }, destination: { port: m.port('fe') } });
  t.equal(bytes.subarray(parsed.length).toString(), 'hello', 'then the client bytes, untouched');
  client.destroy();
});
