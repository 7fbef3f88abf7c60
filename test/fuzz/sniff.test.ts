import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import t from 'tap';
import type { HttpHead, ProbeResult, TlsHello } from '../../src/sniff/probe.js';
import { encodeProxyV1, encodeProxyV2, parseProxyHeader, type ProxyParse } from '../../src/sniff/proxy-protocol.js';
import { PROBES } from '../../src/sniff/registry.js';
import { Sniffer, sniffOnce, type SniffView } from '../../src/sniff/sniffer.js';
import { probeTls } from '../../src/sniff/tls.js';

/**
 * Time-boxed properties of the sniffer: each runs as many cases as fit in
 * TIME_BOX ms (fast-check stops early and counts that as a pass), so the file
 * takes a bounded time whatever the machine. A failure prints the seed and
 * path to replay it.
 */
const TIME_BOX = 2000;
const params = { numRuns: 1_000_000, plugins: [fc.interruptAfterTimeLimit(TIME_BOX)] };

const fixture = (name: string): Buffer => readFileSync(new URL(`../../fixtures/clienthellos/${name}`, import.meta.url));
const latin1 = (text: string) => Buffer.from(text, 'latin1');

const HELLOS = [
  fixture('clienthello-chromium-156.bin'),
  fixture('clienthello-curl.bin'),
  fixture('clienthello-openssl-3.0.bin'),
  fixture('clienthello-chromium-156-3-records.bin'),
  fixture('clienthello-curl-2-records.bin'),
  fixture('clienthello-sslv2-compat.bin'),
];
const endpoints = { source: { address: '192.0.2.1', port: 1234 }, destination: { address: '2001:db8::1', port: 443 } };

/** Valid first bytes of every kind, so that mutations reach deep into each parser. */
const SEEDS: readonly Buffer[] = [
  ...HELLOS,
  latin1('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n'),
  latin1('GET /chat HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n\n'),
  latin1('M-SEARCH * HTTP/1.0\r\nX: \t y \r\n\r\nbody'),
  latin1('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  latin1('SSH-2.0-OpenSSH_9.2p1\r\n'),
  latin1('SSH-1.99-x\r\n'),
  latin1('<policy-file-request/>\0'),
  latin1('PROXY TCP4 192.0.2.1 198.51.100.7 54321 443\r\n'),
  latin1('PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\nGET'),
  latin1('PROXY UNKNOWN whatever\r\n'),
  encodeProxyV1(endpoints),
  encodeProxyV2(endpoints, { alpn: 'h2', authority: 'a.example', tlvs: [{ type: 0xee, value: Buffer.from([1, 2]) }] }),
  encodeProxyV2({ source: { address: '10.0.0.1', port: 1 }, destination: { address: '10.0.0.2', port: 2 } }),
  encodeProxyV2(null, { command: 'LOCAL' }),
];

/** Bytes a parser might stumble on: the ones its grammar uses. */
const GRAMMAR_CHARS = [...'GETPOSHUDLCNRIXYZ/ .:*-0123456789abcdef\r\n\t<>!?%+', '\0', '\x16', '\x03', '\x80', '\xff'];

const mutatedSeed = fc
  .record({
    seed: fc.constantFrom(...SEEDS),
    cut: fc.nat(),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    tail: fc.uint8Array({ maxLength: 24 }),
  })
  .map(({ seed, cut, flips, tail }) => {
    const bytes = Buffer.from(seed.subarray(0, cut % (seed.length + 1)));
    for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
    return Buffer.concat([bytes, tail]);
  });

const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  fc.string({ unit: fc.constantFrom(...GRAMMAR_CHARS), maxLength: 80 }).map(latin1),
  { arbitrary: mutatedSeed, weight: 3 },
);

const maxBytes = fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.constant(16384));

/** The prefix lengths to check: all of them for short buffers, a spread for long ones. */
function prefixLengths(length: number): number[] {
  if (length <= 200) return Array.from({ length: length + 1 }, (_, i) => i);
  const step = Math.ceil(length / 150);
  const lengths = [];
  for (let i = 0; i < length; i += step) lengths.push(i);
  // In increasing order, each once: the properties compare each answer with the one before.
  for (const tail of [length - 2, length - 1, length]) if (tail > lengths[lengths.length - 1]!) lengths.push(tail);
  return lengths;
}

// ---- shape checks --------------------------------------------------------------------

const isStringArray = (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === 'string');

function validTls(tls: TlsHello): boolean {
  return (
    (tls.sni === null || (typeof tls.sni === 'string' && tls.sni === tls.sni.toLowerCase())) &&
    isStringArray(tls.alpn) &&
    Number.isInteger(tls.maxVersion) &&
    (tls.problem === undefined || ((tls.problem === 'malformed' || tls.problem === 'too-large') && tls.sni === null))
  );
}

function validHttp(http: HttpHead): boolean {
  return (
    typeof http.method === 'string' &&
    http.path.length > 0 &&
    (http.version === 'HTTP/1.0' || http.version === 'HTTP/1.1') &&
    Array.isArray(http.headers) &&
    http.headers.every(([name, value]) => name === name.toLowerCase() && value === value.trim()) &&
    (http.headComplete ? http.headLength > 0 && http.problem === undefined : http.headLength === 0 && http.headers.length === 0)
  );
}

