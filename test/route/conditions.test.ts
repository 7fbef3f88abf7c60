/**
 * Each condition on the facts of a connection as it arrives: nothing yet,
 * one byte, a TLS ClientHello, an HTTP request line, a full head, final.
 * Three-valued: PASS=3, MISS=1 (the fact may still come), FAIL=0.
 */
import t from 'tap';
import { compileCondition, FAIL, MISS, PASS, type RouteFacts, type Tri } from '../../src/route/index.js';
import type { Condition } from '../../src/config/types.js';
import type { TlsHello } from '../../src/sniff/probe.js';
import { NO_PROBE_MATCHES as ALL_NO, routeFacts as facts } from '../helpers/route-facts.js';
import { SniffmuxError } from '../../src/errors.js';

const HELLO: TlsHello = { sni: 'vpn.example.com', alpn: ['h2', 'http/1.1'], maxVersion: 0x0304 };

/** The moments of a connection, in order. */
const S = {
  nothing: facts({}),
  finalNothing: facts({ final: true, protocol: 'none' }),
  byte00: facts({ probes: ALL_NO }),
  byte00Decided: facts({ probes: ALL_NO, protocol: 'other' }),
  byte16: facts({ probes: { ...ALL_NO, tls: 'need-more' } }),
  tlsRecord: facts({ probes: { ...ALL_NO, tls: 'match' }, protocol: 'tls', encrypted: true }),
  hello: facts({ probes: { ...ALL_NO, tls: 'match' }, protocol: 'tls', hello: HELLO, encrypted: true }),
  helloNoSni: facts({ probes: { ...ALL_NO, tls: 'match' }, protocol: 'tls', hello: { sni: null, alpn: [], maxVersion: 0x0303 }, encrypted: true }),
  byteG: facts({ probes: { ...ALL_NO, http: 'need-more' } }),
  requestLine: facts({ probes: { ...ALL_NO, http: 'match' }, protocol: 'http', http: { method: 'GET', path: '/node/x?y=1' } }),
  head: facts({
    probes: { ...ALL_NO, http: 'match' },
    protocol: 'http',
    http: {
      method: 'GET',
      path: '/node/x?y=1',
      headComplete: true,
      host: 'api.example.com:8080',
      headers: [['host', 'api.example.com:8080'], ['x-debug', '1'], ['upgrade', 'websocket']],
      websocket: true,
    },
  }),
  partialHeadFinal: facts({ final: true, probes: { ...ALL_NO, http: 'match' }, protocol: 'http', http: { host: 'api.example.com', headers: [['host', 'api.example.com']] } }),
  /** After TLS termination: the decrypted stream is HTTP, the hello is kept. */
  terminated: facts({ probes: { ...ALL_NO, http: 'match' }, protocol: 'http', hello: HELLO, encrypted: true, http: { method: 'POST', path: '/', headComplete: true, host: 'x' } }),
  ssh: facts({ probes: { ...ALL_NO, ssh: 'match' }, protocol: 'ssh' }),
  v6: facts({ probes: ALL_NO, protocol: 'other', srcIp: '2001:db8::7', localPort: 443 }),
};
type Moment = keyof typeof S;

const NAME: Record<number, string> = { [FAIL]: 'FAIL', [MISS]: 'MISS', [PASS]: 'PASS' };

