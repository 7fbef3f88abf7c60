import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { WebSocket, WebSocketServer } from 'ws';
import { makeCerts } from '../helpers/certs.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { tcpServer } from '../helpers/servers.js';
import { RawClient, get } from '../helpers/http.js';

/**
 * Upgrades in http mode become tunnels: an RFC 6455 WebSocket (the `ws`
 * client and server) and the old hixie-76 handshake, whose 8 raw bytes after
 * the request head (and 16 after the 101) must pass intact.
 */
type Teardown = { teardown(fn: () => unknown): void };

const certs = makeCerts({ 'ws.test': ['ws.test'] });

/** A ws echo server on a plain http.Server that also answers ordinary requests; it records the upgrade requests' fields. */
async function wsBackend(t: Teardown) {
  const upgrades: http.IncomingHttpHeaders[] = [];
  const urls: string[] = [];
  const server = http.createServer((req, res) => res.end(`plain ${req.url}`));
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    upgrades.push(req.headers);
    urls.push(req.url ?? '');
    ws.on('message', (data, binary) => ws.send(binary ? data : `echo: ${data.toString()}`, { binary }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => server.close(r));
    server.closeAllConnections();
  });
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, upgrades, urls };
}

function openWs(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data, binary) => resolve({ data: data as Buffer, binary })));
}

async function setup(t: Teardown, backend: Record<string, unknown>, frontend: Record<string, unknown> = {}): Promise<RunningMux> {
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '300ms' }, default: 'ws', ...frontend }],
    backends: [{ name: 'ws', mode: 'http', ...backend }],
  });
  t.teardown(() => mux.stop());
  return mux;
}

