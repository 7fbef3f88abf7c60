import { METHODS } from 'node:http';
import t from 'tap';
import { HTTP_METHODS, probeHttp } from '../../src/sniff/http.js';
import type { HttpHead, ProbeResult } from '../../src/sniff/probe.js';

const LIMITS = { maxBytes: 16384 };
const probe = (text: string, limits = LIMITS): ProbeResult => probeHttp(Buffer.from(text, 'latin1'), limits);
const head = (result: ProbeResult): HttpHead | undefined => (result.kind === 'match' ? result.facts?.http : undefined);

const WS_HANDSHAKE =
  'GET /chat HTTP/1.1\r\n' +
  'Host: Server.Example.com\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  '\r\n';

t.test('complete heads: the facts', async (t) => {
  const cases: [string, string, Partial<HttpHead>][] = [
    [
      'a GET with headers',
      'GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent:  curl/8.0 \r\nAccept: */*\r\n\r\n',
      {
        method: 'GET',
        path: '/index.html?q=1',
        version: 'HTTP/1.1',
        headComplete: true,
        headers: [['host', 'www.example.com'], ['user-agent', 'curl/8.0'], ['accept', '*/*']],
        host: 'www.example.com',
        websocket: false,
      },
    ],
    ['a WebSocket handshake', WS_HANDSHAKE, { path: '/chat', host: 'server.example.com', websocket: true, headLength: WS_HANDSHAKE.length }],
    [
      'a socket.io polling request',
      'GET /socket.io/?EIO=4&transport=polling&t=N8hyd6w HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n',
      { path: '/socket.io/?EIO=4&transport=polling&t=N8hyd6w', host: 'localhost:8080', websocket: false },
    ],
    ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\n\r\n', { version: 'HTTP/1.0', host: null, headers: [], headLength: 18 }],
    ['bare LF line ends', 'GET / HTTP/1.1\nHost: a\n\n', { host: 'a', headLength: 24 }],
    ['absolute-form target', 'GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n', { path: 'http://a.test/x' }],
    ['CONNECT authority-form', 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n', { method: 'CONNECT', path: 'a.test:443' }],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', { method: 'OPTIONS', path: '*' }],
    ['M-SEARCH', 'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n', { method: 'M-SEARCH', host: '239.255.255.250:1900' }],
    ['an empty header value', 'GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\n\r\n', { headers: [['x-empty', ''], ['host', 'h']] }],
    ['the first Host wins', 'GET / HTTP/1.1\r\nHost: one\r\nHost: two\r\n\r\n', { host: 'one' }],
    ['Upgrade without Connection: upgrade', 'GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n', { websocket: false }],
    ['Connection: upgrade without Upgrade: websocket', 'GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n', { websocket: false }],
    [
      'WebSocket with a token list and odd case',
      'GET / HTTP/1.1\r\nupgrade: WebSocket\r\nconnection: keep-alive\r\nCONNECTION: keep-alive, UPGRADE\r\n\r\n',
      { websocket: true },
    ],
    ['obs-text in a value', 'GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n', { headers: [['x-name', 'caf\xe9']] }],
  ];
  for (const [name, text, expected] of cases) {
    const result = probe(text);
    t.match(result, { kind: 'match', complete: true }, name);
    t.match(head(result), { headComplete: true, headLength: text.length, ...expected }, name);
    t.equal(head(result)?.problem, undefined, `${name}: no problem`);
  }
});

t.test('a head with its body already arriving stops at the blank line', async (t) => {
  const text = 'POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello';
  t.equal(head(probe(text))?.headLength, text.length - 5);
});

t.test('growing request: need-more, match at the request line, complete at the blank line', async (t) => {
  const text = 'GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n';
  const lineEnd = text.indexOf('\n') + 1;
  const requestLineOnly: HttpHead = {
    method: 'GET',
    path: '/a',
    version: 'HTTP/1.1',
    headComplete: false,
    headers: [],
    host: null,
    websocket: false,
    headLength: 0,
  };
  for (let length = 0; length < text.length; length++) {
    const expected = length < lineEnd ? { kind: 'need-more' } : { kind: 'match', complete: false, facts: { http: requestLineOnly } };
    t.same(probe(text.slice(0, length)), expected, `${length} bytes`);
  }
  t.match(probe(text), { kind: 'match', complete: true, facts: { http: { host: 'a.test', headComplete: true } } });
});

