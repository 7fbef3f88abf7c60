import { readFileSync } from 'node:fs';
import t from 'tap';
import type { ProbeResult, TlsHello } from '../../src/sniff/probe.js';
import { Sniffer } from '../../src/sniff/sniffer.js';
import { probeTls } from '../../src/sniff/tls.js';

const LIMITS = { maxBytes: 16384 };
const fixture = (name: string): Buffer => readFileSync(new URL(`../../fixtures/clienthellos/${name}`, import.meta.url));
const TLS13 = 0x0304;
const H2_H1 = ['h2', 'http/1.1'];

function tlsFacts(result: ProbeResult): TlsHello | undefined {
  return result.kind === 'match' ? result.facts?.tls : undefined;
}

// ---- real and constructed hellos ----------------------------------------------

const HELLOS: { file: string; sni: string | null; alpn: string[]; maxVersion: number }[] = [
  { file: 'clienthello-chromium-156.bin', sni: 'pq.example.test', alpn: H2_H1, maxVersion: TLS13 },
  { file: 'clienthello-curl.bin', sni: 'curl.example.test', alpn: H2_H1, maxVersion: TLS13 },
  { file: 'clienthello-openssl-3.0.bin', sni: 'openssl.example.test', alpn: H2_H1, maxVersion: TLS13 },
  { file: 'clienthello-chromium-156-3-records.bin', sni: 'pq.example.test', alpn: H2_H1, maxVersion: TLS13 },
  { file: 'clienthello-curl-2-records.bin', sni: 'curl.example.test', alpn: H2_H1, maxVersion: TLS13 },
  { file: 'clienthello-sslv2-compat.bin', sni: null, alpn: [], maxVersion: 0x0301 },
];

for (const { file, ...expected } of HELLOS) {
  t.test(`${file}: tls, complete, with its SNI and ALPN`, async (t) => {
    const result = probeTls(fixture(file), LIMITS);
    t.match(result, { kind: 'match', complete: true });
    t.same(tlsFacts(result), expected);
  });
}

/** Feeds `bytes` in two pieces, cut at every point, through a fresh Sniffer each; returns what went wrong. */
function everySplitPoint(bytes: Buffer, expected: TlsHello): string[] {
  const failures: string[] = [];
  for (let cut = 1; cut < bytes.length; cut++) {
    const sniffer = new Sniffer(LIMITS);
    const early = sniffer.update(bytes.subarray(0, cut), false);
    const expectedEarly = cut < 5 ? 'need-more' : 'match';
    if (early.probe('tls') !== expectedEarly || early.hello !== undefined || early.settled) {
      failures.push(`cut at ${cut}: tls ${early.probe('tls')}, hello ${JSON.stringify(early.hello)}, settled ${early.settled}`);
    }
    const late = sniffer.update(bytes, false);
    if (late.protocol !== 'tls' || !late.settled || JSON.stringify(late.hello) !== JSON.stringify(expected)) {
      failures.push(`cut at ${cut}: ended with ${late.protocol} ${JSON.stringify(late.hello)}`);
    }
  }
  return failures;
}

for (const file of ['clienthello-chromium-156.bin', 'clienthello-chromium-156-3-records.bin', 'clienthello-curl-2-records.bin']) {
  t.test(`${file} split at every byte`, async (t) => {
    const bytes = fixture(file);
    const { sni, alpn, maxVersion } = HELLOS.find((hello) => hello.file === file)!;
    const failures = everySplitPoint(bytes, { sni, alpn, maxVersion });
    t.same(failures.slice(0, 5), [], `${bytes.length - 1} split points: need-more or incomplete first, the same facts at the end`);
  });
}

t.test('chromium hello fed one byte at a time into one Sniffer', async (t) => {
  const bytes = fixture('clienthello-chromium-156.bin');
  const sniffer = new Sniffer(LIMITS);
  const protocols = new Set<string | undefined>();
  for (let length = 1; length < bytes.length; length++) {
    const view = sniffer.update(bytes.subarray(0, length), false);
    protocols.add(view.protocol);
    if (view.hello !== undefined) t.fail(`hello at ${length} bytes`);
  }
  t.same([...protocols], [undefined, 'tls'], 'undecided for the first 4 bytes, then tls');
  t.equal(sniffer.update(bytes, false).hello?.sni, 'pq.example.test');
});