function validResult(result: ProbeResult): boolean {
  if (result.kind === 'need-more') return true;
  // A refusal always says why: it ends up in the connection's log line and in `explain`.
  if (result.kind === 'no-match') return typeof result.reason === 'string' && result.reason.trim().length > 0;
  if (result.kind !== 'match' || typeof result.complete !== 'boolean') return false;
  if (result.facts?.tls && !validTls(result.facts.tls)) return false;
  if (result.facts?.http && !validHttp(result.facts.http)) return false;
  return true;
}

/** What must hold between the answer to a prefix and the answer to a longer buffer. */
function consistent(earlier: ProbeResult, later: ProbeResult): boolean {
  if (earlier.kind === 'no-match') return later.kind === 'no-match';
  if (earlier.kind === 'match' && later.kind !== 'match') return false;
  // A complete match is final: the sniffer never asks again, so more bytes must not change it.
  if (earlier.kind === 'match' && earlier.complete) return JSON.stringify(earlier) === JSON.stringify(later);
  return true;
}

function consistentProxy(earlier: ProxyParse, later: ProxyParse): boolean {
  if (earlier.kind === 'need-more') return true;
  if (earlier.kind === 'invalid') return later.kind === 'invalid';
  return later.kind === 'header' && later.length === earlier.length && JSON.stringify(later.header) === JSON.stringify(earlier.header);
}

// ---- properties --------------------------------------------------------------------------

t.test('every probe: never throws, valid answers, monotone as bytes arrive', async (t) => {
  fc.assert(
    fc.property(anyBytes, maxBytes, (bytes, max) => {
      const limits = { maxBytes: max };
      for (const { protocol, probe } of PROBES) {
        let previous: ProbeResult | undefined;
        for (const length of prefixLengths(bytes.length)) {
          const result = probe(bytes.subarray(0, length), limits);
          if (!validResult(result)) throw new Error(`${protocol}: invalid answer ${JSON.stringify(result)} at ${length}`);
          if (previous && !consistent(previous, result)) {
            throw new Error(`${protocol}: ${JSON.stringify(previous)} then ${JSON.stringify(result)} at ${length}`);
          }
          previous = result;
        }
      }
    }),
    params,
  );
  t.pass('held for every case tried');
});

t.test('parseProxyHeader: never throws, valid answers, monotone as bytes arrive', async (t) => {
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      let previous: ProxyParse | undefined;
      for (const length of prefixLengths(bytes.length)) {
        const result = parseProxyHeader(bytes.subarray(0, length));
        const valid =
          result.kind === 'need-more' ||
          (result.kind === 'invalid' && result.reason.length > 0) ||
          (result.kind === 'header' && result.length > 0 && result.length <= length && Array.isArray(result.header.tlvs));
        if (!valid) throw new Error(`invalid answer ${JSON.stringify(result)} at ${length}`);
        if (previous && !consistentProxy(previous, result)) {
          throw new Error(`${JSON.stringify(previous)} then ${JSON.stringify(result)} at ${length}`);
        }
        previous = result;
      }
    }),
    params,
  );
  t.pass('held for every case tried');
});

t.test('mutated captured hellos: no throw, valid answers, still tls while the first header is intact', async (t) => {
  const mutatedHello = fc
    .record({
      hello: fc.constantFrom(...HELLOS),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
      // Most of the structure (lengths, session id, the first extensions) is in the first bytes.
      nearStart: fc.boolean(),
      truncate: fc.option(fc.nat()),
    })
    .map(({ hello, flips, nearStart, truncate }) => {
      const bytes = Buffer.from(hello);
      const range = nearStart ? Math.min(bytes.length, 160) : bytes.length;
      for (const [at, value] of flips) bytes[at % range] = value;
      return { original: hello, bytes: truncate === null ? bytes : bytes.subarray(0, truncate % (bytes.length + 1)) };
    });
  fc.assert(
    fc.property(mutatedHello, maxBytes, ({ original, bytes }, max) => {
      const result = probeTls(bytes, { maxBytes: max });
      if (!validResult(result)) throw new Error(`invalid answer ${JSON.stringify(result)}`);
      const view = sniffOnce(bytes, max, true);
      if (view.protocol === undefined || !view.settled) throw new Error('undecided when final');
      const headerIntact = bytes.length >= 5 && bytes.subarray(0, 5).equals(original.subarray(0, 5));
      if (headerIntact && result.kind !== 'match') throw new Error(`intact record header but ${JSON.stringify(result)}`);
    }),
    params,
  );
  t.pass('held for every case tried');
});

