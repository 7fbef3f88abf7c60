import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { WebSocketServer, WebSocket } from 'ws';
import { makeCerts, makeCnOnlyCert } from '../helpers/certs.js';
import { adminRequest, metricValue } from '../helpers/admin.js';
import { FIXTURES, startMux, type RunningMux } from '../helpers/mux.js';
import { exchange, firstLine, peerHasRead, taggedEcho, tcpServer, type TestServer } from '../helpers/servers.js';
import { haveTool, runTool } from '../helpers/tools.js';

/**
 * A frontend that terminates TLS (the stunnel role) on the same port as
 * everything else: the decrypted stream is sniffed and routed like a plain one.
 */
const certs = makeCerts({ 'a.test': ['a.test', '*.wild.test'], 'b.test': ['b.test'] });
const cnOnly = makeCnOnlyCert('legacy.test');

interface Setup {
  mux: RunningMux;
  port: number;
}

interface SetupOptions {
  /** Merged into the frontend's `tls`. */
  tls?: Record<string, unknown>;
  /** Merged into the frontend. */
  frontend?: Record<string, unknown>;
  /** Merged into the top of the config. */
  global?: Record<string, unknown>;
  /** The log level (info unless said). */
  level?: string;
}

/**
 * Backends that say who they are, behind rules that read the decrypted
 * stream with the ClientHello's facts kept: `sni` alone, `tls: true` with a
 * protocol, and `protocol: none` for a client silent after its handshake.
 */