t.test('a truncated hello is tls without facts; final leaves it so', async (t) => {
  const bytes = fixture('clienthello-openssl-3.0-truncated.bin');
  t.same(probeTls(bytes, LIMITS), { kind: 'match', complete: false });
  const sniffer = new Sniffer(LIMITS);
  t.match(sniffer.update(bytes, false), { protocol: 'tls', hello: undefined, settled: false });
  t.match(sniffer.update(bytes, true), { protocol: 'tls', hello: undefined, settled: true });
});

// ---- problems -------------------------------------------------------------------

t.test('malformed hellos are tls with problem "malformed"', async (t) => {
  for (const [file, detail] of [
    ['clienthello-malformed-session-id.bin', /session id/],
    ['clienthello-malformed-extensions.bin', /extensions/],
  ] as const) {
    const facts = tlsFacts(probeTls(fixture(file), LIMITS));
    t.match(facts, { sni: null, alpn: [], maxVersion: 0x0301, problem: 'malformed', detail }, file);
  }
});

t.test('a hello that cannot fit in maxBytes is "too-large", as soon as the lengths say so', async (t) => {
  const chromium = fixture('clienthello-chromium-156.bin');
  // 9 bytes: the record header and the handshake header, whose length says 2,014 > 1,000.
  t.same(probeTls(chromium.subarray(0, 8), { maxBytes: 1000 }), { kind: 'match', complete: false });
  t.match(tlsFacts(probeTls(chromium.subarray(0, 9), { maxBytes: 1000 })), { sni: null, problem: 'too-large' });
  t.match(tlsFacts(probeTls(chromium, { maxBytes: 1000 })), { problem: 'too-large' });
  // Exactly the hello's size fits.
  t.equal(tlsFacts(probeTls(chromium, { maxBytes: chromium.length }))?.sni, 'pq.example.test');
  t.match(tlsFacts(probeTls(chromium, { maxBytes: chromium.length - 1 })), { problem: 'too-large' });
  // In three records, the third header pushes the end past the budget.
  const records = fixture('clienthello-chromium-156-3-records.bin');
  t.equal(tlsFacts(probeTls(records, { maxBytes: records.length }))?.sni, 'pq.example.test');
  t.match(tlsFacts(probeTls(records, { maxBytes: records.length - 1 })), { problem: 'too-large' });
  // Bytes past the budget are not looked at: the answer is that of the first maxBytes bytes.
  t.same(probeTls(Buffer.concat([chromium, chromium]), { maxBytes: 1000 }), probeTls(chromium.subarray(0, 1000), { maxBytes: 1000 }));
});

t.test('broken records after the first one make the hello malformed', async (t) => {
  const twoRecords = fixture('clienthello-curl-2-records.bin');
  const secondHeader = 5 + 2;
  // The last number: how many bytes it takes to know (the damaged byte judged as soon as it arrives).
  const cases: [string, (bytes: Buffer) => void, RegExp, number][] = [
    ['an alert record in the middle', (b) => (b[secondHeader] = 0x15), /non-handshake record/, secondHeader + 1],
    ['a record version 2.0', (b) => (b[secondHeader + 1] = 2), /version/, secondHeader + 2],
    ['a record version 3.5', (b) => (b[secondHeader + 2] = 5), /version/, secondHeader + 3],
    ['an empty record', (b) => b.writeUInt16BE(0, secondHeader + 3), /empty handshake record/, secondHeader + 5],
    ['a record over 2^14 bytes', (b) => b.writeUInt16BE(16385, secondHeader + 3), /2\^14/, secondHeader + 5],
  ];
  for (const [name, damage, detail, decidedAt] of cases) {
    const bytes = Buffer.from(twoRecords);
    damage(bytes);
    t.match(tlsFacts(probeTls(bytes, LIMITS)), { problem: 'malformed', detail }, name);
    t.same(probeTls(bytes.subarray(0, decidedAt - 1), LIMITS), { kind: 'match', complete: false }, `${name}: undecided one byte before`);
    t.match(tlsFacts(probeTls(bytes.subarray(0, decidedAt), LIMITS)), { problem: 'malformed', detail }, `${name}: decided at byte ${decidedAt}`);
  }
});

