import t from 'tap';
import {
  encodeProxyV1,
  encodeProxyV2,
  parseProxyHeader,
  PROXY_TLV_ALPN,
  PROXY_TLV_AUTHORITY,
  type ProxyHeader,
  type ProxyParse,
} from '../../src/sniff/proxy-protocol.js';

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const SIGNATURE = latin1('\r\n\r\n\0\r\nQUIT\n');
const PAYLOAD = latin1('GET / HTTP/1.1\r\n\r\n');

/** A v2 header from its parts: ver_cmd, fam, then the block. */
function v2(versionCommand: number, family: number, block: Buffer): Buffer {
  const fixed = Buffer.from([versionCommand, family, block.length >> 8, block.length & 0xff]);
  return Buffer.concat([SIGNATURE, fixed, block]);
}
const tlv = (type: number, value: string) => Buffer.concat([Buffer.from([type, 0, value.length]), latin1(value)]);

function header(result: ProxyParse): ProxyHeader | undefined {
  return result.kind === 'header' ? result.header : undefined;
}

// ---- valid headers ----------------------------------------------------------------

const IPV4_BLOCK = Buffer.from([192, 0, 2, 1, 198, 51, 100, 7, 0xd4, 0x31, 0x01, 0xbb]); // ports 54321, 443
const IPV6_BLOCK = Buffer.concat([
  Buffer.from('20010db8000000000000000000000001', 'hex'),
  Buffer.from('00000000000000000000ffffc6336407', 'hex'),
  Buffer.from([0xd4, 0x31, 0x01, 0xbb]),
]);
const UNIX_BLOCK = Buffer.concat([
  Buffer.concat([latin1('/run/client.sock'), Buffer.alloc(108 - 16)]),
  Buffer.concat([latin1('/run/app.sock'), Buffer.alloc(108 - 13)]),
]);

const VALID: [string, Buffer, ProxyHeader][] = [
  [
    'v1 TCP4',
    latin1('PROXY TCP4 192.0.2.1 198.51.100.7 54321 443\r\n'),
    {
      version: 1,
      command: 'PROXY',
      family: 'TCP4',
      source: { address: '192.0.2.1', port: 54321 },
      destination: { address: '198.51.100.7', port: 443 },
      tlvs: [],
    },
  ],
  [
    'v1 TCP6',
    latin1('PROXY TCP6 2001:db8::1 ::ffff:198.51.100.7 0 65535\r\n'),
    {
      version: 1,
      command: 'PROXY',
      family: 'TCP6',
      source: { address: '2001:db8::1', port: 0 },
      destination: { address: '::ffff:198.51.100.7', port: 65535 },
      tlvs: [],
    },
  ],
  ['v1 UNKNOWN', latin1('PROXY UNKNOWN\r\n'), { version: 1, command: 'PROXY', family: 'UNKNOWN', tlvs: [] }],
  [
    'v1 UNKNOWN with ignored fields',
    latin1('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'),
    { version: 1, command: 'PROXY', family: 'UNKNOWN', tlvs: [] },
  ],
  [
    'v1 at its 107-byte limit',
    latin1(`PROXY UNKNOWN ${'x'.repeat(107 - 'PROXY UNKNOWN \r\n'.length)}\r\n`),
    { version: 1, command: 'PROXY', family: 'UNKNOWN', tlvs: [] },
  ],
  [
    'v2 TCP4',
    v2(0x21, 0x11, IPV4_BLOCK),
    {
      version: 2,
      command: 'PROXY',
      family: 'TCP4',
      source: { address: '192.0.2.1', port: 54321 },
      destination: { address: '198.51.100.7', port: 443 },
      tlvs: [],
    },
  ],
  [
    'v2 TCP4 with ALPN and authority TLVs',
    v2(0x21, 0x11, Buffer.concat([IPV4_BLOCK, tlv(PROXY_TLV_ALPN, 'h2'), tlv(PROXY_TLV_AUTHORITY, 'a.example'), tlv(0x04, '')])),
    {
      version: 2,
      command: 'PROXY',
      family: 'TCP4',
      source: { address: '192.0.2.1', port: 54321 },
      destination: { address: '198.51.100.7', port: 443 },
      tlvs: [
        { type: PROXY_TLV_ALPN, value: latin1('h2') },
        { type: PROXY_TLV_AUTHORITY, value: latin1('a.example') },
        { type: 0x04, value: Buffer.alloc(0) },
      ],
    },
  ],
  [
    'v2 TCP6',
    v2(0x21, 0x21, IPV6_BLOCK),
    {
      version: 2,
      command: 'PROXY',
      family: 'TCP6',
      source: { address: '2001:db8::1', port: 54321 },
      destination: { address: '::ffff:198.51.100.7', port: 443 },
      tlvs: [],
    },
  ],
  [
    'v2 UDP4',
    v2(0x21, 0x12, IPV4_BLOCK),
    {
      version: 2,
      command: 'PROXY',
      family: 'UDP4',
      source: { address: '192.0.2.1', port: 54321 },
      destination: { address: '198.51.100.7', port: 443 },
      tlvs: [],
    },
  ],
  [
    'v2 UNIX stream',
    v2(0x21, 0x31, UNIX_BLOCK),
    {
      version: 2,
      command: 'PROXY',
      family: 'UNIX',
      source: { address: '/run/client.sock', port: 0 },
      destination: { address: '/run/app.sock', port: 0 },
      tlvs: [],
    },
  ],
  ['v2 LOCAL', v2(0x20, 0x00, Buffer.alloc(0)), { version: 2, command: 'LOCAL', family: 'UNKNOWN', tlvs: [] }],
  [
    'v2 LOCAL skips its block, family and TLVs included',
    v2(0x20, 0x11, Buffer.concat([IPV4_BLOCK, Buffer.from([1, 0, 9])])),
    { version: 2, command: 'LOCAL', family: 'TCP4', tlvs: [] },
  ],
  ['v2 LOCAL with an undefined family', v2(0x20, 0x77, Buffer.alloc(0)), { version: 2, command: 'LOCAL', family: 'UNKNOWN', tlvs: [] }],
  ['v2 PROXY UNSPEC', v2(0x21, 0x00, latin1('ignored')), { version: 2, command: 'PROXY', family: 'UNKNOWN', tlvs: [] }],
];