/** condition → the expected result at each listed moment. */
const table: [Condition, Partial<Record<Moment, Tri>>][] = [
  [{ protocol: 'http' }, { nothing: MISS, finalNothing: FAIL, byte00: FAIL, byte16: FAIL, byteG: MISS, requestLine: PASS, head: PASS, ssh: FAIL }],
  [{ protocol: 'tls' }, { nothing: MISS, byte16: MISS, tlsRecord: PASS, byteG: FAIL, byte00: FAIL }],
  [{ protocol: ['ssh', 'tls'] }, { nothing: MISS, byte16: MISS, ssh: PASS, byteG: FAIL, requestLine: FAIL }],
  [{ protocol: 'other' }, { nothing: MISS, byte00: PASS, byte00Decided: PASS, byte16: MISS, byteG: MISS, tlsRecord: FAIL, finalNothing: FAIL }],
  [{ protocol: 'none' }, { nothing: MISS, finalNothing: PASS, byte00: FAIL, byte16: FAIL, byteG: FAIL, requestLine: FAIL }],
  [{ not: { protocol: 'http' } }, { nothing: MISS, byte00: PASS, byte16: PASS, byteG: MISS, requestLine: FAIL, finalNothing: PASS }],
  [{ sni: '*.example.com' }, { nothing: MISS, byte16: MISS, tlsRecord: MISS, hello: PASS, helloNoSni: FAIL, byteG: FAIL, byte00: FAIL, finalNothing: FAIL, terminated: PASS }],
  [{ sni: 'VPN.example.COM' }, { hello: PASS }],
  [{ sni: ['a.example.com', 'b.example.com'] }, { hello: FAIL }],
  [{ alpn: 'h2' }, { hello: PASS, helloNoSni: FAIL, tlsRecord: MISS, requestLine: FAIL }],
  [{ alpn: 'H2' }, { hello: FAIL }],
  [{ alpn: 'http/*' }, { hello: PASS }],
  [{ tls: true }, { nothing: MISS, byte16: MISS, tlsRecord: PASS, hello: PASS, byteG: FAIL, terminated: PASS, finalNothing: FAIL }],
  [{ tls: false }, { nothing: MISS, byte16: MISS, tlsRecord: FAIL, byteG: PASS, terminated: FAIL, finalNothing: PASS }],
  [{ method: 'GET' }, { nothing: MISS, byteG: MISS, requestLine: PASS, byte16: FAIL, terminated: FAIL }],
  [{ method: ['P*', 'DELETE'] }, { requestLine: FAIL, terminated: PASS }],
  [{ path: { prefix: '/node' } }, { nothing: MISS, byteG: MISS, requestLine: PASS, head: PASS, byte00: FAIL, finalNothing: FAIL, terminated: FAIL }],
  [{ path: { prefix: '/socket.io' } }, { requestLine: FAIL }],
  [{ path: { regex: '\\?y=\\d$' } }, { requestLine: PASS }],
  [{ host: 'api.example.com' }, { nothing: MISS, requestLine: MISS, head: PASS, partialHeadFinal: PASS, byte16: FAIL, finalNothing: FAIL }],
  [{ host: '*.EXAMPLE.com' }, { head: PASS }],
  [{ host: 'api.example.com:8080' }, { head: PASS, partialHeadFinal: FAIL }],
  [{ host: 'api.example.com:9090' }, { head: FAIL }],
  [{ host: 'example.com' }, { head: FAIL }],
  [{ header: { name: 'X-Debug', regex: '^1$' } }, { requestLine: MISS, head: PASS, byte00: FAIL }],
  [{ header: { name: 'x-debug', regex: '^0$' } }, { head: FAIL, partialHeadFinal: FAIL }],
  [{ websocket: true }, { nothing: MISS, requestLine: MISS, head: PASS, terminated: FAIL, byte00: FAIL }],
  [{ websocket: false }, { requestLine: MISS, head: FAIL, terminated: PASS, byte00: PASS }],
  [{ src: '203.0.113.0/24' }, { nothing: PASS, finalNothing: PASS, v6: FAIL }],
  [{ src: ['10.0.0.0/8', '2001:db8::/32'] }, { nothing: FAIL, v6: PASS }],
  [{ port: 8080 }, { nothing: PASS, v6: FAIL }],
  [{ port: [80, 443] }, { nothing: FAIL, v6: PASS }],
  [{ all: [{ protocol: 'http' }, { path: { prefix: '/node' } }] }, { nothing: MISS, byteG: MISS, byte00: FAIL, requestLine: PASS }],
  // `all` stops at the first FAIL: a later MISS does not make a decided FAIL wait.
  [{ all: [{ port: 1 }, { host: 'x' }] }, { nothing: FAIL, requestLine: FAIL }],
  [{ all: [{ port: 8080 }, { host: 'api.example.com' }] }, { requestLine: MISS, head: PASS }],
  // `any` stops at the first PASS: a MISS elsewhere does not delay it.
  [{ any: [{ host: 'x' }, { port: 8080 }] }, { nothing: PASS }],
  [{ any: [{ host: 'x' }, { port: 1 }] }, { nothing: MISS, requestLine: MISS, head: FAIL, finalNothing: FAIL }],
  [{ not: { not: { protocol: 'ssh' } } }, { nothing: MISS, ssh: PASS, byte00: FAIL }],
];

t.test('conditions over a connection’s moments', async (t) => {
  for (const [cond, expect] of table) {
    const test = compileCondition(cond);
    for (const [moment, want] of Object.entries(expect) as [Moment, Tri][]) {
      t.equal(NAME[test(S[moment])], NAME[want], `${JSON.stringify(cond)} at ${moment}`);
    }
  }
});

t.test('final facts never leave a MISS', async (t) => {
  const finals = Object.values(S).filter((f) => f.final);
  for (const [cond] of table) {
    const test = compileCondition(cond);
    for (const f of finals) t.not(test(f), MISS, JSON.stringify(cond));
  }
});

t.test('compileCondition reports bad conditions as SMX_ERR_CONFIG', async (t) => {
  const bad: [unknown, string][] = [
    [{ path: { regex: '(' } }, "if.path.regex: invalid regular expression '(': Unterminated group"],
    [{ protocol: 'gopher' }, 'if.protocol: must be one of: tls, http2, http, ssh, flash-policy, other, none'],
    [{ cookie: 'x' }, "if: unknown key 'cookie'"],
    [{}, 'if: an empty condition: use protocol, sni, alpn, tls, host, method, path, header, websocket, src, port, all, any or not'],
    [{ any: [{ src: '1.2.3.4/40' }] }, "if.any[0].src: invalid CIDR '1.2.3.4/40': an IPv4 prefix is 0-32"],
    [null, 'if: must be a condition, e.g. { protocol: http }'],
  ];
  for (const [cond, line] of bad) {
    const err = t.throws(() => compileCondition(cond as Condition), JSON.stringify(cond)) as SniffmuxError;
    t.equal(err.code, 'SMX_ERR_CONFIG');
    t.same(err.problems, [line]);
  }
  // Several keys: an implicit all, as in a config file.
  const test = compileCondition({ protocol: 'http', path: { prefix: '/node' } } as unknown as Condition);
  t.equal(test(S.requestLine), PASS);
  t.equal(test(S.head), PASS);
  t.equal(test(S.byte00), FAIL);
});
