import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { closeSync, readdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import {
  adoptConnected,
  nativeConnect,
  nativeSpliceStats,
  nativeSpliceUnavailable,
  type NativeSpliceResult,
  type SpliceOwner,
} from '../../src/splice/native.js';
import { nativelyConnectable } from '../../src/backend/connect.js';
import { eventually } from '../helpers/eventually.js';
import { closedPort, echoServer, tcpServer } from '../helpers/servers.js';

// The server side of a natively spliced connection made by the native thread (no JS socket for it).
// Whether the addon must be there at all is asserted in native.test.ts.
const skip = nativeSpliceUnavailable === null ? false : `native splice(2) addon unavailable: ${nativeSpliceUnavailable}`;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const fdCount = (): number => readdirSync('/proc/self/fd').length;

function connect(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    nativeConnect(host, port, (error, fd) => (error ? reject(error) : resolve(fd)));
  });
}

/** A client connected to a little proxy whose accepted socket `a` is handed, with fd, to adoptConnected. */
async function proxied(t: { teardown(fn: () => unknown): void }, fd: number, replay: Buffer | null) {
  let done!: (r: NativeSpliceResult) => void;
  const result = new Promise<NativeSpliceResult>((r) => (done = r));
  const owner: SpliceOwner = { spliceDone: (r) => done(r) };
  const proxy = await tcpServer((a) => {
    a.pause();
    adoptConnected(a, fd, replay, 0, owner);
  }, { allowHalfOpen: true });
  t.teardown(() => proxy.close());
  const client = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  await once(client, 'connect');
  return { client, result };
}

function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return once(s, 'end').then(() => Buffer.concat(chunks));
}

t.test('a connect made natively carries the replay, then the client, byte for byte, both ways', { skip }, async (t) => {
  const echo = await echoServer();
  t.teardown(() => echo.close());
  const fd = await connect('127.0.0.1', echo.port);
  t.ok(fd >= 0, 'a connected descriptor');
  const replay = Buffer.from('GET / HTTP/1.1\r\nHost: replayed\r\n\r\n');
  const { client, result } = await proxied(t, fd, replay);
  const payload = randomBytes(4 << 20);
  const received = readAll(client);
  client.end(payload);
  const echoed = await received;
  t.equal(echoed.length, replay.length + payload.length, 'everything came back');
  t.equal(sha256(echoed), sha256(Buffer.concat([replay, payload])), 'the replay first, then the client bytes, intact');
  const r = await result;
  t.equal(r.end, 'done');
  t.equal(r.bytes.toB, replay.length + payload.length, 'bytes to the server count the replay');
  t.equal(r.bytes.toA, replay.length + payload.length);
  t.equal(r.bufferedAToB, 0, 'the replay is not counted as bytes JS had buffered from the client');
});

t.test('IPv6 loopback works too', { skip }, async (t) => {
  const server = net.createServer((s) => s.end('hello over ::1'));
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '::1', resolve));
  } catch (error) {
    t.comment(`no ::1 on this machine (${(error as Error).message}), nothing to test`);
    return;
  }
  t.teardown(() => new Promise((r) => server.close(r)));
  const fd = await connect('::1', (server.address() as net.AddressInfo).port);
  const { client, result } = await proxied(t, fd, null);
  const received = readAll(client);
  client.end();
  t.equal((await received).toString(), 'hello over ::1');
  t.equal((await result).end, 'done');
});

t.test('a refused connect fails as Node reports it', { skip }, async (t) => {
  const port = await closedPort();
  const before = fdCount();
  const error = (await connect('127.0.0.1', port).catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.equal(error.code, 'ECONNREFUSED');
  t.equal(error.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
  t.equal(error.syscall, 'connect');
  t.equal(fdCount(), before, 'the descriptor was closed');
});

t.test('a name, not an address, is refused at once', { skip }, async (t) => {
  t.throws(() => nativeConnect('localhost', 80, () => t.fail('no callback')), { code: 'EINVAL' });
  t.throws(() => nativeConnect('127.0.0.1', 0, () => t.fail('no callback')), TypeError);
});

t.test('cancel(): no callback and no descriptor left, whether the thread had connected or not', { skip }, async (t) => {
  const echo = await echoServer();
  t.teardown(() => echo.close());
  const before = fdCount();
  let lateCallbacks = 0;
  for (let i = 0; i < 300; i++) {
    if (i % 3 === 0) {
      nativeConnect('127.0.0.1', echo.port, () => t.fail('a connect cancelled at once called back')).cancel();
      continue;
    }
    if (i % 3 === 1) {
      // Before any completion can be delivered, but often after the thread connected: closed on arrival.
      const pending = nativeConnect('127.0.0.1', echo.port, () => t.fail('a connect cancelled in a microtask called back'));
      queueMicrotask(() => pending.cancel());
      continue;
    }
    // Cancelled a turn later: often after the thread connected, sometimes even after the callback ran (then the fd is ours).
    const pending = nativeConnect('127.0.0.1', echo.port, (error, fd) => {
      lateCallbacks++;
      if (!error) closeSync(fd);
    });
    setImmediate(() => pending.cancel());
  }
  // Each cancel ends on the native thread (closed there) or here (connected first, closed on arrival);
  // the echo server (in this process) closes its side once it sees the FIN.
  await eventually('every connect settled', () => nativeSpliceStats()!.live === 0);
  await eventually('the descriptors closed', () => fdCount() <= before, 5000).catch(() => {});
  t.comment(`${lateCallbacks} of the 100 connects cancelled a turn later had called back first`);
  t.equal(fdCount(), before, 'no descriptor left behind');
});

t.test('which servers the native thread connects to: numeric addresses; names and IPv6 zones go through Node', async (t) => {
  const at = (host: string) => nativelyConnectable({ host, port: 80, text: `${host}:80` });
  t.equal(at('127.0.0.1'), true);
  t.equal(at('::1'), true);
  t.equal(at(''), true, '":port" is 127.0.0.1 for a server');
  t.equal(at('localhost'), false);
  t.equal(at('backend.internal'), false);
  t.equal(at('fe80::1%eth0'), false, 'inet_pton cannot read a zone');
});