for (const [name, bytes, expected] of VALID) {
  t.test(name, async (t) => {
    t.same(parseProxyHeader(bytes), { kind: 'header', length: bytes.length, header: expected });
    t.same(parseProxyHeader(Buffer.concat([bytes, PAYLOAD])), { kind: 'header', length: bytes.length, header: expected }, 'with the client bytes after it');
    const early: string[] = [];
    for (let length = 0; length < bytes.length; length++) {
      const result = parseProxyHeader(bytes.subarray(0, length));
      if (result.kind !== 'need-more') early.push(`${length} bytes: ${JSON.stringify(result)}`);
    }
    t.same(early, [], 'every shorter prefix is need-more');
  });
}

// ---- invalid headers ------------------------------------------------------------------

const INVALID: [string, Buffer, RegExp][] = [
  ['neither P nor CR', latin1('G'), /not a PROXY header/],
  ['TLS', Buffer.from([0x16, 0x03, 0x01]), /not a PROXY header/],
  ['lower-case proxy', latin1('Proxy'), /not a PROXY header/],
  ['PROXY without its space', latin1('PROXYTCP4'), /not a PROXY header/],
  ['unknown family', latin1('PROXY TCP5'), /family/],
  ['family then CRLF', latin1('PROXY TCP4\r\n'), /fields/],
  ['bad IPv4 as soon as a bad character comes', latin1('PROXY TCP4 1.2.3.x'), /address/],
  ['IPv4 octet over 255', latin1('PROXY TCP4 1.2.3.256 '), /address/],
  ['IPv4 leading zero', latin1('PROXY TCP4 01.2.3.4 '), /address/],
  ['IPv6 in TCP4', latin1('PROXY TCP4 ::1 '), /address/],
  ['IPv4 in TCP6', latin1('PROXY TCP6 1.2.3.4 '), /address/],
  ['IPv6 zone', latin1('PROXY TCP6 fe80::1%eth0 '), /address/],
  ['port over 65535', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 65536'), /port/],
  ['port with a plus', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 +80'), /port/],
  ['port with junk', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 80x'), /port/],
  ['empty port', latin1('PROXY TCP4 1.2.3.4 5.6.7.8  443\r\n'), /port/],
  ['six fields', latin1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 '), /too many fields/],
  ['two spaces', latin1('PROXY  TCP4'), /family/],
  ['LF without CR', latin1('PROXY UNKNOWN\n'), /without CR/],
  ['CR inside the line', latin1('PROXY UNKNOWN a\rb'), /CR inside/],
  ['longer than 107 bytes', latin1(`PROXY UNKNOWN ${'x'.repeat(100)}`), /107/],
  ['v2 signature broken', Buffer.concat([SIGNATURE.subarray(0, 11), latin1('X')]), /not a PROXY header/],
  ['v2 version 1', Buffer.concat([SIGNATURE, Buffer.from([0x11])]), /version/],
  ['v2 command 2', Buffer.concat([SIGNATURE, Buffer.from([0x22])]), /command/],
  ['v2 family 0x13', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x13])]), /family/],
  ['v2 family 0x10 (INET, no transport)', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x10])]), /family/],
  ['v2 TCP4 block too short', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x0b])]), /too short/],
  ['v2 TCP6 block too short', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x21, 0x00, 0x0c])]), /too short/],
  ['v2 TLV header cut', v2(0x21, 0x11, Buffer.concat([IPV4_BLOCK, Buffer.from([1, 0])])), /TLV header/],
  ['v2 TLV value overruns', v2(0x21, 0x11, Buffer.concat([IPV4_BLOCK, Buffer.from([1, 0, 3, 0x68, 0x32])])), /TLV 0x1/],
];

