import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import http from 'node:http';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { httpPeer, RawClient, get } from '../helpers/http.js';

/**
 * Bodies and connection handling in http mode: large uploads and downloads
 * with backpressure, pipelining behind a slow reader, Expect: 100-continue,
 * HEAD, Connection: close and HTTP/1.0.
 */
type Teardown = { teardown(fn: () => unknown): void };

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const BIG = randomBytes(12 * 1024 * 1024);

/** Resolves when the server has seen `n` /block requests. */
let blocksSeen: { n: number; resolve: () => void } | null = null;

async function setup(t: Teardown): Promise<RunningMux> {
  let blocks = 0;
  const peer = await httpPeer('web', (req, res, seen) => {
    if (req.url?.startsWith('/block') && ++blocks === blocksSeen?.n) blocksSeen.resolve();
    if (req.url === '/download') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      // Written in pieces without a Content-Length: the client gets it chunked.
      for (let i = 0; i < BIG.length; i += 1 << 20) res.write(BIG.subarray(i, i + (1 << 20)));
      res.end();
    } else if (req.url?.startsWith('/block')) {
      res.end(Buffer.alloc(256 * 1024, req.url.charCodeAt(req.url.length - 1)));
    } else {
      res.setHeader('X-Body-Sha', sha(seen.body));
      res.end(`${seen.method} ${seen.url} ${seen.body.length} ${seen.httpVersion}`);
    }
  });
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'web' }],
    backends: [{ name: 'web', mode: 'http', servers: [{ name: 'w1', address: peer.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await peer.close();
  });
  return mux;
}

function request(port: number, options: http.RequestOptions, body?: Buffer): Promise<{ res: http.IncomingMessage; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ res, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('a 12 MB upload (chunked and with a length) and a 12 MB download arrive intact', async (t) => {
  const mux = await setup(t);
  const port = mux.port('fe');
  const withLength = await request(port, { method: 'PUT', path: '/up', headers: { 'Content-Length': BIG.length } }, BIG);
  t.equal(withLength.res.headers['x-body-sha'], sha(BIG), 'Content-Length upload');
  const chunked = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/up' }, resolve);
    req.on('error', reject);
    for (let i = 0; i < BIG.length; i += 100_000) req.write(BIG.subarray(i, i + 100_000));
    req.end();
  });
  chunked.resume();
  t.equal(chunked.headers['x-body-sha'], sha(BIG), 'chunked upload');
  const down = await request(port, { path: '/download' });
  t.equal(down.res.headers['transfer-encoding'], 'chunked');
  t.equal(sha(down.body), sha(BIG), 'download');
});

t.test('pipelined requests behind a client that reads slowly are answered in order', async (t) => {
  const mux = await setup(t);
  const client = await RawClient.connect(mux.port('fe'));
  const letters = 'abcdefghijklmnopqrst';
  client.socket.pause();
  // Responses pile up unread: the server sees the third request once the first two were handed to the client socket.
  const third = new Promise<void>((resolve) => (blocksSeen = { n: 3, resolve }));
  client.write([...letters].map((c) => get(`/block/${c}`)).join(''));
  await third;
  client.socket.resume();
  for (const c of letters) {
    const r = await client.response();
    t.equal(r.body.length, 256 * 1024);
    if (r.body[0] !== c.charCodeAt(0) || r.body[r.body.length - 1] !== c.charCodeAt(0)) t.fail(`response for /block/${c} out of order`);
  }
  t.pass('twenty 256 kB responses, in order');
  client.close();
});

t.test('Expect: 100-continue goes to the server, and its 100 comes back', async (t) => {
  const mux = await setup(t);
  const client = await RawClient.connect(mux.port('fe'));
  client.write('POST /expect HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
  const interim = await client.response();
  t.equal(interim.status, 100, 'the interim 100 before the body is sent');
  client.write('hello');
  const final = await client.response();
  t.equal(final.body.toString(), 'POST /expect 5 1.1');
  client.close();
});

t.test('HEAD, Connection: close and HTTP/1.0', async (t) => {
  const mux = await setup(t);
  const client = await RawClient.connect(mux.port('fe'));
  client.write('HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n');
  const head = await client.response({ head: true });
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
  client.write(get('/last', 'Connection: close\r\n'));
  const last = await client.response();
  t.equal(last.body.toString(), 'GET /last 0 1.1');
  await client.until(() => false);
  t.ok(client.isEnded, 'the connection closes after the response to Connection: close');
  client.close();

  const old = await RawClient.connect(mux.port('fe'));
  old.write('GET /old HTTP/1.0\r\n\r\n');
  const r = await old.response();
  t.equal(r.body.toString(), 'GET /old 0 1.1', 'sent to the server as HTTP/1.1 (with an empty Host, as RFC 9112 asks)');
  await old.until(() => false);
  t.ok(old.isEnded, 'an HTTP/1.0 request without keep-alive closes after its response');
  old.close();
  const lines = await mux.waitForLog((l) => l.msg === 'connection' && l.path === '/old');
  t.equal(lines.termination, 'client-close');
});
