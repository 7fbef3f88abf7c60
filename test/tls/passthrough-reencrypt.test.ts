import t from 'tap';
import tls from 'node:tls';
import net from 'node:net';
import { makeCerts, makeCnOnlyCert } from '../helpers/certs.js';
import { startMux } from '../helpers/mux.js';
import { exchange, tcpServer } from '../helpers/servers.js';
import { parseProxyHeader } from '../../src/sniff/proxy-protocol.js';

const certs = makeCerts({ 'front.test': ['front.test'], 'pass.test': ['pass.test'], 'backend.internal': ['backend.internal'] });

/** A TLS server that answers each chunk with who it is (or what it saw of the client) and the chunk. */
async function tlsEcho(
  name: keyof typeof certs,
  tag: string | ((socket: tls.TLSSocket) => string),
  options: tls.TlsOptions = {},
): Promise<{ port: number; close(): Promise<void> }> {
  const pair = certs[name]!;
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert: pair.certPem, key: pair.keyPem, ...options }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => socket.write(`${typeof tag === 'string' ? tag : tag(socket)}: ${d.toString()}`));
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function tlsConnect(port: number, servername: string, ca?: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ...(ca ? { ca } : { rejectUnauthorized: false }) }, () => resolve(s));
    s.once('error', reject);
  });
}

function ask(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.write(text);
  });
}

t.test('a passthrough rule delivers the backend’s own certificate; others are terminated', async (t) => {
  const passBackend = await tlsEcho('pass.test', 'passthrough');
  const plain = await exchangeServer();
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        tls: { certificates: [{ cert: certs['front.test']!.cert, key: certs['front.test']!.key }] },
        rules: [{ if: { sni: 'pass.test' }, use: 'pass', passthrough: true }],
        default: 'plain',
      },
    ],
    backends: [
      { name: 'pass', servers: [{ name: 'p1', address: `127.0.0.1:${passBackend.port}` }] },
      { name: 'plain', servers: [{ name: 'x1', address: `127.0.0.1:${plain.port}` }] },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    await passBackend.close();
    await plain.close();
  });
  const passed = await tlsConnect(mux.port('fe'), 'pass.test', certs['pass.test']!.certPem);
  t.equal(passed.getPeerCertificate().subject.CN, 'pass.test', 'the client sees the backend’s certificate, verified against it');
  t.equal(await ask(passed, 'hi'), 'passthrough: hi');
  passed.destroy();
  const terminated = await tlsConnect(mux.port('fe'), 'other.test');
  t.equal(terminated.getPeerCertificate().subject.CN, 'front.test', 'other names are terminated by sniffmux');
  t.equal(await ask(terminated, 'plain text'), 'plain: plain text', 'and the decrypted bytes reach the default backend');
  terminated.destroy();
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'pass');
  t.match(line, { protocol: 'tls', tls: true, sni: 'pass.test', server: 'p1' });
});

t.test('without tls on the frontend every TLS connection is passthrough', async (t) => {
  const backend = await tlsEcho('backend.internal', 'b');
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], rules: [{ if: { protocol: 'tls' }, use: 'b' }] }],
    backends: [{ name: 'b', servers: [{ name: 'b1', address: `127.0.0.1:${backend.port}` }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await backend.close();
  });
  const s = await tlsConnect(mux.port('fe'), 'backend.internal', certs['backend.internal']!.certPem);
  t.equal(await ask(s, 'x'), 'b: x');
  s.destroy();
});

/** A plain TCP server that answers each chunk with "plain: <chunk>". */
function exchangeServer() {
  return tcpServer((socket) => socket.on('data', (d: Buffer) => socket.write(`plain: ${d.toString()}`)));
}

t.test('re-encryption verifies the backend against its CA, and fails cleanly against a wrong one', async (t) => {
  const backend = await tlsEcho('backend.internal', 'secure');
  const mux = await startMux({
    frontends: [
      { name: 'good', listen: ['127.0.0.1:0'], default: 'good' },
      { name: 'bad', listen: ['127.0.0.1:0'], default: 'bad' },
    ],
    backends: [
      {
        name: 'good',
        tls: { ca: certs['backend.internal']!.cert, servername: 'backend.internal' },
        servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }],
      },
      {
        name: 'bad',
        retries: 0,
        tls: { ca: certs['front.test']!.cert, servername: 'backend.internal' },
        servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }],
      },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    await backend.close();
  });
  const ok = await exchange(mux.port('good'), '\x00hello', { until: (r) => r.toString().includes('hello') });
  t.equal(ok.received.toString(), 'secure: \x00hello', 'plain bytes in, re-encrypted to the server, answer back');
  const refused = await exchange(mux.port('bad'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(refused.received.toString(), /^HTTP\/1\.1 503 /, 'an HTTP client gets a 503');
  const failure = await mux.waitForLog((l) => l.msg === 'server connect failed' && l.backend === 'bad');
  t.match(failure.error, /TLS connect to 127\.0\.0\.1:\d+ failed: .*(self[- ]signed|unable to verify|certificate)/i);
  const line = await mux.waitForLog((l) => l.msg === 'connection' && l.backend === 'bad');
  t.equal(line.termination, 'connect-error');
});

