import t from 'tap';
import https from 'node:https';
import { encodeProxyV1 } from '../../src/sniff/proxy-protocol.js';
import { makeCerts } from '../helpers/certs.js';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { httpPeer, RawClient, get } from '../helpers/http.js';

/**
 * What the server sees of a request in http mode: forwarded fields (plain,
 * behind a PROXY header, behind TLS termination), hop-by-hop fields removed,
 * Host kept, the path rewritten; and what the client sees of the response.
 */
type Teardown = { teardown(fn: () => unknown): void };

const certs = makeCerts({ 'mux.test': ['mux.test'] });

async function setup(t: Teardown, opts: { http?: Record<string, unknown>; listen?: unknown[]; tls?: boolean } = {}) {
  const peer = await httpPeer('web', (_req, res, seen) => {
    res.writeHead(200, [
      'Content-Type', 'application/json',
      'Connection', 'close, X-Hop',
      'X-Hop', 'server-hop',
      'Keep-Alive', 'timeout=5',
      'Proxy-Authenticate', 'Basic',
      'X-Kept', 'yes',
    ]);
    res.end(JSON.stringify({ url: seen.url, headers: seen.headers, rawHeaders: seen.rawHeaders }));
  });
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: opts.listen ?? ['127.0.0.1:0'],
        inspect: { delay: '300ms' },
        ...(opts.tls ? { tls: { certificates: [{ cert: certs['mux.test']!.cert, key: certs['mux.test']!.key }] } } : {}),
        default: 'web',
      },
    ],
    backends: [{ name: 'web', mode: 'http', http: { forwardedFor: true, ...opts.http }, servers: [{ name: 'w1', address: peer.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await peer.close();
  });
  return { mux, port: mux.port('fe'), peer };
}

interface Echo {
  url: string;
  headers: Record<string, string>;
  rawHeaders: string[];
}

async function viaRaw(port: number, request: string, prefix = ''): Promise<{ echo: Echo; headers: Record<string, string> }> {
  const client = await RawClient.connect(port);
  client.write(prefix + request);
  const r = await client.response();
  client.close();
  return { echo: JSON.parse(r.body.toString()) as Echo, headers: r.headers };
}

const FORGED =
  'X-Forwarded-For: 203.0.113.7\r\n' +
  'X-Forwarded-For: 198.51.100.1\r\n' +
  'X-Real-IP: 6.6.6.6\r\n' +
  'X-Forwarded-Proto: https\r\n' +
  'X-Forwarded-Host: evil.test\r\n' +
  'Forwarded: for=6.6.6.6;proto=https\r\n';

t.test('forwardedFor: the client\'s forwarding fields replaced by ours; Host kept; hop-by-hop dropped', async (t) => {
  const { port } = await setup(t);
  const { echo, headers } = await viaRaw(
    port,
    'GET /page?q=1 HTTP/1.1\r\n' +
      'Host: Example.TEST:8080\r\n' +
      FORGED +
      'Connection: keep-alive, X-Private\r\n' +
      'X-Private: secret\r\n' +
      'Keep-Alive: timeout=9\r\n' +
      'TE: trailers\r\n' +
      'Trailer: X-T\r\n' +
      'Upgrade: h2c\r\n' +
      'Proxy-Authorization: Basic eDp5\r\n' +
      'Proxy-Connection: keep-alive\r\n' +
      'X-Custom: Kept As Is\r\n' +
      '\r\n',
  );
  const h = echo.headers;
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'the client is not a trusted proxy: only the address sniffmux saw');
  t.equal(h['x-real-ip'], '127.0.0.1', 'replaced, not trusted from the client');
  t.equal(h['x-forwarded-proto'], 'http');
  t.notOk('x-forwarded-host' in h, 'X-Forwarded-Host dropped');
  t.notOk('forwarded' in h, 'Forwarded dropped');
  t.equal(h.host, 'Example.TEST:8080', 'Host passes as sent');
  t.equal(h['x-custom'], 'Kept As Is');
  for (const gone of ['x-private', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection']) {
    t.notOk(gone in h, `${gone} is not forwarded`);
  }
  t.equal(echo.url, '/page?q=1');
  t.ok(echo.rawHeaders.includes('X-Custom'), 'field names keep their case');
  // The response's hop-by-hop fields are the server's connection's, not the client's.
  t.equal(headers['x-kept'], 'yes');
  for (const gone of ['x-hop', 'keep-alive', 'proxy-authenticate']) t.notOk(gone in headers, `response ${gone} is not passed on`);
  t.not(headers.connection, 'close, X-Hop');
});

t.test('trustForwarded: a trusted proxy\'s X-Forwarded-For is appended to and its other fields kept', async (t) => {
  const { port } = await setup(t, { http: { trustForwarded: ['10.0.0.0/8', '127.0.0.1/32'] } });
  const { echo } = await viaRaw(port, get('/', FORGED));
  const h = echo.headers;
  t.equal(h['x-forwarded-for'], '203.0.113.7, 198.51.100.1, 127.0.0.1');
  t.equal(h['x-real-ip'], '6.6.6.6', 'the proxy knows the client better');
  t.equal(h['x-forwarded-proto'], 'https', 'the proxy terminated TLS');
  t.equal(h['x-forwarded-host'], 'evil.test');
  t.equal(h.forwarded, 'for=6.6.6.6;proto=https');
  const plain = await viaRaw(port, get('/', 'X-Forwarded-For: 203.0.113.7\r\n'));
  t.equal(plain.echo.headers['x-real-ip'], '127.0.0.1', 'ours when the proxy sent none');
  t.equal(plain.echo.headers['x-forwarded-proto'], 'http');
});

t.test('behind a PROXY header: the forwarded address is the one the header carries', async (t) => {
  const { port, mux } = await setup(t, { listen: [{ address: '127.0.0.1:0', proxyProtocol: true }] });
  const proxy = encodeProxyV1({ source: { address: '192.0.2.44', port: 40000 }, destination: { address: '127.0.0.1', port: 80 } });
  const { echo } = await viaRaw(port, get('/', 'X-Forwarded-For: 10.1.1.1\r\n'), proxy.toString('latin1'));
  t.equal(echo.headers['x-forwarded-for'], '192.0.2.44', 'that client is not a trusted proxy');
  t.equal(echo.headers['x-real-ip'], '192.0.2.44');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.client, '192.0.2.44:40000');
});

