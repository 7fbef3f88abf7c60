import t from 'tap';
import net from 'node:net';
import http from 'node:http';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { tcpServer, type TestServer } from '../helpers/servers.js';
import { httpPeer, RawClient, get, type HttpPeer } from '../helpers/http.js';

/**
 * Per-request routing in http mode: every request on a kept-alive client
 * connection is routed by itself, and one that routes to a tcp-mode backend
 * takes the rest of the connection there, raw.
 */
type Teardown = { teardown(fn: () => unknown): void };

interface Setup {
  mux: RunningMux;
  port: number;
  a: HttpPeer;
  b: HttpPeer;
  /** A tcp-mode server that records every byte it gets and answers "raw got N bytes". */
  raw: TestServer;
  rawBytes: () => Buffer;
}

async function setup(t: Teardown, backendExtra: Record<string, unknown> = {}): Promise<Setup> {
  const a = await httpPeer('A');
  const b = await httpPeer('B');
  const received: Buffer[] = [];
  const raw = await tcpServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      socket.write(`raw got ${Buffer.concat(received).length} bytes\n`);
    });
  });
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '300ms' },
        rules: [
          { if: { path: { prefix: '/a' } }, use: 'be_a' },
          { if: { path: { prefix: '/b' } }, use: 'be_b' },
          { if: { path: { prefix: '/raw' } }, use: 'be_raw' },
        ],
        default: 'be_a',
      },
    ],
    backends: [
      { name: 'be_a', mode: 'http', servers: [{ name: 'a1', address: a.address }], ...backendExtra },
      { name: 'be_b', mode: 'http', servers: [{ name: 'b1', address: b.address }], ...backendExtra },
      { name: 'be_raw', servers: [{ name: 'raw1', address: raw.address }] },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    await Promise.all([a.close(), b.close(), raw.close()]);
  });
  return { mux, port: mux.port('fe'), a, b, raw, rawBytes: () => Buffer.concat(received) };
}

t.test('/a and /b on one connection reach two backends; a third request to a tcp backend is spliced', async (t) => {
  const { mux, port, a, b, rawBytes } = await setup(t);
  const client = await RawClient.connect(port);
  client.write(get('/a/1'));
  const r1 = await client.response();
  t.equal(r1.status, 200);
  t.equal(r1.headers['x-served-by'], 'A', '/a/1 went to backend A');
  client.write(get('/b/2'));
  const r2 = await client.response();
  t.equal(r2.headers['x-served-by'], 'B', '/b/2 went to backend B, on the same client connection');
  client.write(get('/a/3'));
  t.equal((await client.response()).headers['x-served-by'], 'A');
  // The third backend is tcp mode: the raw bytes of this request, and what follows, go there.
  const third = 'GET /raw/x HTTP/1.1\r\nHost: mux.test\r\nX-Odd:   spaced  \r\n\r\n';
  client.write(third);
  await client.until((r) => r.toString().includes(`raw got ${third.length} bytes`));
  t.equal(rawBytes().toString('latin1'), third, 'the tcp backend got the request byte for byte');
  client.write('then anything at all\x00\x01');
  await client.until((r) => r.toString().includes(`raw got ${third.length + 22} bytes`));
  t.equal(rawBytes().subarray(third.length).toString('latin1'), 'then anything at all\x00\x01', 'and the rest of the connection');
  client.close();
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(mux.connections().length, 1, 'one client connection, one log line');
  t.match(line, { protocol: 'http', method: 'GET', path: '/raw/x', backend: 'be_raw', server: 'raw1', termination: 'client-close' });
  t.equal(a.seen.length, 2);
  t.equal(b.seen.length, 1);
  t.same(a.seen.map((s) => s.url), ['/a/1', '/a/3']);
});

t.test('the first request itself can route to a tcp backend; bodies frame the requests', async (t) => {
  const { port, a, rawBytes } = await setup(t);
  const client = await RawClient.connect(port);
  const post = 'POST /a/form HTTP/1.1\r\nHost: mux.test\r\nContent-Length: 11\r\n\r\nhello=world';
  const chunked = 'POST /a/chunks HTTP/1.1\r\nHost: mux.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n';
  // Pipelined: all three in one write; the third must not be parsed as part of the second's body.
  const raw = 'GET /raw/after HTTP/1.1\r\nHost: mux.test\r\n\r\n';
  client.write(post + chunked + raw);
  const r1 = await client.response();
  t.equal(JSON.parse(r1.body.toString()).body, 'hello=world');
  const r2 = await client.response();
  t.equal(JSON.parse(r2.body.toString()).body, 'hello world', 'the chunked body arrives decoded and re-framed');
  await client.until((r) => r.toString().includes(`raw got ${raw.length} bytes`));
  t.equal(rawBytes().toString('latin1'), raw);
  t.same(a.seen.map((s) => [s.method, s.url]), [
    ['POST', '/a/form'],
    ['POST', '/a/chunks'],
  ]);
  t.equal(a.seen[1]!.headers['transfer-encoding'], 'chunked');
  client.close();
});