t.test('a ws client through http mode: upgrade, echo both ways, forwarded fields and rewrite on the upgrade', async (t) => {
  const backend = await wsBackend(t);
  const mux = await setup(t, {
    // The client is a trusted proxy here, so its X-Forwarded-For is appended to.
    http: { forwardedFor: true, trustForwarded: ['127.0.0.1/32'], rewrite: { pattern: '^/socket/(.*)', to: '/$1' } },
    timeouts: { tunnel: '5s' },
    servers: [{ name: 'ws1', address: backend.address }],
  });
  const ws = await openWs(`ws://127.0.0.1:${mux.port('fe')}/socket/chat?room=1`, { headers: { 'X-Forwarded-For': '10.0.0.1' } });
  ws.send('hello');
  t.equal((await nextMessage(ws)).data.toString(), 'echo: hello');
  const big = Buffer.alloc(200_000, 7);
  ws.send(big);
  const back = await nextMessage(ws);
  t.ok(back.binary && back.data.equals(big), 'a 200 kB binary message comes back intact');
  t.equal(backend.urls[0], '/chat?room=1', 'the upgrade request was rewritten');
  t.equal(backend.upgrades[0]!['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
  t.equal(backend.upgrades[0]!['x-real-ip'], '127.0.0.1');
  t.equal(backend.upgrades[0]!.upgrade, 'websocket');
  t.match(backend.upgrades[0]!.connection, /upgrade/i);
  ws.close();
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  // After the closing handshake the server closes the TCP connection first (RFC 6455 §7.1.1).
  t.match(line, { protocol: 'http', method: 'GET', path: '/socket/chat?room=1', backend: 'ws', server: 'ws1', termination: 'server-close' });
});

t.test('plain requests, then an upgrade, on one connection', async (t) => {
  const backend = await wsBackend(t);
  const mux = await setup(t, { servers: [{ name: 'ws1', address: backend.address }] });
  const client = await RawClient.connect(mux.port('fe'));
  client.write(get('/first'));
  t.equal((await client.response()).body.toString(), 'plain /first');
  const key = Buffer.alloc(16, 1).toString('base64');
  client.write(get('/ws', `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n`));
  const r = await client.response();
  t.equal(r.status, 101);
  t.equal(r.headers['sec-websocket-accept'], createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'));
  // A masked text frame "hi" (RFC 6455 §5.2), answered "echo: hi" unmasked.
  const mask = Buffer.from([1, 2, 3, 4]);
  const payload = Buffer.from('hi').map((b, i) => b ^ mask[i % 4]!);
  client.write(Buffer.concat([Buffer.from([0x81, 0x82]), mask, payload]));
  const frame = await client.until((b) => b.length >= 2 + 8);
  t.same([...frame.subarray(0, 2)], [0x81, 8]);
  t.equal(frame.subarray(2, 10).toString(), 'echo: hi');
  client.close();
});

t.test('wss: a WebSocket over TLS terminated by sniffmux, to a plain ws server', async (t) => {
  const backend = await wsBackend(t);
  const cert = certs['ws.test']!;
  const mux = await setup(
    t,
    { http: { forwardedFor: true }, servers: [{ name: 'ws1', address: backend.address }] },
    { tls: { certificates: [{ cert: cert.cert, key: cert.key }] } },
  );
  // ws passes TLS options (servername included) on to tls.connect; its types only list some of them.
  const tlsOptions = { ca: cert.certPem, servername: 'ws.test', headers: { host: 'ws.test' } } as ConstructorParameters<typeof WebSocket>[2];
  const ws = await openWs(`wss://127.0.0.1:${mux.port('fe')}/secure`, tlsOptions);
  ws.send('over tls');
  t.equal((await nextMessage(ws)).data.toString(), 'echo: over tls');
  t.equal(backend.upgrades[0]!['x-forwarded-proto'], 'https');
  ws.close();
});

// ---- hixie-76 -------------------------------------------------------------------

/** The hixie-76 key value: the digits of the key divided by its number of spaces, as a 32-bit big-endian number. */
function keyNumber(key: string): Buffer {
  const digits = Number(key.replace(/[^0-9]/g, ''));
  const spaces = key.split(' ').length - 1;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(digits / spaces);
  return out;
}

function hixieAnswer(key1: string, key2: string, key3: Buffer): Buffer {
  return createHash('md5').update(Buffer.concat([keyNumber(key1), keyNumber(key2), key3])).digest();
}

/** A hixie-76 server (as in 2010 browsers): reads the head and the 8 bytes, answers 101 + 16 bytes, then echoes 0x00…0xFF frames. */
async function hixieBackend(t: Teardown) {
  const got: { head: string; key3: Buffer }[] = [];
  const server = await tcpServer((socket) => {
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0 || buffer.length < end + 4 + 8) return;
        const head = buffer.toString('latin1', 0, end);
        const key3 = buffer.subarray(end + 4, end + 12);
        got.push({ head, key3: Buffer.from(key3) });
        const field = (name: string) => new RegExp(`^${name}: (.*)$`, 'im').exec(head)![1]!;
        socket.write(
          'HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Origin: ${field('Origin')}\r\nSec-WebSocket-Location: ws://${field('Host')}/demo\r\n\r\n`,
        );
        socket.write(hixieAnswer(field('Sec-WebSocket-Key1'), field('Sec-WebSocket-Key2'), key3));
        buffer = buffer.subarray(end + 12);
        upgraded = true;
      }
      for (;;) {
        const stop = buffer.indexOf(0xff);
        if (buffer[0] !== 0x00 || stop < 0) break;
        socket.write(Buffer.concat([Buffer.from([0x00]), Buffer.from(`echo: ${buffer.toString('utf8', 1, stop)}`), Buffer.from([0xff])]));
        buffer = buffer.subarray(stop + 1);
      }
    });
  });
  t.teardown(() => server.close());
  return { address: server.address, got };
}