t.test('behind a PROXY header: trust is judged on the address the header carries', async (t) => {
  const { port } = await setup(t, { listen: [{ address: '127.0.0.1:0', proxyProtocol: true }], http: { trustForwarded: ['192.0.2.0/24'] } });
  const from = (address: string) => encodeProxyV1({ source: { address, port: 40000 }, destination: { address: '127.0.0.1', port: 80 } }).toString('latin1');
  const trusted = await viaRaw(port, get('/', 'X-Forwarded-For: 10.1.1.1\r\n'), from('192.0.2.44'));
  t.equal(trusted.echo.headers['x-forwarded-for'], '10.1.1.1, 192.0.2.44', 'a proxy in trustForwarded: appended to');
  const other = await viaRaw(port, get('/', 'X-Forwarded-For: 10.1.1.1\r\n'), from('198.51.100.1'));
  t.equal(other.echo.headers['x-forwarded-for'], '198.51.100.1', 'anyone else: replaced');
});

t.test('behind TLS termination: X-Forwarded-Proto is https', async (t) => {
  const { port } = await setup(t, { tls: true });
  const body = await new Promise<string>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/secure', servername: 'mux.test', ca: certs['mux.test']!.certPem, headers: { host: 'mux.test' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
  const echo = JSON.parse(body) as Echo;
  t.equal(echo.headers['x-forwarded-proto'], 'https');
  t.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
  t.equal(echo.headers['x-real-ip'], '127.0.0.1');
});

