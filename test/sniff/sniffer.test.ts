import { readFileSync } from 'node:fs';
import t from 'tap';
import type { ProbedProtocol } from '../../src/sniff/probe.js';
import { Sniffer, sniffOnce, type SniffView } from '../../src/sniff/sniffer.js';

const MAX = 16384;
const latin1 = (text: string) => Buffer.from(text, 'latin1');
const curlHello = readFileSync(new URL('../../fixtures/clienthellos/clienthello-curl.bin', import.meta.url));

function verdicts(view: SniffView): Record<ProbedProtocol, string> {
  const protocols: ProbedProtocol[] = ['tls', 'http2', 'http', 'ssh', 'flash-policy'];
  return Object.fromEntries(protocols.map((protocol) => [protocol, view.probe(protocol)])) as Record<ProbedProtocol, string>;
}

t.test('first bytes → protocol, without waiting for final', async (t) => {
  const cases: [string, Buffer, string | undefined, boolean][] = [
    ['NUL: other at once', Buffer.from([0x00]), 'other', true],
    ['"XX": other at once', latin1('XX'), 'other', true],
    ['"X": other at its first byte', latin1('X'), 'other', true],
    ['"G": undecided', latin1('G'), undefined, false],
    ['"P": undecided (PUT, POST, PRI, PROXY…)', latin1('P'), undefined, false],
    ['"PRI * HTTP/1.1": neither http2 nor http', latin1('PRI * HTTP/1.1\r\n'), 'other', true],
    ['request line: http, facts to come', latin1('GET / HTTP/1.1\r\n'), 'http', false],
    ['whole head: http, settled', latin1('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 'http', true],
    ['HTTP/2 preface', latin1('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'http2', true],
    ['SSH banner', latin1('SSH-2.0-OpenSSH_9.2p1\r\n'), 'ssh', true],
    ['policy request', latin1('<policy-file-request/>\0'), 'flash-policy', true],
    ['record header: tls, hello to come', curlHello.subarray(0, 5), 'tls', false],
    ['whole hello: tls, settled', curlHello, 'tls', true],
  ];
  for (const [name, bytes, protocol, settled] of cases) {
    const view = sniffOnce(bytes, MAX, false);
    t.equal(view.protocol, protocol, name);
    t.equal(view.settled, settled, `${name}: settled`);
  }
});

t.test('final: need-more reads as no-match, and the protocol is always decided', async (t) => {
  const empty = sniffOnce(Buffer.alloc(0), MAX, true);
  t.match(empty, { protocol: 'none', settled: true, final: true });
  t.same(verdicts(empty), { tls: 'no-match', http2: 'no-match', http: 'no-match', ssh: 'no-match', 'flash-policy': 'no-match' });

  t.match(sniffOnce(Buffer.alloc(0), MAX, false), { protocol: undefined, settled: false });
  t.same(verdicts(sniffOnce(Buffer.alloc(0), MAX, false)).http, 'need-more');

  const partial = sniffOnce(latin1('GET /ind'), MAX, true);
  t.match(partial, { protocol: 'other', settled: true, http: undefined });
  t.equal(partial.probe('http'), 'no-match');

  const incompleteHead = sniffOnce(latin1('GET / HTTP/1.1\r\nHost: a\r\n'), MAX, true);
  t.match(incompleteHead, { protocol: 'http', settled: true, http: { host: null, headComplete: false } });
  t.equal(incompleteHead.probe('http'), 'match');
});

t.test('facts: hello only once complete; http from the request line on', async (t) => {
  const sniffer = new Sniffer({ maxBytes: MAX });
  t.equal(sniffer.update(curlHello.subarray(0, 300), false).hello, undefined);
  t.equal(sniffer.update(curlHello, false).hello?.sni, 'curl.example.test');

  const http = new Sniffer({ maxBytes: MAX });
  t.equal(http.update(latin1('GET /x HTT'), false).http, undefined);
  t.match(http.update(latin1('GET /x HTTP/1.1\r\n'), false).http, { path: '/x', headComplete: false });
  t.match(http.update(latin1('GET /x HTTP/1.1\r\nHost: h\r\n\r\n'), false).http, { path: '/x', host: 'h', headComplete: true });
});

t.test('a too-large or malformed hello settles with its problem', async (t) => {
  t.match(sniffOnce(curlHello, 100, false), { protocol: 'tls', settled: true, hello: { problem: 'too-large' } });
  const bad = Buffer.from(curlHello);
  bad[43] = 200; // session id length
  t.match(sniffOnce(bad, MAX, false), { protocol: 'tls', settled: true, hello: { problem: 'malformed' } });
});

t.test('one view object, updated in place', async (t) => {
  const sniffer = new Sniffer({ maxBytes: MAX });
  const first = sniffer.update(latin1('G'), false);
  const second = sniffer.update(latin1('GE'), false);
  t.equal(first, second);
  t.equal(second.bytes.length, 2);
});

t.test('probes whose verdict cannot change are not run again', async (t) => {
  // The contract says the buffer only grows, so a probe that said no-match to
  // "X" is never asked again; swapping the buffer shows it was not.
  const sniffer = new Sniffer({ maxBytes: MAX });
  t.equal(sniffer.update(latin1('X'), false).protocol, 'other');
  t.equal(sniffer.update(latin1('GET / HTTP/1.1\r\n\r\n'), false).protocol, 'other');
  // Likewise a complete match keeps its facts.
  const done = new Sniffer({ maxBytes: MAX });
  done.update(latin1('GET /a HTTP/1.1\r\n\r\n'), false);
  t.equal(done.update(latin1('GET /b HTTP/1.1\r\n\r\n'), false).http?.path, '/a');
});

t.test('the same buffer again (only final changed) keeps the verdicts', async (t) => {
  const sniffer = new Sniffer({ maxBytes: MAX });
  const bytes = latin1('SSH-2.');
  t.equal(sniffer.update(bytes, false).probe('ssh'), 'need-more');
  const final = sniffer.update(bytes, true);
  t.equal(final.probe('ssh'), 'no-match');
  t.equal(final.protocol, 'other');
});
