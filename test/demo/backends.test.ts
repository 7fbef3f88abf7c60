import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import t from 'tap';
import WebSocket from 'ws';
import { startDemoBackends, WS_GREETING } from '../../src/demo/backends.js';

/** Resolves with the error code of a connection attempt, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}

/** Collects the next `n` messages of a WebSocket as strings. */
function nextMessages(ws: WebSocket, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const got: string[] = [];
    const onMessage = (data: WebSocket.RawData) => {
      got.push(String(data));
      if (got.length === n) {
        ws.off('message', onMessage);
        resolve(got);
      }
    };
    ws.on('message', onMessage);
    ws.once('error', reject);
  });
}

t.test('demo backends', async (t) => {
  const b = await startDemoBackends();
  let closed = false;
  t.teardown(() => (closed ? undefined : b.close()));
  t.ok(b.http > 0 && b.ws > 0 && b.echo > 0);
  t.equal(new Set([b.http, b.ws, b.echo]).size, 3, 'three different ports');

  t.test('http page', async (t) => {
    const res = await fetch(`http://127.0.0.1:${b.http}/`);
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^text\/html/);
    t.equal(res.headers.get('x-served-by'), 'demo-http');
    const html = await res.text();
    t.match(html, '<title>sniffmux demo</title>');
    t.match(html, 'new WebSocket');
    t.match(html, "location.protocol === 'https:' ? 'wss://' : 'ws://'");
    t.match(html, "location.host + '/ws'");
    t.notMatch(html, /https?:\/\/(?!\/)[a-z]/i, 'no external assets');
  });

  t.test('health and 404', async (t) => {
    const health = await fetch(`http://127.0.0.1:${b.http}/health`);
    t.equal(health.status, 200);
    t.match(health.headers.get('content-type'), /^text\/plain/);
    t.equal(health.headers.get('x-served-by'), 'demo-http');
    t.equal(await health.text(), 'ok');
    const withQuery = await fetch(`http://127.0.0.1:${b.http}/health?probe=1`);
    t.equal(await withQuery.text(), 'ok', 'the query string is ignored');
    const head = await fetch(`http://127.0.0.1:${b.http}/`, { method: 'HEAD' });
    t.equal(head.status, 200);
    t.equal(head.headers.get('x-served-by'), 'demo-http');
    t.ok(Number(head.headers.get('content-length')) > 0, 'HEAD announces the page length');
    t.equal(await head.text(), '');
    const missing = await fetch(`http://127.0.0.1:${b.http}/nope`);
    t.equal(missing.status, 404);
    t.equal(missing.headers.get('x-served-by'), 'demo-http');
    await missing.arrayBuffer();
    const post = await fetch(`http://127.0.0.1:${b.http}/`, { method: 'POST', body: 'x' });
    t.equal(post.status, 405);
    await post.arrayBuffer();
  });

  t.test('plain HTTP to the ws backend is a 426', async (t) => {
    const res = await fetch(`http://127.0.0.1:${b.ws}/`);
    t.equal(res.status, 426);
    t.equal(res.headers.get('x-served-by'), 'demo-ws');
    await res.arrayBuffer();
  });

  t.test('websocket greeting and echo', async (t) => {
    const ws = new WebSocket(`ws://127.0.0.1:${b.ws}/ws`);
    t.teardown(() => ws.terminate());
    const upgrade = new Promise<string | string[] | undefined>((r) => ws.once('upgrade', (res) => r(res.headers['x-served-by'])));
    const first = nextMessages(ws, 1);
    await once(ws, 'open');
    t.equal(await upgrade, 'demo-ws');
    t.same(await first, [WS_GREETING]);
    t.equal(WS_GREETING, 'hello from the sniffmux demo WebSocket echo');
    const replies = nextMessages(ws, 2);
    ws.send('hi');
    ws.send('héllo ✓');
    t.same(await replies, ['echo: hi', 'echo: héllo ✓']);
    const bin = new Promise<[Buffer, boolean]>((r) => ws.once('message', (d, isBinary) => r([d as Buffer, isBinary])));
    ws.send(Buffer.from([0, 1, 2, 255]));
    const [data, isBinary] = await bin;
    t.equal(isBinary, true);
    t.same([...data], [...Buffer.from('echo: '), 0, 1, 2, 255]);
  });

  t.test('raw TCP echo of 100 KB is byte-identical, with no greeting', async (t) => {
    const payload = randomBytes(100 * 1024);
    const sock = net.connect(b.echo, '127.0.0.1');
    t.teardown(() => sock.destroy());
    await once(sock, 'connect');
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.end(payload); // half-close: the echo ends its side after echoing everything
    await once(sock, 'close');
    t.ok(Buffer.concat(chunks).equals(payload), `echoed ${Buffer.concat(chunks).length} bytes`);
  });

  t.test('close() ends open connections and frees the ports', async (t) => {
    // Leave one connection of each kind open: close() must not wait for them.
    const ws = new WebSocket(`ws://127.0.0.1:${b.ws}/`);
    ws.on('error', () => {});
    await once(ws, 'open');
    const tcp = net.connect(b.echo, '127.0.0.1');
    tcp.on('error', () => {});
    await once(tcp, 'connect');
    const keepAlive = net.connect(b.http, '127.0.0.1');
    keepAlive.on('error', () => {});
    await once(keepAlive, 'connect');
    keepAlive.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(keepAlive, 'data');

    const wsClosed = once(ws, 'close');
    const tcpClosed = once(tcp, 'close');
    const httpClosed = once(keepAlive, 'close');
    await b.close();
    closed = true;
    await Promise.all([wsClosed, tcpClosed, httpClosed]);
    t.pass('open connections were terminated');
    await b.close(); // idempotent
    t.equal(await tryConnect(b.http), 'ECONNREFUSED');
    t.equal(await tryConnect(b.ws), 'ECONNREFUSED');
    t.equal(await tryConnect(b.echo), 'ECONNREFUSED');
  });
});

t.test('a listen failure rejects and leaves nothing running', async (t) => {
  // 192.0.2.1 (TEST-NET-1) is not a local address, so listen fails with EADDRNOTAVAIL.
  await t.rejects(startDemoBackends({ host: '192.0.2.1' }), { code: 'EADDRNOTAVAIL' });
});