t.test('PROXY v2 to a backend carries the client address, SNI and ALPN', async (t) => {
  const received: Buffer[] = [];
  let headerAndHello!: () => void;
  const arrived = new Promise<void>((r) => (headerAndHello = r));
  const backend = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      received.push(d);
      const parsed = parseProxyHeader(Buffer.concat(received));
      if (parsed.kind === 'header' && Buffer.concat(received).length > parsed.length) headerAndHello();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const port = (backend.address() as net.AddressInfo).port;
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], rules: [{ if: { protocol: 'tls' }, use: 'b' }] }],
    backends: [
      { name: 'b', proxyProtocol: 'v2', servers: [{ name: 'b1', address: `127.0.0.1:${port}` }] },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    backend.close();
  });
  const client = tls.connect({ host: '127.0.0.1', port: mux.port('fe'), servername: 'sni.test', ALPNProtocols: ['h2', 'http/1.1'] });
  client.on('error', () => {});
  await arrived;
  const clientPort = client.localPort;
  client.destroy();
  const parsed = parseProxyHeader(Buffer.concat(received));
  t.equal(parsed.kind, 'header');
  if (parsed.kind !== 'header') return;
  t.equal(parsed.header.version, 2);
  t.equal(parsed.header.source?.address, '127.0.0.1');
  t.equal(parsed.header.source?.port, clientPort);
  t.equal(parsed.header.destination?.port, mux.port('fe'));
  const tlv = (type: number) => parsed.header.tlvs.find((x) => x.type === type)?.value.toString();
  t.equal(tlv(0x02), 'sni.test', 'authority TLV = SNI');
  t.equal(tlv(0x01), 'h2', 'ALPN TLV = the first protocol offered');
  t.equal(Buffer.concat(received)[parsed.length], 0x16, 'the ClientHello follows, untouched');
});

/** One frontend per backend, each sending its plain bytes to that backend. */
async function reencryptingMux(t: { teardown(fn: () => unknown): void }, backends: Record<string, unknown>[]) {
  const mux = await startMux({
    frontends: backends.map((b) => ({ name: String(b.name), listen: ['127.0.0.1:0'], default: b.name })),
    backends: backends.map((b) => ({ retries: 0, ...b })),
  });
  t.teardown(() => mux.stop());
  return mux;
}

t.test('backend tls.verify: false warns at start-up, and reaches a server no CA vouches for', async (t) => {
  const backend = await tlsEcho('backend.internal', 'unverified');
  t.teardown(() => backend.close());
  const mux = await reencryptingMux(t, [{ name: 'loose', tls: { verify: false }, servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }] }]);
  t.ok(mux.logs.some((l) => l.level === 'warn' && l.msg === 'backends[0].tls.verify: false — server certificates are not checked'), 'start-up warning');
  const reply = await exchange(mux.port('loose'), '\x00hi', { until: (r) => r.toString().includes('hi') });
  t.equal(reply.received.toString(), 'unverified: \x00hi');
});

t.test("a backend's client certificate and key are presented to a server that requires one", async (t) => {
  const client = makeCnOnlyCert('sniffmux-client.test');
  const backend = await tlsEcho('backend.internal', (s) => `client ${(s.getPeerCertificate() as tls.PeerCertificate).subject?.CN} authorized=${s.authorized}`, {
    requestCert: true,
    rejectUnauthorized: true,
    ca: client.certPem,
  });
  t.teardown(() => backend.close());
  const tlsTo = { ca: certs['backend.internal']!.cert, servername: 'backend.internal' };
  const mux = await reencryptingMux(t, [
    { name: 'with_cert', tls: { ...tlsTo, cert: client.cert, key: client.key }, servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }] },
    { name: 'without', tls: tlsTo, servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }] },
  ]);
  const reply = await exchange(mux.port('with_cert'), '\x00hi', { until: (r) => r.toString().includes('hi') });
  t.equal(reply.received.toString(), 'client sniffmux-client.test authorized=true: \x00hi');
  const refused = await exchange(mux.port('without'), '\x00hi');
  t.equal(refused.received.toString(), '', 'without a client certificate the server answers nothing');
});

t.test('a backend server that offers only AES128-SHA is refused by default', async (t) => {
  const backend = await tlsEcho('backend.internal', 'weak', { ciphers: 'AES128-SHA', maxVersion: 'TLSv1.2' });
  t.teardown(() => backend.close());
  const mux = await reencryptingMux(t, [
    { name: 'weak', tls: { ca: certs['backend.internal']!.cert, servername: 'backend.internal' }, servers: [{ name: 's1', address: `127.0.0.1:${backend.port}` }] },
  ]);
  const refused = await exchange(mux.port('weak'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(refused.received.toString(), /^HTTP\/1\.1 503 /);
  const failure = await mux.waitForLog((l) => l.msg === 'server connect failed');
  t.match(failure.error, /TLS connect to 127\.0\.0\.1:\d+ failed: .*handshake failure/i);
});