async function setup(t: { teardown(fn: () => unknown): void }, options: SetupOptions = {}): Promise<Setup> {
  const web = http.createServer((req, res) => res.end(`web saw ${req.method} ${req.url} host=${req.headers.host}`));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const wsHttp = http.createServer();
  const wss = new WebSocketServer({ server: wsHttp });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo: ${m.toString()}`)));
  await new Promise<void>((r) => wsHttp.listen(0, '127.0.0.1', r));
  const tagged: Record<string, TestServer> = {};
  for (const tag of ['by-sni', 'silent', 'tls-raw', 'raw']) tagged[tag] = await taggedEcho(tag);
  const backend = (name: string, tag: string) => ({ name, servers: [{ name: `${name}1`, address: tagged[tag]!.address }] });
  const config = {
    flashPolicy: { allow: [{ domain: '*', ports: '443' }] },
    ...options.global,
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '300ms' },
        flashPolicy: true,
        tls: { certificates: [certs['a.test']!, certs['b.test']!, cnOnly].map((c) => ({ cert: c.cert, key: c.key })), ...options.tls },
        rules: [
          { if: { sni: 'sni.test' }, use: 'by_sni' },
          { if: { tls: true, protocol: 'none' }, use: 'silent' },
          { if: { websocket: true }, use: 'ws' },
          { if: { protocol: 'http' }, use: 'web' },
          { if: { tls: true, protocol: 'other' }, use: 'tls_raw' },
        ],
        default: 'raw',
        ...options.frontend,
      },
    ],
    backends: [
      { name: 'web', servers: [{ name: 'web1', address: `127.0.0.1:${(web.address() as net.AddressInfo).port}` }] },
      { name: 'ws', servers: [{ name: 'ws1', address: `127.0.0.1:${(wsHttp.address() as net.AddressInfo).port}` }] },
      backend('by_sni', 'by-sni'),
      backend('silent', 'silent'),
      backend('tls_raw', 'tls-raw'),
      backend('raw', 'raw'),
    ],
  };
  const mux = await startMux(config, { level: options.level });
  t.teardown(async () => {
    await mux.stop();
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => web.close(r));
    web.closeAllConnections();
    await new Promise((r) => wsHttp.close(r));
    for (const server of Object.values(tagged)) await server.close();
  });
  return { mux, port: mux.port('fe') };
}

/** A TLS client that trusts nothing in particular: tests look at what it was given. */
function tlsClient(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function readAll(socket: net.Socket, until?: (s: string) => boolean): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (until?.(text)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
}

t.test('openssl s_client: each name gets its certificate, an unknown name the default', async (t) => {
  if (!haveTool(t, 'openssl')) return;
  const { port } = await setup(t);
  const cases: [string, string][] = [
    ['a.test', 'a.test'],
    ['b.test', 'b.test'],
    ['x.wild.test', 'a.test'],
    ['unknown.example', 'a.test'],
  ];
  for (const [servername, cn] of cases) {
    const r = await runTool('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername], '');
    t.match(r.stdout, new RegExp(`subject=CN ?= ?${cn.replace('.', '\\.')}`), `${servername} → certificate of ${cn}`);
  }
});

t.test('TLS below 1.2 is refused by default', async (t) => {
  const { port, mux } = await setup(t);
  const legacy = { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
  await t.rejects(tlsClient(port, legacy), 'a TLSv1-only client cannot connect');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.termination, 'tls-error');
  t.equal(line.tls, true);
  const modern = await tlsClient(port, { servername: 'a.test' });
  t.equal(modern.getProtocol(), 'TLSv1.3', 'a modern client still connects');
  modern.destroy();
});

t.test('minVersion: TLSv1 accepts a TLSv1 client, with a warning at start-up', async (t) => {
  const { port, mux } = await setup(t, { tls: { minVersion: 'TLSv1' } });
  t.ok(mux.logs.some((l) => l.level === 'warn' && /minVersion: TLSv1 /.test(l.msg)), 'start-up warning');
  const socket = await tlsClient(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
  t.equal(socket.getProtocol(), 'TLSv1');
  t.match(socket.getCipher().name, /^ECDHE-/, 'still with a forward-secret key exchange');
  socket.destroy();
});

t.test('a client offering only AES128-SHA is refused by default, and accepted when `ciphers` names it (with a warning)', async (t) => {
  const weak = { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' } as const;
  const strict = await setup(t);
  await t.rejects(tlsClient(strict.port, weak), 'no forward secrecy, no AEAD: refused');
  t.match(await strict.mux.waitForLog((l) => l.msg === 'connection'), { termination: 'tls-error' });
  const tls12 = await tlsClient(strict.port, { maxVersion: 'TLSv1.2' });
  t.match(tls12.getCipher().name, /^ECDHE-(RSA|ECDSA)-(AES\d+-GCM|CHACHA20)/, 'a TLS 1.2 client gets ECDHE with an AEAD cipher');
  tls12.destroy();
  t.notOk(strict.mux.logs.some((l) => /tls\.ciphers/.test(l.msg)), 'no warning for the default list');

  const named = await setup(t, { tls: { ciphers: 'AES128-SHA' } });
  t.ok(named.mux.logs.some((l) => l.level === 'warn' && /^frontends\[0\]\.tls\.ciphers: replaces the default list/.test(l.msg)), 'start-up warning');
  const socket = await tlsClient(named.port, weak);
  t.equal(socket.getCipher().name, 'AES128-SHA');
  socket.destroy();
  const tls13 = await tlsClient(named.port);
  t.equal(tls13.getProtocol(), 'TLSv1.3', 'TLS 1.3 suites are not touched by `ciphers`');
  tls13.destroy();
});

t.test('a certificate with only a CN (no subjectAltName) is chosen by SNI', async (t) => {
  const { port } = await setup(t);
  const socket = await tlsClient(port, { servername: 'legacy.test' });
  const cert = socket.getPeerCertificate();
  t.equal(cert.subject.CN, 'legacy.test');
  t.equal(cert.subjectaltname, undefined, 'the certificate has no SAN');
  socket.destroy();
});

t.test('the frontend alpn list is negotiated: h2 and http/1.1 offered, http/1.1 served', async (t) => {
  const { port, mux } = await setup(t, { tls: { alpn: ['http/1.1'] } });
  const socket = await tlsClient(port, { servername: 'b.test', ALPNProtocols: ['h2', 'http/1.1'] });
  t.equal(socket.alpnProtocol, 'http/1.1');
  const reply = readAll(socket, (s) => s.includes('web saw'));
  socket.write('GET /alpn HTTP/1.1\r\nHost: b.test\r\n\r\n');
  t.match(await reply, /web saw GET \/alpn/);
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.path === '/alpn');
  t.same(line.alpn, ['h2', 'http/1.1'], 'the log keeps what the client offered');
});

t.test('a client that sends its ClientHello and then nothing is closed at timeouts.handshake, logged and counted as tls-error', async (t) => {
  const { port, mux } = await setup(t, { frontend: { timeouts: { handshake: '300ms' } }, global: { admin: { listen: '127.0.0.1:0' } } });
  const socket = net.connect(port, '127.0.0.1');
  const closed = readAll(socket);
  socket.write(readFileSync(path.join(FIXTURES, 'clienthellos/clienthello-curl.bin')));
  const answered = await closed;
  t.ok(answered.startsWith('\x16\x03\x03'), 'sniffmux answered the hello (its ServerHello) before closing');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.match(line, { termination: 'tls-error', tls: true, sni: 'curl.example.test', backend: null, reason: 'TLS handshake not finished within 300 ms' });
  const metrics = (await adminRequest(mux, '/metrics')).body;
  t.equal(metricValue(metrics, 'sniffmux_connections_total{frontend="fe",protocol="tls",termination="tls-error"}'), 1);
});

t.test('curl over HTTPS reaches the HTTP backend; the log carries tls, sni, alpn', async (t) => {
  if (!haveTool(t, 'curl')) return;
  const { port, mux } = await setup(t);
  const r = await runTool('curl', ['-sk', '--http1.1', '--resolve', `b.test:${port}:127.0.0.1`, `https://b.test:${port}/hello?x=1`]);
  t.equal(r.stdout, `web saw GET /hello?x=1 host=b.test:${port}`);
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'web');
  t.match(line, { protocol: 'http', tls: true, sni: 'b.test', alpn: ['http/1.1'], method: 'GET', path: '/hello?x=1', server: 'web1' });
});

