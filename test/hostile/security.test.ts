/**
 * Issue 7, item 7: security defaults, through the real binary.
 *
 * - Admin: no admin listener unless configured; a listener beyond loopback
 *   without auth is a config error (check and start-up); with auth, every endpoint but /healthz
 *   needs the right user and password, and odd Authorization headers are
 *   just refused.
 * - TLS: versions below 1.2 are refused unless `minVersion` names them;
 *   ciphers without encryption or without authentication are refused even
 *   then.
 * - Forwarded headers (http mode, forwardedFor): whatever a client sends,
 *   X-Forwarded-For and X-Real-IP are the address sniffmux saw, X-Forwarded-Proto
 *   says how it arrived, and its Forwarded and X-Forwarded-Host are dropped;
 *   only a proxy in trustForwarded is believed. On a PROXY-protocol listener a
 *   client cannot skip the header, and one without trustedProxies is warned about.
 * - Logs: client-controlled text (path, SNI, ALPN, PROXY header, garbage)
 *   never breaks out of its JSON string: every stdout line is one JSON object,
 *   no fake line appears, and the fields round-trip exactly.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeCerts } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { echoServer } from '../helpers/servers.js';
import { httpOnce, mb, rssSampler, scenario, sleep, startBinary, within, type Binary } from './lib.js';
import { tempDir } from '../helpers/temp-dir.js';

const certs = makeCerts({ 'sec.test': ['sec.test'] });
const cert = { cert: certs['sec.test']!.cert, key: certs['sec.test']!.key };

/** A server that answers every request (and upgrade) with the request's headers as JSON. */
async function headerMirror(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  server.on('upgrade', (req, socket) => {
    const body = JSON.stringify(req.headers);
    socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const bodyOf = (reply: string): string => reply.slice(reply.indexOf('\r\n\r\n') + 4);

function tlsHandshake(port: number, options: tls.ConnectionOptions): Promise<{ ok: boolean; version: string | null; error: string | null }> {
  return within(
    new Promise((resolve) => {
      let socket: tls.TLSSocket;
      try {
        socket = tls.connect({ port, host: '127.0.0.1', servername: 'sec.test', rejectUnauthorized: false, ...options });
      } catch (error) {
        return resolve({ ok: false, version: null, error: (error as Error).message });
      }
      socket.once('secureConnect', () => {
        const version = socket.getProtocol();
        socket.destroy();
        resolve({ ok: true, version, error: null });
      });
      socket.once('error', (error) => resolve({ ok: false, version: null, error: error.message }));
      socket.once('close', () => resolve({ ok: false, version: null, error: 'closed' }));
    }),
    5000,
    'TLS handshake',
  );
}

t.test('security defaults', async (t) => {
  const echo = await echoServer();
  const mirror = await headerMirror();
  const mirrorAddress = `127.0.0.1:${(mirror.address() as net.AddressInfo).port}`;
  t.teardown(async () => {
    await echo.close();
    mirror.closeAllConnections();
    mirror.close();
  });
  const started: Binary[] = [];
  t.teardown(() => Promise.all(started.map((b) => b.stop())));
  const run = async (config: unknown): Promise<Binary> => {
    const b = await startBinary(config);
    started.push(b);
    return b;
  };
  const peaks: number[] = [];

  await scenario(t, 'security: admin exposure and auth', async (t) => {
    const plain = { frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'echo' }], backends: [{ name: 'echo', servers: [{ name: 'e1', address: echo.address }] }] };
    const none = await run(plain);
    t.notOk(none.logs.some((l) => l.msg === 'admin listening'), 'no admin section: no admin listener at all');
    // Beyond loopback without auth: refused by `check` and at start-up, one line naming admin.listen; nothing is bound.
    const dir = tempDir('smx-admin-');
    const exposed = { ':9000': 'every interface', '0.0.0.0:9000': '0.0.0.0', '[::]:9000': '::' };
    for (const [listen, where] of Object.entries(exposed)) {
      const file = path.join(dir, `admin-${Object.keys(exposed).indexOf(listen)}.json`);
      writeFileSync(file, JSON.stringify({ ...plain, admin: { listen } }));
      const problem = `admin.listen: ${listen} listens on ${where}, beyond loopback, without auth: set admin.auth, or listen on 127.0.0.1 or [::1]`;
      const checked = await runCli(['check', '-c', file]);
      t.same([checked.code, checked.stdout], [1, `${problem}\n`], `check refuses admin on ${listen} without auth`);
      const started = await runCli(['run', '-c', file], 10_000);
      t.same([started.code, started.stderr, started.stdout], [1, `sniffmux: ${problem}\n`, ''], `run refuses to start with it: one line, exit 1, no log of a listener`);
    }
    const guarded = await run({ ...plain, admin: { listen: '127.0.0.1:0', auth: { user: 'ops', password: 's3cret' } } });
    const admin = guarded.logs.find((l) => l.msg === 'admin listening')!;
    t.equal(admin.host, '127.0.0.1', 'admin bound to loopback as configured');
    const get = (path: string, authorization?: string) =>
      httpOnce(admin.port as number, `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${authorization === undefined ? '' : `Authorization: ${authorization}\r\n`}\r\n`);
    const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;
    const attempts: [string, string | undefined, number][] = [
      ['/status.json', undefined, 401],
      ['/metrics', undefined, 401],
      ['/status', basic('ops:wrong'), 401],
      ['/status', basic('ops:s3cret '), 401],
      ['/status', basic('OPS:s3cret'), 401],
      ['/status', basic('ops:s3cret:extra'), 401],
      ['/status', `Basic ${'A'.repeat(60_000)}`, 401],
      ['/status', 'Basic !!!', 401],
      ['/status', 'Bearer s3cret', 401],
      ['/status', basic('ops:s3cret'), 200],
      ['/metrics', basic('ops:s3cret'), 200],
      ['/healthz', undefined, 200],
    ];
    for (const [path, authorization, status] of attempts) {
      // Node answers a 60 KB head with 431 and closes while the client may still be sending: the kernel then resets, and the client may read the reset before the answer.
      const reply = await get(path, authorization).catch((e: NodeJS.ErrnoException) => `reset (${e.code})`);
      const got = Number(/^HTTP\/1\.1 (\d+)/.exec(reply)?.[1] ?? 0);
      const refused = got === 431 || got === 400 || (reply.startsWith('reset') && (authorization?.length ?? 0) > 16_384);
      t.ok(got === status || (status === 401 && refused), `${path} with ${authorization ? authorization.slice(0, 30) : 'no auth'}: ${got || reply}`);
    }
    t.equal(guarded.child.exitCode, null, 'still running');
    peaks.push(guarded.memory().peak);
    return {
      load: `${attempts.length} admin requests`,
      faults: 'no admin section; :9000, 0.0.0.0 and [::] without auth; wrong, padded, oversized and malformed credentials',
      bytesLost: 0,
      maxRssMB: mb(guarded.memory().peak),
      rssOf: 'sniffmux' as const,
      figures: 'no listener unless configured; beyond loopback without auth refused by check and at start-up (exit 1, one line); 401 for every bad credential, /healthz open',
    };
  });

  await scenario(t, 'security: TLS versions and ciphers', async (t) => {
    const frontend = (name: string, tlsSettings: Record<string, unknown>) => ({ name, listen: ['127.0.0.1:0'], tls: { certificates: [cert], ...tlsSettings }, default: 'echo' });
    const mux = await run({
      frontends: [frontend('modern', {}), frontend('legacy', { minVersion: 'TLSv1' })],
      backends: [{ name: 'echo', servers: [{ name: 'e1', address: echo.address }] }],
    });
    t.ok(mux.logs.some((l) => l.level === 'warn' && /minVersion: TLSv1 accepts TLS versions deprecated/.test(l.msg)), 'naming TLSv1 is warned about');
    const legacyClient = { minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    const results = {
      'TLS 1.0 to the default': await tlsHandshake(mux.port('modern'), { ...legacyClient, maxVersion: 'TLSv1' }),
      'TLS 1.1 to the default': await tlsHandshake(mux.port('modern'), { ...legacyClient, maxVersion: 'TLSv1.1' }),
      'TLS 1.2 to the default': await tlsHandshake(mux.port('modern'), { maxVersion: 'TLSv1.2' }),
      'TLS 1.3 to the default': await tlsHandshake(mux.port('modern'), {}),
      'TLS 1.0 where TLSv1 is named': await tlsHandshake(mux.port('legacy'), { ...legacyClient, maxVersion: 'TLSv1' }),
      'NULL cipher (no encryption)': await tlsHandshake(mux.port('legacy'), { maxVersion: 'TLSv1.2', ciphers: 'NULL-SHA256:@SECLEVEL=0' }),
      'anonymous cipher (no authentication)': await tlsHandshake(mux.port('legacy'), { maxVersion: 'TLSv1.2', ciphers: 'AECDH-AES128-SHA:@SECLEVEL=0' }),
    };
    const expected: Record<keyof typeof results, boolean> = {
      'TLS 1.0 to the default': false,
      'TLS 1.1 to the default': false,
      'TLS 1.2 to the default': true,
      'TLS 1.3 to the default': true,
      'TLS 1.0 where TLSv1 is named': true,
      'NULL cipher (no encryption)': false,
      'anonymous cipher (no authentication)': false,
    };
    for (const [name, result] of Object.entries(results)) {
      t.equal(result.ok, expected[name as keyof typeof results], `${name}: ${result.ok ? `accepted (${result.version})` : `refused (${result.error})`}`);
    }
    await sleep(200);
    t.ok(mux.logs.some((l) => l.msg === 'connection' && l.termination === 'tls-error'), 'refused handshakes are logged as tls-error');
    peaks.push(mux.memory().peak);
    return {
      load: `${Object.keys(results).length} handshakes`,
      faults: 'TLS 1.0/1.1 clients, NULL and anonymous cipher suites',
      bytesLost: 0,
      maxRssMB: mb(mux.memory().peak),
      rssOf: 'sniffmux' as const,
      figures: 'TLS < 1.2 refused unless minVersion names it (then warned); NULL and anonymous suites refused even then',
    };
  });

  await scenario(t, 'security: forwarded headers cannot be spoofed', async (t) => {
    const mux = await run({
      frontends: [
        { name: 'fe', listen: ['127.0.0.1:0'], tls: { certificates: [cert] }, rules: [{ if: { protocol: 'http' }, use: 'web' }], default: 'echo' },
        { name: 'pp', listen: [{ address: '127.0.0.1:0', proxyProtocol: true }], rules: [{ if: { protocol: 'http' }, use: 'web' }], default: 'echo' },
        {
          name: 'pp-trusted',
          listen: [{ address: '127.0.0.1:0', proxyProtocol: true, trustedProxies: ['127.0.0.2/32', '::1/128'] }],
          rules: [{ if: { protocol: 'http' }, use: 'web' }],
          default: 'echo',
        },
        { name: 'trusting', listen: ['127.0.0.1:0'], default: 'web-trusting' },
      ],
      backends: [
        { name: 'web', mode: 'http', http: { forwardedFor: true }, servers: [{ name: 'w1', address: mirrorAddress }] },
        { name: 'web-trusting', mode: 'http', http: { forwardedFor: true, trustForwarded: ['127.0.0.7/32'] }, servers: [{ name: 'w1', address: mirrorAddress }] },
        { name: 'echo', servers: [{ name: 'e1', address: echo.address }] },
      ],
    });
    const warned = (index: number) => mux.logs.some((l) => l.level === 'warn' && l.msg.startsWith(`frontends[${index}].listen[0].proxyProtocol: true without trustedProxies`));
    t.ok(warned(1), 'a PROXY listener that trusts every peer is warned about at start-up');
    t.notOk(warned(2), 'one with trustedProxies is not');
    const port = mux.port('fe');
    const from = '127.0.0.9';
    const spoofs = [
      'X-Forwarded-For: 6.6.6.6\r\n',
      'X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\n',
      'X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n',
      'Connection: X-Real-IP, X-Forwarded-For\r\nX-Real-IP: 6.6.6.6\r\n',
      'Forwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\n',
      'X-Forwarded-For: 6.6.6.6, 127.0.0.9\r\n',
    ];
    let checked = 0;
    const check = (headers: Record<string, string>, what: string, proto: string): void => {
      checked++;
      t.equal(headers['x-forwarded-for'], from, `${what}: X-Forwarded-For is the real client alone`);
      t.equal(headers['x-real-ip'], from, `${what}: X-Real-IP is the real client`);
      t.equal(headers['x-forwarded-proto'], proto, `${what}: X-Forwarded-Proto is ${proto}`);
      t.notOk('forwarded' in headers || 'x-forwarded-host' in headers, `${what}: no Forwarded or X-Forwarded-Host reaches the server`);
    };
    for (const spoof of spoofs) {
      const reply = await httpOnce(port, `GET / HTTP/1.1\r\nHost: x\r\n${spoof}\r\n`, { localAddress: from });
      check(JSON.parse(bodyOf(reply)), JSON.stringify(spoof.trim()), 'http');
    }
    // An upgrade goes through a tunnel whose head sniffmux writes itself.
    const upgrade = await httpOnce(port, 'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n', {
      localAddress: from,
    });
    check(JSON.parse(bodyOf(upgrade)), 'upgrade', 'http');
    // Over terminated TLS the proto is https, whatever the client claims.
    const secure = await httpOnce(port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: http\r\nX-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n', {
      servername: 'sec.test',
      localAddress: from,
    });
    check(JSON.parse(bodyOf(secure)), 'over TLS', 'https');
    // A proxy in trustForwarded speaks for its clients: its list is appended to, its other fields kept; anyone else on the same route is replaced.
    const forged = 'X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.test\r\nForwarded: for=203.0.113.9\r\n';
    const viaTrusted = JSON.parse(bodyOf(await httpOnce(mux.port('trusting'), `GET / HTTP/1.1\r\nHost: x\r\n${forged}\r\n`, { localAddress: '127.0.0.7' })));
    t.same(
      [viaTrusted['x-forwarded-for'], viaTrusted['x-real-ip'], viaTrusted['x-forwarded-proto'], viaTrusted['x-forwarded-host'], viaTrusted.forwarded],
      ['203.0.113.9, 127.0.0.7', '203.0.113.9', 'https', 'shop.test', 'for=203.0.113.9'],
      'from a trusted proxy: X-Forwarded-For appended to, X-Real-IP / X-Forwarded-Proto / X-Forwarded-Host / Forwarded as it sent them',
    );
    const besideTrusted = JSON.parse(bodyOf(await httpOnce(mux.port('trusting'), `GET / HTTP/1.1\r\nHost: x\r\n${forged}\r\n`, { localAddress: from })));
    check(besideTrusted, 'an untrusted client of the trusting backend', 'http');
    // Header shapes Node's strict parser refuses: 400, never passed on.
    for (const bad of ['X-Real-IP : 6.6.6.6\r\n', 'X-Real-IP: a\r\n 6.6.6.6\r\n', 'X-Real-IP: 6.6.6.6\n\rX: y\r\n']) {
      const reply = await httpOnce(port, `GET / HTTP/1.1\r\nHost: x\r\n${bad}\r\n`, { localAddress: from });
      t.match(reply, /^HTTP\/1\.1 400/, `${JSON.stringify(bad)}: 400`);
    }
    // A PROXY-protocol listener: a client cannot skip the header to pass as the proxy.
    const skipped = await httpOnce(mux.port('pp'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n').catch((e: Error) => e.message);
    t.notMatch(skipped, /^HTTP\/1\.1 200/, 'no PROXY header on a proxyProtocol listener: not served');
    const viaProxy = await httpOnce(mux.port('pp'), 'PROXY TCP4 192.0.2.44 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\n\r\n');
    t.equal(JSON.parse(bodyOf(viaProxy))['x-real-ip'], '192.0.2.44', 'behind a PROXY header, the forwarded address is the one the proxy gave');
    // trustedProxies: only those peers may speak for a client.
    const proxyLine = 'PROXY TCP4 192.0.2.45 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n';
    const untrusted = await httpOnce(mux.port('pp-trusted'), proxyLine, { localAddress: '127.0.0.3' }).catch((e: Error) => e.message);
    t.notMatch(untrusted, /^HTTP/, 'a PROXY header from an address not in trustedProxies: refused');
    const trusted = await httpOnce(mux.port('pp-trusted'), proxyLine, { localAddress: '127.0.0.2' });
    t.equal(JSON.parse(bodyOf(trusted))['x-real-ip'], '192.0.2.45', 'from a trusted proxy: the address it gave');
    await sleep(100);
    t.ok(
      mux.logs.some((l) => l.msg === 'connection' && l.frontend === 'pp-trusted' && l.termination === 'bad-request' && String(l.client).startsWith('127.0.0.3:')),
      'the refused one is logged with its real address, termination bad-request',
    );
    peaks.push(mux.memory().peak);
    return {
      load: `${checked} requests with forged forwarding fields (plain, upgrade, TLS)`,
      faults: 'forged X-Forwarded-For / X-Real-IP / X-Forwarded-Proto / X-Forwarded-Host / Forwarded, Connection-listed removal, obs-fold, space before colon, skipped PROXY header, PROXY header from an untrusted peer',
      bytesLost: 0,
      maxRssMB: mb(mux.memory().peak),
      rssOf: 'sniffmux' as const,
      figures: 'from an untrusted client X-Forwarded-For and X-Real-IP are the address sniffmux saw, proto from the connection, Forwarded and X-Forwarded-Host dropped; a trustForwarded proxy\'s list appended to; malformed fields 400; PROXY headers only from trustedProxies (a listener without them warned about)',
    };
  });

  await scenario(t, 'security: no log injection', async (t) => {
    const mux = await run({
      log: { level: 'debug' },
      frontends: [
        { name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '300ms' }, rules: [{ if: { protocol: 'tls' }, use: 'echo' }, { if: { protocol: 'http' }, use: 'web' }], default: 'echo' },
        { name: 'pp', listen: [{ address: '127.0.0.1:0', proxyProtocol: true }], default: 'echo' },
      ],
      backends: [
        { name: 'web', mode: 'http', servers: [{ name: 'w1', address: mirrorAddress }] },
        { name: 'echo', servers: [{ name: 'e1', address: echo.address }] },
      ],
    });
    const rss = rssSampler(mux.pid);
    const port = mux.port('fe');
    const fake = '{"level":"info","msg":"connection","client":"6.6.6.6:1","termination":"client-close","note":"INJECTED"}';
    /** Sends raw bytes, waits a moment for sniffmux to deal with them, closes. */
    const poke = (to: number, bytes: string | Buffer): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect(to, '127.0.0.1', () => s.write(bytes));
        s.on('data', () => {});
        s.on('error', () => resolve());
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 300);
      });
    // Paths: quotes, backslashes, a whole fake line, bytes above 0x7f; and what a request line cannot carry (an ESC, a CR: the sniffer then sees 'other').
    const paths = [`/q"\\${fake}`, `/%0A${encodeURIComponent(fake)}`, `/\u00ff\u0080${fake}`, `/a\u001b[31mred`, `/x\r${fake}`];
    for (const path of paths) await poke(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    // SNI and ALPN: any bytes a ClientHello can carry.
    const sni = `evil\n${fake}\u001b.test`;
    await tlsHandshake(port, { servername: sni, ALPNProtocols: [`h2\n${fake}`] });
    // A PROXY v1 header with a newline where the addresses go, and raw garbage with terminal escapes.
    await poke(mux.port('pp'), `PROXY TCP4 1.2.3.4\n${fake}\r\n`);
    await poke(port, `\u0000\u001b]0;title\u0007${fake}\n`);
    await sleep(500);
    const lines = mux.logs.length;
    t.equal(mux.other(), '', 'every stdout line is one JSON object (nothing else was printed)');
    t.notOk(
      mux.logs.some((l) => String(l.client).startsWith('6.6.6.6')),
      'no fake connection line',
    );
    const logged = mux.logs.filter((l) => l.msg === 'connection');
    // What the client sent, byte for byte, as the sniffer reads it (latin1).
    const sent = paths.map((p) => Buffer.from(p, 'utf8').toString('latin1'));
    const loggedPaths = logged.map((l) => l.path).filter((p): p is string => typeof p === 'string');
    t.ok(loggedPaths.length >= 3, `${loggedPaths.length} request paths logged`);
    t.ok(
      loggedPaths.every((p) => sent.includes(p)),
      'each logged path is exactly what was sent, inside its JSON string',
    );
    t.ok(loggedPaths.some((p) => p.includes(fake)), 'a path carrying a whole fake log line stayed inside its field');
    const snis = logged.map((l) => l.sni).filter((x) => x !== null);
    t.ok(snis.every((x) => x === sni.toLowerCase()), `the SNI is logged exactly or not at all (not a host name): ${JSON.stringify(snis)}`);
    // The bytes on stdout, as a terminal or a log shipper reads them.
    const raw = mux.stdout();
    t.ok(raw.length > 0 && raw[raw.length - 1] === 0x0a, 'stdout ends with a whole line');
    t.equal(raw.indexOf(0x1b), -1, 'no ESC byte on stdout: terminal escapes reach it escaped');
    t.equal(raw.indexOf(0x0d), -1, 'no CR byte on stdout');
    const rawLines = raw.toString('utf8').slice(0, -1).split('\n');
    const STRING = /"(?:[^"\\\u0000-\u001f]|\\.)*"/g;
    let inStrings = 0;
    const broken = rawLines.filter((line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return true;
      }
      // Outside its string literals a line is only JSON's punctuation, numbers and literals: no client text.
      const skeleton = line.replace(STRING, '""');
      inStrings += (line.match(STRING) ?? []).reduce((n, literal) => n + literal.split('INJECTED').length - 1, 0);
      return typeof parsed !== 'object' || parsed === null || /[\u0000-\u001f]/.test(line) || !/^[\s{}[\]:,"0-9eE.+\-truefalsn]*$/.test(skeleton);
    });
    t.same(broken, [], `each of the ${rawLines.length} stdout lines is one JSON object with no control byte, client text only inside its strings`);
    t.equal(inStrings, raw.toString('utf8').split('INJECTED').length - 1, 'every copy of the injected text on stdout is inside a JSON string value');
    t.ok(inStrings >= 3, `the injected text was logged (${inStrings} times), escaped`);
    peaks.push(rss.stop());
    return {
      load: `${paths.length + 3} crafted connections, ${lines} log lines at debug level`,
      faults: 'newlines, quotes, backslashes, ANSI escapes and a whole fake JSON line in path, SNI, ALPN, PROXY header and raw bytes',
      bytesLost: 0,
      maxRssMB: mb(Math.max(...peaks)),
      rssOf: 'sniffmux' as const,
      figures: 'every line parses as one JSON object; no fake line; client text round-trips inside its field',
    };
  });
});
