import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { closeSync, readdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import {
  adoptConnected,
  answerFront,
  connectFront,
  connectThenSplice,
  nativeConnect,
  nativeSpliceStats,
  nativeSpliceUnavailable,
  peekFront,
  type ConnectSpliceOwner,
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

/** What a connectThenSplice told its owner, in order. */
function recordingOwner() {
  const told: string[] = [];
  let ended!: (r: NativeSpliceResult | NodeJS.ErrnoException) => void;
  const end = new Promise<NativeSpliceResult | NodeJS.ErrnoException>((r) => (ended = r));
  const owner: ConnectSpliceOwner = {
    spliceConnected: () => told.push('connected'),
    spliceConnectFailed: (error) => {
      told.push(`failed ${error.code}`);
      ended(error);
    },
    spliceDone: (r) => {
      told.push(`done ${r.end}`);
      ended(r);
    },
  };
  return { told, end, owner };
}

/** A client connected to a little proxy; `onAccepted` gets the accepted socket, paused. */
async function acceptedPair(t: { teardown(fn: () => unknown): void }, onAccepted: (a: net.Socket) => void) {
  // pauseOnConnect: Node never starts reading it (pause() alone lets it read into its own buffer, taking the bytes).
  const proxy = await tcpServer((a) => {
    a.pause();
    onAccepted(a);
  }, { allowHalfOpen: true, pauseOnConnect: true });
  t.teardown(() => proxy.close());
  const client = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  await once(client, 'connect');
  return client;
}

t.test('connectThenSplice: connected and spliced by the thread, the replay first, the client after', { skip }, async (t) => {
  const echo = await echoServer();
  t.teardown(() => echo.close());
  const { told, end, owner } = recordingOwner();
  const before = fdCount();
  const client = await acceptedPair(t, (a) => connectThenSplice(a, '127.0.0.1', echo.port, Buffer.from('replayed;'), 0, owner));
  const received = readAll(client);
  client.end('from the client');
  t.equal((await received).toString(), 'replayed;from the client');
  const r = (await end) as NativeSpliceResult;
  t.same(told, ['connected', 'done done'], 'told it connected, then how the splice ended');
  t.equal(r.bytes.toB, 'replayed;from the client'.length);
  client.destroy();
  await eventually('the descriptors closed', () => fdCount() <= before + 2); // the proxy's listener and the client
});

t.test('connectThenSplice refused: the owner hears why, and the client socket is as it was, every byte still to read', { skip }, async (t) => {
  const port = await closedPort();
  const { told, end, owner } = recordingOwner();
  let accepted!: net.Socket;
  const client = await acceptedPair(t, (a) => {
    accepted = a;
    a.once('readable', () => {
      // What JS has buffered goes to the thread with the connect, and comes back when it fails.
      try {
        connectThenSplice(a, '127.0.0.1', port, null, 0, owner);
      } catch (error) {
        told.push(`threw ${(error as NodeJS.ErrnoException).code}`);
        ended(error as NodeJS.ErrnoException);
      }
    });
  });
  let ended!: (e: NodeJS.ErrnoException) => void;
  const thrown = new Promise<NodeJS.ErrnoException>((r) => (ended = r));
  client.write('first;');
  const error = (await Promise.race([end, thrown])) as NodeJS.ErrnoException;
  t.equal(error.code, 'ECONNREFUSED');
  t.equal(error.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
  t.equal(told.length, 1, `told once: ${told.join(', ')}`);
  client.end('second');
  const rest = await readAll(accepted.resume());
  t.equal(rest.toString(), 'first;second', 'the client socket reads on, nothing lost');
  client.destroy();
});

t.test('connectThenSplice cancelled or aborted at every moment: each owner told once, no descriptor left', { skip }, async (t) => {
  const echo = await echoServer();
  t.teardown(() => echo.close());
  const before = fdCount();
  const outcomes = new Map<string, number>();
  const finals: Promise<unknown>[] = [];
  const proxy = await tcpServer((a) => {
    a.pause();
    const i = finals.length;
    const { told, end, owner } = recordingOwner();
    finals.push(end.then(() => {
      // A connect cancelled after it connected goes on as a splice; the client ends it.
      const key = told.join(' > ');
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      a.destroy();
    }));
    const job = connectThenSplice(a, '127.0.0.1', echo.port, Buffer.from('x'), 0, owner);
    if (i % 4 === 0) job.cancelConnect();
    else if (i % 4 === 1) queueMicrotask(() => job.abort());
    else if (i % 4 === 2) setImmediate(() => job.cancelConnect());
    else setImmediate(() => job.abort());
  }, { allowHalfOpen: true });
  t.teardown(() => proxy.close());
  const clients: net.Socket[] = [];
  for (let i = 0; i < 200; i++) {
    const c = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true }).on('error', () => {});
    c.on('data', () => c.end());
    c.on('end', () => c.destroy());
    clients.push(c);
    await once(c, 'connect');
  }
  await eventually('every owner told how it ended', () => finals.length === 200);
  await Promise.all(finals);
  for (const c of clients) c.destroy();
  t.comment(JSON.stringify(Object.fromEntries(outcomes)));
  const allowed = ['failed ECANCELED', 'connected > done aborted', 'connected > done done', 'connected > done a-error', 'connected > done b-error'];
  t.ok([...outcomes.keys()].every((k) => allowed.includes(k)), 'each owner heard one failure, or connected and then one end');
  await eventually('every conn freed', () => nativeSpliceStats()!.live === 0);
  await eventually('the descriptors closed', () => fdCount() <= before + 1, 5000).catch(() => {});
  t.equal(fdCount(), before + 1, 'no descriptor left behind (the proxy listener remains until teardown)');
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

t.test('peekFront: a new socket\'s first bytes, read without taking them; connectFront then connects and splices from them', { skip }, async (t) => {
  const echo = await echoServer();
  t.teardown(() => echo.close());
  const accepted: net.Socket[] = [];
  const clientFor = () => acceptedPair(t, (a) => accepted.push(a));
  const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
  const peeked = (s: net.Socket): string | null => peekFront(fdOf(s), 64)?.toString() ?? null;

  const client = await clientFor();
  await eventually('accepted', () => accepted.length === 1);
  const a = accepted[0]!;
  t.equal(peeked(a), null, 'nothing has come yet');
  client.write('hello;');
  await eventually('the first bytes came', () => peeked(a) !== null);
  t.equal(peeked(a), 'hello;');
  t.equal(peeked(a), 'hello;', 'peeking again sees the same bytes: none was taken');

  const { told, end, owner } = recordingOwner();
  connectFront(fdOf(a), 64, { ...owner, frontPeeked: () => told.push('peeked') }, '127.0.0.1', echo.port, 0);
  const received = readAll(client);
  client.end('more');
  t.equal((await received).toString(), 'hello;more', 'the peeked bytes went to the server first, then the rest, echoed back');
  await end;
  t.same(told, ['connected', 'done done'], 'connected and spliced, never peeked again by the thread');
  a.destroy();
  client.destroy();

  const closing = await clientFor();
  await eventually('accepted', () => accepted.length === 2);
  closing.end();
  await eventually('the end of file came', () => peeked(accepted[1]!) !== null);
  t.equal(peeked(accepted[1]!), '', 'an empty buffer at end of file');
  accepted[1]!.destroy();
  closing.destroy();

  const port = await closedPort();
  const refused = await clientFor();
  await eventually('accepted', () => accepted.length === 3);
  const second = recordingOwner();
  const error = (() => {
    try {
      connectFront(fdOf(accepted[2]!), 64, { ...second.owner, frontPeeked: () => {} }, '127.0.0.1', port, 0);
      return null;
    } catch (e) {
      return e as NodeJS.ErrnoException;
    }
  })();
  // A refused loopback connect fails at once (thrown, no job) or a moment later (told).
  const failure = error ?? ((await second.end) as NodeJS.ErrnoException);
  t.equal(failure.code, 'ECONNREFUSED');
  t.equal(failure.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
  accepted[2]!.destroy();
  refused.destroy();
});

t.test('answerFront: the reply, then a FIN; what the client sends is dropped until it closes, and counted', { skip }, async (t) => {
  const accepted: net.Socket[] = [];
  const client = await acceptedPair(t, (a) => accepted.push(a));
  await eventually('accepted', () => accepted.length === 1);
  const a = accepted[0]!;
  client.write('<request/>');
  const { told, end, owner } = recordingOwner();
  const fd = (a as unknown as { _handle: { fd: number } })._handle.fd;
  answerFront(fd, { ...owner, frontPeeked: () => told.push('peeked') }, Buffer.from('the answer\0'), 0);
  const received = readAll(client); // resolves at the FIN, while the client's own side is still open
  t.equal((await received).toString(), 'the answer\0', 'the reply, then the end of the stream');
  t.same(told, [], 'nothing told while the client is still there');
  const dropped = randomBytes(100_000);
  client.end(dropped);
  const r = (await end) as NativeSpliceResult;
  t.same(told, ['done done'], 'its end, as a splice ends; never connected, never peeked');
  t.equal(r.bytes.toA, 'the answer\0'.length, 'bytes to the client: the reply');
  t.equal(r.bytes.fromA, '<request/>'.length + dropped.length, 'bytes from the client: all of it, read and dropped');
  t.equal(peekFront(fd, 64)?.length, 0, 'nothing left unread on the socket: end of file (its close sends no reset)');
  a.destroy();
  client.destroy();
});