t.test('no-match as soon as the bytes rule HTTP/1.x out', async (t) => {
  const cases: [string, string][] = [
    ['XX', 'X'],
    ['lower-case method', 'g'],
    ['unknown method', 'GETS'],
    ['no space after the method', 'GET/'],
    ['two spaces', 'GET  '],
    ['HTTP/0.9 request', 'GET /\r'],
    ['control byte in the target', 'GET /a\x01'],
    ['DEL in the target', 'GET /\x7f'],
    ['HTTP/2.0', 'GET / HTTP/2'],
    ['the HTTP/2 preface', 'PRI'],
    ['HTTP/1.2', 'GET / HTTP/1.2'],
    ['lower-case version', 'GET / h'],
    ['space after the version', 'GET / HTTP/1.1 '],
    ['CR not followed by LF', 'GET / HTTP/1.1\rX'],
    ['an empty line first', '\r'],
    ['TLS', '\x16'],
  ];
  for (const [name, text] of cases) {
    t.equal(probe(text).kind, 'no-match', name);
    // The prefix one byte shorter was still possible.
    t.equal(probe(text.slice(0, -1)).kind, 'need-more', `${name}, one byte shorter`);
  }
});

t.test('need-more for every prefix of every method', async (t) => {
  for (const method of HTTP_METHODS) {
    for (let length = 0; length <= method.length; length++) {
      const result = probe(`${method} /`.slice(0, length));
      if (result.kind !== 'need-more') t.fail(`${method.slice(0, length)}: ${result.kind}`);
    }
    t.match(probe(`${method} / HTTP/1.1\r\n`), { kind: 'match' }, method);
  }
});

t.test("the method list is what Node's HTTP parser accepts", async (t) => {
  t.same(HTTP_METHODS.filter((method) => !METHODS.includes(method)), [], 'no method Node would refuse');
  t.same(METHODS.filter((method) => !HTTP_METHODS.includes(method)), [], 'no method Node accepts is missing');
});

t.test('malformed header lines: http, complete, problem "malformed"', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['obs-fold', 'GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n', /obs-fold/],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', /not a token/],
    ['no colon', 'GET / HTTP/1.1\r\nHost\r\n\r\n', /colon/],
    ['empty name', 'GET / HTTP/1.1\r\n: a\r\n\r\n', /empty header name/],
    ['NUL in a value', 'GET / HTTP/1.1\r\nX: a\0b\r\n\r\n', /control/],
    ['CR inside a line', 'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n', /control/],
  ];
  for (const [name, text, detail] of cases) {
    const result = probe(text);
    t.match(result, { kind: 'match', complete: true }, name);
    t.match(head(result), { method: 'GET', headComplete: false, headers: [], problem: 'malformed', detail }, name);
  }
  // A bad line is reported as soon as it ends, without waiting for the blank line.
  t.match(head(probe('GET / HTTP/1.1\r\nBad Name: x\r\n')), { problem: 'malformed' });
});

t.test('maxBytes: a head that cannot end within it is too-large; a request line that cannot is not HTTP', async (t) => {
  const text = 'GET /long HTTP/1.1\r\nHost: a\r\nX-Filler: ' + 'x'.repeat(100) + '\r\n\r\n';
  t.match(head(probe(text, { maxBytes: text.length })), { headComplete: true });
  t.match(head(probe(text, { maxBytes: text.length - 1 })), { headComplete: false, problem: 'too-large' });
  t.match(probe(text.slice(0, 50), { maxBytes: 60 }), { kind: 'match', complete: false });
  t.match(probe(text, { maxBytes: 10 }), { kind: 'no-match', reason: /request line/ });
  t.equal(probe(text.slice(0, 9), { maxBytes: 10 }).kind, 'need-more');
});