t.test('a ws client over wss:// reaches the WebSocket echo', async (t) => {
  const { port } = await setup(t);
  const ws = new WebSocket(`wss://127.0.0.1:${port}/chat`, { rejectUnauthorized: false });
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('over tls'));
    ws.on('message', (m) => resolve(m.toString()));
    ws.on('error', reject);
  });
  t.equal(reply, 'echo: over tls');
  ws.close();
});

t.test('a policy request and raw bytes inside TLS are routed like plain ones', async (t) => {
  const { port, mux } = await setup(t);
  const policy = await tlsClient(port, { servername: 'a.test' });
  const answer = readAll(policy);
  policy.write('<policy-file-request/>\0');
  const text = await answer;
  t.match(text, /<cross-domain-policy>[\s\S]*<\/cross-domain-policy>\n?\0$/);
  const raw = await tlsClient(port, { servername: 'a.test' });
  const echoed = readAll(raw, (s) => s.endsWith('bytes\n'));
  raw.write('\x00raw bytes\n');
  t.equal(await echoed, 'tls-raw\n\x00raw bytes\n', 'raw bytes inside TLS match `tls: true, protocol: other`');
  const plain = await exchange(port, '\x00raw bytes\n', { until: (r) => r.toString().endsWith('bytes\n') });
  t.equal(firstLine(plain.received), 'raw', 'the same bytes in the clear do not: the default');
  const silent = await tlsClient(port, { servername: 'a.test' });
  t.equal(await readAll(silent, (s) => s.includes('\n')), 'silent\n', 'nothing sent after the handshake: `protocol: none` after the delay');
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'silent');
  t.match(line, { protocol: 'none', tls: true, sni: 'a.test' });
});

t.test('200 broken handshakes leave normal clients served', async (t) => {
  const { port, mux } = await setup(t);
  // A TLS record header announcing a ClientHello, then garbage.
  const broken = Buffer.from('16030100300100002c0303' + 'ff'.repeat(44), 'hex');
  await Promise.all(
    Array.from(
      { length: 200 },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => s.write(broken));
          s.on('data', () => {});
          s.on('close', () => resolve());
          s.on('error', () => resolve());
        }),
    ),
  );
  const socket = await tlsClient(port, { servername: 'a.test' });
  const reply = readAll(socket, (s) => s.includes('web saw'));
  socket.write('GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n');
  t.match(await reply, /web saw GET \/after/);
  const failures = mux.connections().filter((l) => l.termination === 'tls-error');
  t.equal(failures.length, 200, 'each broken handshake is logged as tls-error');
});