t.test('the Sniffer fed in pieces agrees with one look at the whole buffer', async (t) => {
  const cuts = fc.array(fc.nat(), { maxLength: 6 });
  fc.assert(
    fc.property(anyBytes, cuts, maxBytes, fc.boolean(), (bytes, rawCuts, max, final) => {
      const sniffer = new Sniffer({ maxBytes: max });
      for (const cut of [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
        sniffer.update(bytes.subarray(0, cut), false);
      }
      const pieces = summary(sniffer.update(bytes, final));
      const whole = summary(sniffOnce(bytes, max, final));
      if (pieces !== whole) throw new Error(`in pieces ${pieces}\nat once ${whole}`);
    }),
    params,
  );
  t.pass('held for every case tried');
});

function summary(view: SniffView): string {
  const verdicts = PROBES.map(({ protocol }) => view.probe(protocol));
  return JSON.stringify([view.protocol, view.settled, view.final, verdicts, view.hello ?? null, view.http ?? null]);
}

t.test('encoders: whatever the addresses, the parser reads back a header of the same length', async (t) => {
  const address = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constant(''), fc.string({ maxLength: 10 }));
  const port = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer());
  const ends = fc.option(fc.record({ source: fc.record({ address, port }), destination: fc.record({ address, port }) }));
  const tlv = fc.record({ type: fc.integer({ min: 0, max: 255 }), value: fc.uint8Array({ maxLength: 40 }).map((v) => Buffer.from(v)) });
  const options = fc.record({
    command: fc.constantFrom('PROXY' as const, 'LOCAL' as const),
    alpn: fc.option(fc.string({ maxLength: 20 })),
    authority: fc.option(fc.domain()),
    tlvs: fc.array(tlv, { maxLength: 4 }),
  });
  fc.assert(
    fc.property(ends, options, (pair, opts) => {
      for (const encoded of [encodeProxyV1(pair), encodeProxyV2(pair, opts)]) {
        const result = parseProxyHeader(Buffer.concat([encoded, latin1('GET / HTTP/1.1\r\n')]));
        if (result.kind !== 'header' || result.length !== encoded.length) {
          throw new Error(`${JSON.stringify(encoded.toString('latin1'))} read back as ${JSON.stringify(result)}`);
        }
      }
    }),
    { numRuns: 1_000_000, plugins: [fc.interruptAfterTimeLimit(TIME_BOX / 2)] },
  );
  t.pass('held for every case tried');
});

// ---- the worst feeding pattern: one byte at a time -------------------------------------

const BUDGET = 16384;

/** Feeds `bytes` one byte at a time into one Sniffer; returns the last view. */
function feedByteByByte(bytes: Buffer): SniffView {
  const sniffer = new Sniffer({ maxBytes: BUDGET });
  let view: SniffView | undefined;
  for (let length = 1; length <= bytes.length; length++) view = sniffer.update(bytes.subarray(0, length), length === bytes.length);
  return view!;
}

t.test('16 KB one byte at a time completes (stateless probes stay cheap enough)', async (t) => {
  const lines = ['GET /big HTTP/1.1\r\n', 'Host: big.test\r\n'];
  for (let i = 0; lines.join('').length < BUDGET - 40; i++) lines.push(`X-Pad-${i}: ${'y'.repeat(60)}\r\n`);
  const head = latin1(lines.join('') + '\r\n');
  t.match(feedByteByByte(head), { protocol: 'http', http: { host: 'big.test', headComplete: true, headLength: head.length } }, `${head.length}-byte head`);

  const longLine = latin1(`GET /${'a'.repeat(BUDGET)}`);
  t.match(feedByteByByte(longLine.subarray(0, BUDGET)), { protocol: 'other' }, 'a request line longer than the budget');

  // A ClientHello padded to nearly 16 KB, in records of 1,000 bytes.
  const padding = 15_000;
  const extensions = Buffer.concat([Buffer.from([0x00, 0x15, padding >> 8, padding & 0xff]), Buffer.alloc(padding)]);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0, 0, 2, 0x13, 0x01, 1, 0]), Buffer.from([extensions.length >> 8, extensions.length & 0xff]), extensions]);
  const message = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += 1000) {
    const fragment = message.subarray(at, at + 1000);
    records.push(Buffer.from([0x16, 3, 1, fragment.length >> 8, fragment.length & 0xff]), fragment);
  }
  const hello = Buffer.concat(records);
  t.ok(hello.length <= BUDGET, `${hello.length}-byte hello in ${records.length / 2} records`);
  t.match(feedByteByByte(hello), { protocol: 'tls', hello: { sni: null, maxVersion: 0x0303 } });
  t.equal(feedByteByByte(hello).hello?.problem, undefined);

  const junk = Buffer.alloc(BUDGET, 0x47); // "GGGG…": ruled out at the second byte
  t.match(feedByteByByte(junk), { protocol: 'other' });

  const proxyV2 = encodeProxyV2(endpoints, { tlvs: [{ type: 0xee, value: Buffer.alloc(60_000) }] });
  let proxy: ProxyParse = { kind: 'need-more' };
  for (let length = 1; length <= proxyV2.length && proxy.kind === 'need-more'; length++) proxy = parseProxyHeader(proxyV2.subarray(0, length));
  t.match(proxy, { kind: 'header', length: proxyV2.length }, `${proxyV2.length}-byte PROXY v2 header`);
});
