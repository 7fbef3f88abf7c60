import t from 'tap';
import { BackendPool } from '../../src/backend/pool.js';
import type { Backend, BalanceAlgorithm } from '../../src/config/types.js';
import type { ServerState } from '../../src/backend/server-state.js';

function pool(balance: BalanceAlgorithm, servers: { name: string; weight?: number; backup?: boolean; maxconn?: number }[]): BackendPool {
  const config: Backend = {
    name: 'b',
    mode: 'tcp',
    balance,
    retries: 2,
    maxqueue: 10_000,
    timeouts: { connect: 1000, server: 1000, tunnel: null, queue: 1000 },
    proxyProtocol: null,
    tls: null,
    healthCheck: null,
    http: { forwardedFor: false, trustForwarded: [], rewrite: null, stickyCookie: null },
    servers: servers.map((s, i) => ({
      name: s.name,
      address: { host: '127.0.0.1', port: 1000 + i, text: `127.0.0.1:${1000 + i}` },
      maxconn: s.maxconn ?? 0,
      weight: s.weight ?? 1,
      backup: s.backup ?? false,
    })),
  };
  return new BackendPool(config);
}

const none = new Set<ServerState>();

function picks(p: BackendPool, n: number, ip = '127.0.0.1'): string[] {
  return Array.from({ length: n }, () => p.pick(none, ip)!.name);
}

t.test('roundrobin alternates, smoothly by weight', async (t) => {
  t.same(picks(pool('roundrobin', [{ name: 'a' }, { name: 'b' }, { name: 'c' }]), 6), ['a', 'b', 'c', 'a', 'b', 'c']);
  const weighted = picks(pool('roundrobin', [{ name: 'a', weight: 5 }, { name: 'b' }, { name: 'c' }]), 7);
  t.same(weighted, ['a', 'a', 'b', 'a', 'c', 'a', 'a'], 'weights 5,1,1 interleave rather than burst');
});

t.test('a server already tried is skipped; none left gives null', async (t) => {
  const p = pool('roundrobin', [{ name: 'a' }, { name: 'b' }]);
  const tried = new Set<ServerState>([p.servers[0]!]);
  t.equal(p.pick(tried, 'x')!.name, 'b');
  tried.add(p.servers[1]!);
  t.equal(p.pick(tried, 'x'), null);
});

t.test('backup servers only when no regular server is available', async (t) => {
  const p = pool('roundrobin', [{ name: 'a' }, { name: 'spare', backup: true }]);
  t.same(picks(p, 3), ['a', 'a', 'a']);
  p.servers[0]!.up = false;
  t.same(picks(p, 2), ['spare', 'spare']);
});

t.test('a regular server at its maxconn makes connections wait, not spill to the backup', async (t) => {
  const p = pool('roundrobin', [{ name: 'a', maxconn: 1 }, { name: 'spare', backup: true }]);
  t.equal(p.pick(none, 'x')!.name, 'a');
  p.servers[0]!.active = 1;
  t.equal(p.pick(none, 'x'), null, 'none now: the connection queues for a');
  t.equal(p.pick(new Set([p.servers[0]!]), 'x')!.name, 'spare', 'a refused this connection: the backup takes it');
});

t.test('leastconn prefers the least busy server', async (t) => {
  const p = pool('leastconn', [{ name: 'a' }, { name: 'b' }]);
  p.servers[0]!.active = 3;
  p.servers[1]!.active = 1;
  t.equal(p.pick(none, 'x')!.name, 'b');
});

t.test('first fills servers in order, respecting maxconn', async (t) => {
  const p = pool('first', [{ name: 'a', maxconn: 2 }, { name: 'b' }]);
  t.equal(p.pick(none, 'x')!.name, 'a');
  p.servers[0]!.active = 2;
  t.equal(p.pick(none, 'x')!.name, 'b');
});

t.test('source: same client, same server; removing a server moves only its clients', async (t) => {
  const names = ['s1', 's2', 's3', 's4'];
  const full = pool('source', names.map((name) => ({ name })));
  const again = pool('source', names.map((name) => ({ name })));
  const clients = Array.from({ length: 400 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
  const before = new Map(clients.map((ip) => [ip, full.pick(none, ip)!.name]));
  t.same(clients.filter((ip) => again.pick(none, ip)!.name !== before.get(ip)), [], 'a second instance agrees on every client');
  const counts = new Map<string, number>();
  for (const name of before.values()) counts.set(name, (counts.get(name) ?? 0) + 1);
  for (const name of names) t.ok(counts.get(name)! > 50, `${name} gets a fair share (${counts.get(name)})`);
  const without = pool('source', ['s1', 's2', 's4'].map((name) => ({ name })));
  const moved = clients.filter((ip) => without.pick(none, ip)!.name !== before.get(ip));
  t.ok(moved.every((ip) => before.get(ip) === 's3'), 'only clients of the removed server moved');
  t.equal(moved.length, counts.get('s3'), 'and all of them did');
});