t.test('a keep-alive http.Agent: many requests over one client connection and one server connection', async (t) => {
  const { mux, port, a, b } = await setup(t);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const paths = ['/a/1', '/b/1', '/a/2', '/b/2', '/a/3', '/b/3'];
  for (const path of paths) {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    t.equal(JSON.parse(body).url, path);
  }
  t.equal(a.connections, 1, 'backend A saw one kept-alive connection');
  t.equal(b.connections, 1, 'backend B saw one kept-alive connection');
  agent.destroy();
  await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(mux.connections().length, 1, 'the six requests came on one client connection');
});

t.test('peeked bytes and later bytes reach Node in order: a request written one byte at a time', async (t) => {
  const { port, a } = await setup(t);
  const body = Buffer.from(Array.from({ length: 300 }, (_, i) => String.fromCharCode(33 + (i % 90))).join(''));
  const request = Buffer.concat([Buffer.from(`POST /a/slow HTTP/1.1\r\nHost: mux.test\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  const second = Buffer.from(get('/a/second'));
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  const client = await RawClient.connect(port, socket);
  const all = Buffer.concat([request, second]);
  // Byte by byte across the sniff, the hand-off to Node and the body, each in its own TCP segment.
  for (let i = 0; i < all.length; i++) {
    socket.write(all.subarray(i, i + 1));
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  const r1 = await client.response();
  t.equal(JSON.parse(r1.body.toString()).body, body.toString(), 'none lost or doubled');
  const r2 = await client.response();
  t.equal(JSON.parse(r2.body.toString()).url, '/a/second');
  t.equal(a.seen.length, 2);
  client.close();
});

t.test('a request that half-closes right after its head is still answered', async (t) => {
  const { port, a } = await setup(t);
  const client = await RawClient.connect(port);
  client.socket.end(get('/a/fin'));
  const r = await client.response();
  t.equal(r.status, 200);
  await client.closed;
  t.equal(a.seen[0]!.url, '/a/fin');
});

t.test('over TLS too: a terminated connection hands its decrypted bytes to Node in order', async (t) => {
  const tls = await import('node:tls');
  const { makeCerts } = await import('../helpers/certs.js');
  const cert = makeCerts({ 'mux.test': ['mux.test'] })['mux.test']!;
  const a = await httpPeer('A');
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        tls: { certificates: [{ cert: cert.cert, key: cert.key }] },
        rules: [{ if: { path: { prefix: '/a' } }, use: 'be_a' }],
      },
    ],
    backends: [{ name: 'be_a', mode: 'http', servers: [{ name: 'a1', address: a.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await a.close();
  });
  const secure = tls.connect({ host: '127.0.0.1', port: mux.port('fe'), servername: 'mux.test', ca: cert.certPem });
  await new Promise((r) => secure.once('secureConnect', r));
  const client = await RawClient.connect(0, secure);
  const body = 'z'.repeat(5000);
  const all = Buffer.from(`POST /a/tls HTTP/1.1\r\nHost: mux.test\r\nContent-Length: ${body.length}\r\n\r\n${body}${get('/a/again')}`);
  for (let i = 0; i < all.length; i += 7) {
    secure.write(all.subarray(i, i + 7));
    if (i % 700 === 0) await new Promise((r) => setImmediate(r));
  }
  t.equal(JSON.parse((await client.response()).body.toString()).body, body);
  t.equal(JSON.parse((await client.response()).body.toString()).url, '/a/again');
  client.close();
});

t.test('a client that ends inside its first head is closed without an answer', async (t) => {
  const a = await httpPeer('A');
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '2s' }, rules: [{ if: { host: 'mux.test' }, use: 'be_a' }], default: 'be_a' }],
    backends: [{ name: 'be_a', mode: 'http', servers: [{ name: 'a1', address: a.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await a.close();
  });
  // The host rule waits for the whole head; the FIN makes the sniff final first, so http mode starts on an ended stream.
  const client = await RawClient.connect(mux.port('fe'));
  client.socket.end('GET / HTTP/1.1\r\nHost: mux');
  await client.closed;
  t.equal(client.pending.length, 0, 'nothing answered');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.match(line, { protocol: 'http', termination: 'client-close', backend: 'be_a' });
  t.equal(a.seen.length, 0);
});