t.test('a handshake record that is not a ClientHello is malformed at its first byte', async (t) => {
  const serverHello = Buffer.from([0x16, 0x03, 0x03, 0x00, 0x30, 0x02]);
  t.match(tlsFacts(probeTls(serverHello, LIMITS)), { problem: 'malformed', detail: /not a ClientHello/ });
});

// ---- the first bytes decide -----------------------------------------------------------

t.test('first bytes: need-more while they could start a hello, no-match as soon as they cannot', async (t) => {
  const cases: [string, number[], ProbeResult['kind']][] = [
    ['empty', [], 'need-more'],
    ['handshake type', [0x16], 'need-more'],
    ['version 3.x', [0x16, 0x03], 'need-more'],
    ['version 3.1', [0x16, 0x03, 0x01], 'need-more'],
    ['length high byte', [0x16, 0x03, 0x01, 0x02], 'need-more'],
    ['a whole record header', [0x16, 0x03, 0x01, 0x02, 0x00], 'match'],
    ['NUL', [0x00], 'no-match'],
    ['an alert record', [0x15, 0x03, 0x01], 'no-match'],
    ['application data', [0x17], 'no-match'],
    ['ASCII', [0x47, 0x45, 0x54], 'no-match'],
    ['version 2.x', [0x16, 0x02], 'no-match'],
    ['version 3.5', [0x16, 0x03, 0x05], 'no-match'],
    ['length high byte over 2^14', [0x16, 0x03, 0x01, 0x41], 'no-match'],
    ['length 16385', [0x16, 0x03, 0x01, 0x40, 0x01], 'no-match'],
    ['length 0', [0x16, 0x03, 0x01, 0x00, 0x00], 'no-match'],
    ['SSLv2 header', [0x80], 'need-more'],
    ['SSLv2 too short', [0x80, 0x05], 'no-match'],
    ['SSLv2 not CLIENT-HELLO', [0x80, 0x22, 0x02], 'no-match'],
    ['SSLv2 offering only SSL 2.0', [0x80, 0x22, 0x01, 0x00, 0x02], 'no-match'],
    ['SSLv2 offering TLS 1.2', [0x80, 0x22, 0x01, 0x03, 0x03], 'match'],
  ];
  for (const [name, bytes, kind] of cases) t.equal(probeTls(Buffer.from(bytes), LIMITS).kind, kind, name);
});

t.test('every prefix of a captured hello: need-more, then incomplete match, then complete', async (t) => {
  const bytes = fixture('clienthello-curl.bin');
  const seen: string[] = [];
  for (let length = 0; length <= bytes.length; length++) {
    const result = probeTls(bytes.subarray(0, length), LIMITS);
    const label = result.kind === 'match' ? `match:${result.complete}` : result.kind;
    if (seen.at(-1) !== label) seen.push(label);
  }
  t.same(seen, ['need-more', 'match:false', 'match:true']);
});

// ---- extensions, on hellos built here -------------------------------------------------

interface Extension {
  type: number;
  data: Buffer;
}
const u8 = (n: number) => Buffer.from([n]);
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const vec16 = (...parts: Buffer[]) => Buffer.concat([u16(Buffer.concat(parts).length), ...parts]);
const vec8 = (...parts: Buffer[]) => Buffer.concat([u8(Buffer.concat(parts).length), ...parts]);
const serverName = (...names: [number, string][]) => ({
  type: 0,
  data: vec16(...names.map(([type, name]) => Buffer.concat([u8(type), vec16(Buffer.from(name, 'latin1'))]))),
});
const alpnExtension = (...names: string[]) => ({ type: 16, data: vec16(...names.map((name) => vec8(Buffer.from(name, 'latin1')))) });
const supportedVersions = (...versions: number[]) => ({ type: 43, data: vec8(...versions.map(u16)) });