t.test('hixie-76: the 8 bytes after the head reach the server, the 16 after the 101 reach the client', async (t) => {
  const backend = await hixieBackend(t);
  const mux = await setup(t, { http: { forwardedFor: true }, servers: [{ name: 'h1', address: backend.address }] });
  // The example handshake of draft-hixie-thewebsocketprotocol-76 §1.3.
  const key1 = '4 @1  46546xW%0l 1 5';
  const key2 = '12998 5 Y3 1  .P00';
  const key3 = Buffer.from('^n:ds[4U', 'latin1');
  const head =
    'GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key2: ${key2}\r\nSec-WebSocket-Protocol: sample\r\nUpgrade: WebSocket\r\n` +
    `Sec-WebSocket-Key1: ${key1}\r\nOrigin: http://example.com\r\n\r\n`;
  const client = await RawClient.connect(mux.port('fe'));
  // The head and the 8 bytes in one segment, as browsers sent them: Node's parser sees them as the upgrade's `head`.
  client.write(Buffer.concat([Buffer.from(head, 'latin1'), key3]));
  const received = await client.until((b) => {
    const end = b.indexOf('\r\n\r\n');
    return end >= 0 && b.length >= end + 4 + 16;
  });
  const end = received.indexOf('\r\n\r\n');
  t.match(received.toString('latin1', 0, end), /^HTTP\/1\.1 101 WebSocket Protocol Handshake\r\n/);
  t.equal(received.subarray(end + 4, end + 20).toString('latin1'), '8jKS\'y:G*Co,Wxa-', 'the md5 answer of the spec example');
  t.ok(backend.got[0]!.key3.equals(key3), 'the server got the 8 bytes intact');
  t.match(backend.got[0]!.head, /^GET \/demo HTTP\/1\.1\r\n/);
  t.match(backend.got[0]!.head, /\r\nUpgrade: WebSocket\r\n/);
  t.match(backend.got[0]!.head, /\r\nConnection: Upgrade/);
  t.match(backend.got[0]!.head, /\r\nX-Forwarded-For: 127\.0\.0\.1/);
  client.write(Buffer.concat([Buffer.from([0x00]), Buffer.from('hixie'), Buffer.from([0xff])]));
  const frame = await client.until((b) => b.length >= end + 20 + 13);
  t.equal(frame.subarray(end + 20).toString('latin1'), '\x00echo: hixie\xff');
  client.close();
});

t.test('hixie-76 with the 8 bytes in a later segment', async (t) => {
  const backend = await hixieBackend(t);
  const mux = await setup(t, { servers: [{ name: 'h1', address: backend.address }] });
  const client = await RawClient.connect(mux.port('fe'));
  client.write(
    'GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n' +
      'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nOrigin: http://example.com\r\n\r\n',
  );
  await new Promise((r) => setImmediate(r));
  client.write('^n:d');
  client.write('s[4U');
  const received = await client.until((b) => {
    const end = b.indexOf('\r\n\r\n');
    return end >= 0 && b.length >= end + 4 + 16;
  });
  const end = received.indexOf('\r\n\r\n');
  t.equal(received.subarray(end + 4, end + 20).toString('latin1'), '8jKS\'y:G*Co,Wxa-');
  t.equal(backend.got[0]!.key3.toString('latin1'), '^n:ds[4U');
  client.close();
});

t.test('sticky: an upgrade carrying the cookie goes to the server it names', async (t) => {
  const b1 = await wsBackend(t);
  const b2 = await wsBackend(t);
  const mux = await setup(t, {
    http: { stickyCookie: 'SRV' },
    servers: [
      { name: 'one', address: b1.address },
      { name: 'two', address: b2.address },
    ],
  });
  for (let i = 0; i < 3; i++) {
    const ws = await openWs(`ws://127.0.0.1:${mux.port('fe')}/x`, { headers: { Cookie: 'a=1; SRV=two; b=2' } });
    ws.send('x');
    await nextMessage(ws);
    ws.close();
  }
  t.equal(b1.upgrades.length, 0);
  t.equal(b2.upgrades.length, 3, 'every upgrade went to "two"');
  t.equal(b2.upgrades[0]!.cookie, 'a=1; b=2', 'the sticky cookie is taken out');
});

t.test("an idle WebSocket lives past the frontend's timeouts.client and is closed at the backend's timeouts.tunnel", async (t) => {
  const backend = await wsBackend(t);
  const mux = await setup(t, { timeouts: { tunnel: '1s' }, servers: [{ name: 'ws1', address: backend.address }] }, { timeouts: { client: '200ms' } });
  const ws = await openWs(`ws://127.0.0.1:${mux.port('fe')}/idle`);
  ws.send('once');
  t.equal((await nextMessage(ws)).data.toString(), 'echo: once');
  const idleSince = performance.now();
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((r) => setTimeout(r, 500));
  t.equal(ws.readyState, WebSocket.OPEN, 'open 500 ms into the silence, past timeouts.client');
  const code = await closed;
  const idle = performance.now() - idleSince;
  t.ok(idle >= 980, `closed after ${Math.round(idle)} ms of silence (tunnel 1 s)`);
  t.equal(code, 1006, 'cut without a closing handshake, as a timeout is');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.match(line, { protocol: 'http', path: '/idle', backend: 'ws', server: 'ws1', termination: 'client-timeout' });
});