t.test('invalid headers, each with its reason, as soon as the bytes show it', async (t) => {
  for (const [name, bytes, reason] of INVALID) {
    t.match(parseProxyHeader(bytes), { kind: 'invalid', reason }, name);
    t.same(parseProxyHeader(Buffer.concat([bytes, PAYLOAD])).kind, 'invalid', `${name}, with more bytes`);
  }
});

// ---- encoders ---------------------------------------------------------------------------

t.test('encodeProxyV1', async (t) => {
  const cases: [string, Parameters<typeof encodeProxyV1>[0], string][] = [
    ['IPv4', { source: { address: '192.0.2.1', port: 5 }, destination: { address: '10.0.0.1', port: 443 } }, 'PROXY TCP4 192.0.2.1 10.0.0.1 5 443\r\n'],
    ['IPv4-mapped pair', { source: { address: '::ffff:192.0.2.1', port: 5 }, destination: { address: '::FFFF:10.0.0.1', port: 80 } }, 'PROXY TCP4 192.0.2.1 10.0.0.1 5 80\r\n'],
    ['IPv6', { source: { address: '2001:DB8:0:0:0:0:0:1', port: 5 }, destination: { address: '::1', port: 443 } }, 'PROXY TCP6 2001:db8::1 ::1 5 443\r\n'],
    ['mixed families', { source: { address: '2001:db8::1', port: 5 }, destination: { address: '10.0.0.1', port: 443 } }, 'PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 5 443\r\n'],
    ['a zone is dropped', { source: { address: 'fe80::1%eth0', port: 5 }, destination: { address: 'fe80::2', port: 6 } }, 'PROXY TCP6 fe80::1 fe80::2 5 6\r\n'],
    ['no endpoints', null, 'PROXY UNKNOWN\r\n'],
    ['an undefined address', { source: { address: '', port: 5 }, destination: { address: '10.0.0.1', port: 443 } }, 'PROXY UNKNOWN\r\n'],
    ['a bad port', { source: { address: '192.0.2.1', port: 70000 }, destination: { address: '10.0.0.1', port: 443 } }, 'PROXY UNKNOWN\r\n'],
  ];
  for (const [name, endpoints, expected] of cases) {
    const encoded = encodeProxyV1(endpoints);
    t.equal(encoded.toString('latin1'), expected, name);
    t.equal(parseProxyHeader(encoded).kind, 'header', `${name}: parses back`);
  }
});

t.test('encodeProxyV2 round-trips through the parser', async (t) => {
  const cases: [string, Parameters<typeof encodeProxyV2>, Partial<ProxyHeader>][] = [
    [
      'IPv4 with SNI and ALPN',
      [{ source: { address: '192.0.2.1', port: 54321 }, destination: { address: '10.0.0.1', port: 443 } }, { alpn: 'h2', authority: 'a.example' }],
      {
        version: 2,
        command: 'PROXY',
        family: 'TCP4',
        source: { address: '192.0.2.1', port: 54321 },
        destination: { address: '10.0.0.1', port: 443 },
        tlvs: [
          { type: PROXY_TLV_ALPN, value: latin1('h2') },
          { type: PROXY_TLV_AUTHORITY, value: latin1('a.example') },
        ],
      },
    ],
    [
      'IPv6 with a custom TLV',
      [{ source: { address: '2001:db8:0:0:1::1', port: 1 }, destination: { address: '::', port: 2 } }, { tlvs: [{ type: 0xe0, value: Buffer.from([1, 2, 3]) }] }],
      {
        family: 'TCP6',
        source: { address: '2001:db8::1:0:0:1', port: 1 },
        destination: { address: '::', port: 2 },
        tlvs: [{ type: 0xe0, value: Buffer.from([1, 2, 3]) }],
      },
    ],
    [
      'embedded IPv4 notation',
      [{ source: { address: '64:ff9b::192.0.2.33', port: 1 }, destination: { address: '::ffff:10.0.0.1', port: 2 } }],
      { family: 'TCP6', source: { address: '64:ff9b::c000:221', port: 1 }, destination: { address: '::ffff:10.0.0.1', port: 2 } },
    ],
    ['no endpoints: UNSPEC', [null, { alpn: 'h2' }], { command: 'PROXY', family: 'UNKNOWN', tlvs: [] }],
    [
      'LOCAL',
      [{ source: { address: '192.0.2.1', port: 1 }, destination: { address: '10.0.0.1', port: 2 } }, { command: 'LOCAL' }],
      { command: 'LOCAL', family: 'UNKNOWN', tlvs: [] },
    ],
  ];
  for (const [name, args, expected] of cases) {
    const encoded = encodeProxyV2(...args);
    const result = parseProxyHeader(Buffer.concat([encoded, PAYLOAD]));
    t.match(result, { kind: 'header', length: encoded.length }, name);
    t.match(header(result), expected, name);
    if (expected.source === undefined) t.equal(header(result)?.source, undefined, `${name}: no source`);
  }
  t.throws(() => encodeProxyV2({ source: { address: '::1', port: 1 }, destination: { address: '::1', port: 2 } }, { tlvs: [{ type: 1, value: Buffer.alloc(70000) }] }), RangeError);
});