t.test('TLS and a PROXY header together', async (t) => {
  const { port } = await setup(t, { tls: true, listen: [{ address: '127.0.0.1:0', proxyProtocol: true }] });
  const tls = await import('node:tls');
  const net = await import('node:net');
  const raw = net.connect(port, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  raw.write(encodeProxyV1({ source: { address: '198.51.100.9', port: 1234 }, destination: { address: '127.0.0.1', port: 443 } }));
  const secure = tls.connect({ socket: raw, servername: 'mux.test', ca: certs['mux.test']!.certPem });
  await new Promise((r) => secure.once('secureConnect', r));
  const client = await RawClient.connect(0, secure);
  client.write(get('/both'));
  const echo = JSON.parse((await client.response()).body.toString()) as Echo;
  t.equal(echo.headers['x-forwarded-proto'], 'https');
  t.equal(echo.headers['x-real-ip'], '198.51.100.9');
  client.close();
});

t.test('without forwardedFor, the client\'s forwarded fields pass untouched and none are added', async (t) => {
  const { port } = await setup(t, { http: { forwardedFor: false } });
  const { echo } = await viaRaw(port, get('/', 'X-Forwarded-For: 10.9.9.9\r\n'));
  t.equal(echo.headers['x-forwarded-for'], '10.9.9.9');
  t.notOk('x-real-ip' in echo.headers);
  t.notOk('x-forwarded-proto' in echo.headers);
});

t.test('rewrite: the path is rewritten with capture groups before it leaves; the query is kept', async (t) => {
  const { port } = await setup(t, { http: { rewrite: { pattern: '^/services/myservice/(.*)', to: '/$1' } } });
  t.equal((await viaRaw(port, get('/services/myservice/users/42?x=1&y=2'))).echo.url, '/users/42?x=1&y=2');
  t.equal((await viaRaw(port, get('/services/myservice/'))).echo.url, '/', 'an empty capture is the root');
  t.equal((await viaRaw(port, get('/other/path?z'))).echo.url, '/other/path?z', 'no match: unchanged');
});

t.test('rewrite with named groups, and routing still sees the original path', async (t) => {
  const peer = await httpPeer('v');
  const mux: RunningMux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], rules: [{ if: { path: { prefix: '/api/v1/' } }, use: 'api' }] }],
    backends: [{ name: 'api', mode: 'http', http: { rewrite: { pattern: '^/api/(?<version>v[0-9]+)/(?<rest>.*)$', to: '/$<rest>?version=$<version>' } }, servers: [{ name: 'a', address: peer.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await peer.close();
  });
  const { echo } = await viaRaw(mux.port('fe'), get('/api/v1/items'));
  t.equal(echo.url, '/items?version=v1');
});

t.test('proxyProtocol to an http backend: each client connection gets its own server connections, each with its header', async (t) => {
  const net = await import('node:net');
  const { tcpServer } = await import('../helpers/servers.js');
  // A server behind a PROXY-speaking proxy: the first line is the PROXY header, then HTTP; it answers with that line.
  const server = await tcpServer((socket: import('node:net').Socket) => {
    let buffer = '';
    let proxyLine: string | null = null;
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      if (proxyLine === null) {
        const nl = buffer.indexOf('\r\n');
        if (nl < 0) return;
        proxyLine = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
      }
      let end;
      while ((end = buffer.indexOf('\r\n\r\n')) >= 0) {
        buffer = buffer.slice(end + 4);
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${proxyLine.length}\r\n\r\n${proxyLine}`);
      }
    });
  });
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'web' }],
    backends: [{ name: 'web', mode: 'http', proxyProtocol: 'v1', servers: [{ name: 'w1', address: server.address }] }],
  });
  t.teardown(async () => {
    await mux.stop();
    await server.close();
  });
  const first = await RawClient.connect(mux.port('fe'));
  const second = await RawClient.connect(mux.port('fe'));
  const ports = [first, second].map((c) => (c.socket as InstanceType<typeof net.Socket>).localPort);
  for (const [i, client] of [first, second, first].entries()) {
    client.write(get(`/${i}`));
    const line = (await client.response()).body.toString();
    t.match(line, new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 ${ports[i === 1 ? 1 : 0]} ${mux.port('fe')}$`), `request ${i}: its own client in the header`);
  }
  t.equal(server.accepted, 2, 'one server connection per client connection, kept alive for its next request');
  first.close();
  second.close();
});
