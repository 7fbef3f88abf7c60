import t from 'tap';
import { BodyReader, bodyFraming, leadingEmptyLines, type BodyFraming } from '../../src/http/framing.js';
import { requestHeaders, responseHeaders, serializeHead, isUpgrade } from '../../src/http/headers.js';
import { rewriteTarget } from '../../src/http/rewrite.js';
import { findCookie, stickyCookieValue, withoutCookie } from '../../src/http/sticky.js';
import { probeHttp } from '../../src/sniff/http.js';
import type { HttpHead } from '../../src/sniff/probe.js';

/** Pure parts of http mode: framing (at every split point), header rewriting, cookies, rewrites. */

function head(text: string): HttpHead {
  const r = probeHttp(Buffer.from(text, 'latin1'), { maxBytes: 16384 });
  if (r.kind !== 'match' || !r.facts?.http?.headComplete) throw new Error(`not a complete head: ${text}`);
  return r.facts.http;
}

t.test('body framing of request heads', async (t) => {
  const cases: [string, string, BodyFraming | string][] = [
    ['no body', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { kind: 'none' }],
    ['Content-Length', 'POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n', { kind: 'length', length: 12 }],
    ['Content-Length: 0', 'POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n', { kind: 'none' }],
    ['chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', { kind: 'chunked' }],
    ['gzip, chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n', { kind: 'chunked' }],
    ['TE over two fields', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n', { kind: 'chunked' }],
    ['websocket upgrade', 'GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n', { kind: 'tunnel' }],
    ['upgrade with a Content-Length (Node ignores it too)', 'GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 5\r\n\r\n', { kind: 'tunnel' }],
    ['Upgrade without Connection: upgrade', 'GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n', { kind: 'none' }],
    ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\n\r\n', { kind: 'tunnel' }],
    ['CL and TE', 'POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 'both Content-Length and Transfer-Encoding'],
    ['chunked not last', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 'does not end in a single chunked'],
    ['chunked twice', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 'does not end in a single chunked'],
    ['TE in 1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 'HTTP/1.0'],
    ['two CLs', 'POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 'more than one Content-Length'],
    ['CL list', 'POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n', 'invalid Content-Length'],
    ['signed CL', 'POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n', 'invalid Content-Length'],
    ['huge CL', `POST / HTTP/1.1\r\nContent-Length: ${'9'.repeat(16)}\r\n\r\n`, 'invalid Content-Length'],
  ];
  for (const [name, text, expected] of cases) {
    const framing = bodyFraming(head(text));
    if (typeof expected === 'string') {
      t.equal(framing.kind, 'invalid', name);
      t.match((framing as { reason: string }).reason, expected, `${name}: reason`);
    } else {
      t.same(framing, expected, name);
    }
  }
});

/** Feeds `bytes` split at `at` (two buffers) and returns [bytes used, done], or the error. */
function readSplit(framing: BodyFraming, bytes: Buffer, at: number): [number, boolean] | string {
  const reader = new BodyReader(framing as Exclude<BodyFraming, { kind: 'tunnel' }>, 1024);
  let used = 0;
  for (const part of [bytes.subarray(0, at), bytes.subarray(at)]) {
    if (reader.done) break;
    const step = reader.take(part);
    if ('error' in step) return step.error;
    used += step.used;
    if (step.done) break;
  }
  return [used, reader.done];
}

t.test('chunked bodies: the same answer at every split point', async (t) => {
  const body = '5\r\nhello\r\nA;name="v"\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n';
  const next = 'GET /next HTTP/1.1\r\n\r\n';
  const bytes = Buffer.from(body + next, 'latin1');
  for (let at = 0; at <= bytes.length; at++) {
    t.same(readSplit({ kind: 'chunked' }, bytes, at), [body.length, true], `split at ${at}`);
  }
  const single = readSplit({ kind: 'chunked' }, Buffer.from('0\r\n\r\nrest'), 2);
  t.same(single, [5, true], 'an empty body');
});

t.test('chunked bodies that are refused', async (t) => {
  const cases: [string, string][] = [
    ['x\r\n', 'chunk size expected'],
    ['3 \r\nabc\r\n0\r\n\r\n', 'invalid byte after the chunk size'],
    ['3\nabc\r\n0\r\n\r\n', 'invalid byte after the chunk size'],
    ['3\r\nabcd\r\n0\r\n\r\n', 'chunk data longer than its size'],
    ['3\r\nabc\n0\r\n\r\n', 'chunk data longer than its size'],
    ['3\r\nabc\r\n0\r\nX: 1\n\r\n', 'bare LF in the trailers'],
    [`${'f'.repeat(16)}\r\n`, 'chunk size too large'],
    [`1;${'e'.repeat(2000)}\r\n`, 'longer than 1024 bytes'],
  ];
  for (const [body, error] of cases) {
    for (let at = 0; at <= body.length; at++) {
      const r = readSplit({ kind: 'chunked' }, Buffer.from(body, 'latin1'), at);
      if (typeof r !== 'string' || !r.includes(error)) {
        t.fail(`${JSON.stringify(body)} split at ${at}: ${JSON.stringify(r)}`);
        break;
      }
    }
    t.pass(`${JSON.stringify(body.slice(0, 30))}: ${error}`);
  }
});

t.test('Content-Length bodies stop at their length', async (t) => {
  const bytes = Buffer.from('0123456789GET /');
  for (let at = 0; at <= bytes.length; at++) t.same(readSplit({ kind: 'length', length: 10 }, bytes, at), [10, true]);
});

t.test('leading empty lines', async (t) => {
  t.equal(leadingEmptyLines(Buffer.from('\r\n\r\nGET')), 4);
  t.equal(leadingEmptyLines(Buffer.from('\nGET')), 1);
  t.equal(leadingEmptyLines(Buffer.from('GET')), 0);
});

t.test('request fields: hop-by-hop out, forwarded in, sticky cookie out', async (t) => {
  const raw = [
    'Host', 'a.test',
    'Connection', 'Keep-Alive, X-Secret',
    'X-Secret', '1',
    'Keep-Alive', 'timeout=1',
    'Proxy-Authorization', 'x',
    'Cookie', 'a=1; SRV=n2; b=2',
    'Cookie', 'SRV=n2',
    'X-Forwarded-For', '1.1.1.1',
    'X-Real-IP', '9.9.9.9',
    'Transfer-Encoding', 'chunked',
  ];
  t.same(
    requestHeaders(raw, { upgrade: false, chunked: true, forwarded: { ip: '10.0.0.1', proto: 'https', trusted: false }, stripCookie: 'SRV' }),
    ['Host', 'a.test', 'Cookie', 'a=1; b=2', 'Transfer-Encoding', 'chunked', 'X-Forwarded-For', '10.0.0.1', 'X-Real-IP', '10.0.0.1', 'X-Forwarded-Proto', 'https'],
    'an untrusted client: its forwarding fields replaced by ours',
  );
  t.same(
    requestHeaders(raw, { upgrade: false, chunked: true, forwarded: { ip: '10.0.0.1', proto: 'https', trusted: true }, stripCookie: 'SRV' }),
    ['Host', 'a.test', 'Cookie', 'a=1; b=2', 'X-Real-IP', '9.9.9.9', 'Transfer-Encoding', 'chunked', 'X-Forwarded-For', '1.1.1.1, 10.0.0.1', 'X-Forwarded-Proto', 'https'],
    'a trusted proxy: X-Forwarded-For appended to, its X-Real-IP kept',
  );
  t.same(
    requestHeaders(['Host', 'h', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'], { upgrade: true, chunked: false, forwarded: null, stripCookie: null }),
    ['Host', 'h', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k', 'Connection', 'Upgrade'],
    'an upgrade keeps Upgrade and says Connection: Upgrade',
  );
  t.same(responseHeaders(['Content-Length', '3', 'Connection', 'close', 'Transfer-Encoding', 'chunked', 'Proxy-Authenticate', 'x'], 'SRV=n1; Path=/; HttpOnly'), [
    'Content-Length', '3',
    'Set-Cookie', 'SRV=n1; Path=/; HttpOnly',
  ]);
  t.equal(isUpgrade(['Connection', 'keep-alive, upgrade', 'Upgrade', 'websocket']), true);
  t.equal(isUpgrade(['Upgrade', 'websocket']), false);
  t.equal(serializeHead('GET', '/x', '1.1', ['Host', 'h']).toString(), 'GET /x HTTP/1.1\r\nHost: h\r\n\r\n');
});

t.test('cookies', async (t) => {
  t.equal(findCookie(['Cookie', 'a=1; SRV=node2'], 'SRV'), 'node2');
  t.equal(findCookie(['cookie', 'SRV="node3"'], 'SRV'), 'node3');
  t.equal(findCookie(['Cookie', 'XSRV=1; SRVX=2'], 'SRV'), null);
  t.equal(withoutCookie('SRV=1', 'SRV'), '');
  t.equal(withoutCookie('a=1;SRV=2;  b=3', 'SRV'), 'a=1; b=3');
  t.equal(stickyCookieValue('SRV', 'n1'), 'SRV=n1; Path=/; HttpOnly');
});

t.test('rewrites', async (t) => {
  const rule = { pattern: '^/services/myservice/(.*)', to: '/$1' };
  t.equal(rewriteTarget('/services/myservice/a/b?c=d', rule), '/a/b?c=d');
  t.equal(rewriteTarget('/services/myservice', rule), '/services/myservice');
  t.equal(rewriteTarget('*', rule), '*');
  t.equal(rewriteTarget('http://x/services/myservice/a', rule), 'http://x/services/myservice/a', 'absolute-form is left alone');
  t.equal(rewriteTarget('/old/x', { pattern: '^/old', to: 'new' }), '/new/x', 'the result always starts with /');
  t.equal(rewriteTarget('/a', null), '/a');
});