/**
 * A TCP relay that holds the client's first TLS record and hands it on in
 * pieces cut at `cuts`, each read by sniffmux before the next is sent (as a
 * browser's hello arrives in several segments), then relays both ways.
 */
async function splittingRelay(target: number, cuts: readonly number[]) {
  const firstRecords: number[] = [];
  const upstreamPorts: number[] = [];
  const relay = await tcpServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    upstream.setNoDelay(true);
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.pipe(client);
    let first = Buffer.alloc(0);
    const onData = async (chunk: Buffer): Promise<void> => {
      first = Buffer.concat([first, chunk]);
      if (first.length < 5 || first.length < 5 + first.readUInt16BE(3)) return;
      client.removeListener('data', onData);
      client.pause();
      if (upstream.connecting) await new Promise((r) => upstream.once('connect', r));
      upstreamPorts.push(upstream.localPort!);
      firstRecords.push(first.length);
      await writeInPieces(upstream, first, cuts);
      client.pipe(upstream);
    };
    client.on('data', onData);
  });
  return { port: relay.port, firstRecords, upstreamPorts, close: () => relay.close() };
}

/** Writes `bytes` cut at `cuts`, waiting after each piece until the peer has read it. */
async function writeInPieces(socket: net.Socket, bytes: Buffer, cuts: readonly number[]): Promise<void> {
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    await new Promise((r) => socket.write(bytes.subarray(from, to), r));
    await peerHasRead(socket);
    from = to;
  }
}

/** Long ALPN names make Node's ClientHello longer than 1,400 bytes, as a browser's is. */
const LONG_ALPN = ['h2', 'http/1.1', ...Array.from({ length: 6 }, (_, i) => `x-padding-${i}-${'p'.repeat(200)}`)];

/**
 * The hello must be whole within the inspect delay, or it is terminated as it
 * stands (no SNI): a delay far above the time the pieces take on a busy machine.
 */
const UNHURRIED = { inspect: { delay: '10s' } };

t.test('a ClientHello split across segments keeps its SNI and ALPN for the rules and the log', async (t) => {
  const { port, mux } = await setup(t, { frontend: UNHURRIED });
  for (const cuts of [[5], [6], [1400], [5, 6, 1400]]) {
    const relay = await splittingRelay(port, cuts);
    const socket = await tlsClient(relay.port, { servername: 'sni.test', ALPNProtocols: LONG_ALPN });
    const payload = `after the hand-off \x00\xff cut at ${cuts.join(', ')}\n`;
    const echoed = readAll(socket, (s) => s.endsWith(payload));
    socket.write(Buffer.from(payload, 'latin1'));
    t.equal(await echoed, `by-sni\n${payload}`, `cut at ${cuts}: handshake done, the \`sni\` rule chose by_sni, bytes echoed intact`);
    t.ok(relay.firstRecords[0]! > 1400, `the first record (${relay.firstRecords[0]} bytes) reaches past the last cut`);
    const line = await mux.waitForLog((l) => l.msg === 'connection' && l.client === `127.0.0.1:${relay.upstreamPorts[0]}`);
    t.match(line, { tls: true, sni: 'sni.test', alpn: LONG_ALPN, backend: 'by_sni' }, `cut at ${cuts}: the log line`);
    await relay.close();
  }
});

t.test("Chromium's 2,019-byte ClientHello in two segments: the log carries its SNI and ALPN", async (t) => {
  // A client that leaves mid-handshake is logged when it leaves, not at this timeout.
  const { port, mux } = await setup(t, { frontend: { ...UNHURRIED, timeouts: { handshake: '1h' } } });
  const hello = readFileSync(path.join(FIXTURES, 'clienthellos/clienthello-chromium-156.bin'));
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  const clientPort = socket.localPort;
  const answered = new Promise((r) => socket.once('data', r));
  await writeInPieces(socket, hello, [1400]);
  await answered;
  socket.destroy();
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.client === `127.0.0.1:${clientPort}`);
  t.match(line, { tls: true, sni: 'pq.example.test', alpn: ['h2', 'http/1.1'], termination: 'tls-error' });
});