/** A one-record ClientHello; `extensions: null` leaves the extensions block out entirely. */
function buildHello(extensions: Extension[] | null, legacyVersion = 0x0303): Buffer {
  const body = Buffer.concat([
    u16(legacyVersion),
    Buffer.alloc(32, 7),
    vec8(Buffer.alloc(32, 1)),
    vec16(u16(0x1301), u16(0xc02f)),
    vec8(u8(0)),
    extensions === null ? Buffer.alloc(0) : vec16(...extensions.map((e) => Buffer.concat([u16(e.type), vec16(e.data)]))),
  ]);
  const message = Buffer.concat([u8(1), Buffer.from([body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(message.length), message]);
}

t.test('extensions: what is read, what is refused', async (t) => {
  const cases: [string, Buffer, Partial<TlsHello>][] = [
    ['no extensions block (old client)', buildHello(null, 0x0301), { sni: null, alpn: [], maxVersion: 0x0301 }],
    ['empty extensions block', buildHello([]), { sni: null, alpn: [], maxVersion: 0x0303 }],
    ['SNI is lower-cased', buildHello([serverName([0, 'WWW.Example.COM'])]), { sni: 'www.example.com' }],
    ['unknown name types are skipped', buildHello([serverName([7, 'x'], [0, 'a.test'])]), { sni: 'a.test' }],
    ['only an unknown name type', buildHello([serverName([7, 'x'])]), { sni: null }],
    ['ALPN in client order', buildHello([alpnExtension('http/1.1', 'h2', 'spdy/3')]), { alpn: ['http/1.1', 'h2', 'spdy/3'] }],
    ['GREASE versions are ignored', buildHello([supportedVersions(0x3a3a, 0x0303, 0x0304, 0xfafa)]), { maxVersion: 0x0304 }],
    ['draft versions are ignored', buildHello([supportedVersions(0x7f1c, 0x0303)]), { maxVersion: 0x0303 }],
    ['only GREASE: legacy_version', buildHello([supportedVersions(0x1a1a)], 0x0302), { maxVersion: 0x0302 }],
    ['unknown extensions are skipped', buildHello([{ type: 0xff01, data: Buffer.from([0]) }, serverName([0, 'b.test'])]), { sni: 'b.test' }],
  ];
  for (const [name, hello, expected] of cases) {
    const facts = tlsFacts(probeTls(hello, LIMITS));
    t.match(facts, expected, name);
    t.equal(facts?.problem, undefined, `${name}: no problem`);
  }

  const malformed: [string, Buffer][] = [
    ['an extension twice', buildHello([alpnExtension('h2'), alpnExtension('h2')])],
    ['two host_names', buildHello([serverName([0, 'a.test'], [0, 'b.test'])])],
    ['an empty server_name list', buildHello([{ type: 0, data: vec16() }])],
    ['an empty host_name', buildHello([serverName([0, ''])])],
    ['a NUL in the host_name', buildHello([serverName([0, 'a.test\0.evil'])])],
    ['a space in the host_name', buildHello([serverName([0, 'a test'])])],
    ['an empty ALPN list', buildHello([{ type: 16, data: vec16() }])],
    ['an empty ALPN name', buildHello([alpnExtension('h2', '')])],
    ['an odd supported_versions length', buildHello([{ type: 43, data: vec8(Buffer.from([3, 4, 3])) }])],
    ['an extension longer than its block', buildHello([{ type: 16, data: Buffer.from([0, 9, 2, 0x68, 0x32]) }])],
    ['stray bytes inside server_name', buildHello([{ type: 0, data: Buffer.concat([serverName([0, 'a.test']).data, u8(0)]) }])],
    ['legacy_version 2.0', buildHello([], 0x0200)],
  ];
  for (const [name, hello] of malformed) t.match(tlsFacts(probeTls(hello, LIMITS)), { problem: 'malformed' }, name);
});
