/** IP parsing and CIDR matching, checked against node:net where the two overlap. */
import t from 'tap';
import { isIPv6 } from 'node:net';
import { cidrSetHas, compileCidrs, parseCidr, parseIPv4, parseIPv6 } from '../../src/route/cidr.js';

t.test('IPv4 parsing', async (t) => {
  const table: [string, number][] = [
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['10.1.2.3', 0x0a010203],
    ['1.2.3', -1],
    ['1.2.3.4.5', -1],
    ['256.1.1.1', -1],
    ['01.1.1.1', -1],
    ['1..1.1', -1],
    ['', -1],
    ['1.2.3.4 ', -1],
  ];
  for (const [text, want] of table) t.equal(parseIPv4(text), want, text);
});

t.test('IPv6 parsing agrees with node:net', async (t) => {
  const samples = [
    '::', '::1', '1::', '2001:db8::1', 'fe80::1%eth0', '::ffff:10.1.2.3', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4',
    '1:2:3:4:5:6:7:8:9', '1::2::3', ':1', '1:', '12345::', 'g::1', '::1.2.3', '1:2:3:4:5:6:7::', '::ffff:1.2.3.4.5', '',
  ];
  const out = new Uint16Array(8);
  for (const s of samples) t.equal(parseIPv6(s, out), isIPv6(s), s);
  parseIPv6('2001:db8::ff00:42:8329', out);
  t.same([...out], [0x2001, 0xdb8, 0, 0, 0, 0xff00, 0x42, 0x8329]);
});

t.test('CIDR parsing', async (t) => {
  t.match(parseCidr('10.0.0.0/8'), { family: 4, net: 0x0a000000, prefix: 8 });
  t.match(parseCidr('10.1.2.3'), { family: 4, prefix: 32 });
  t.match(parseCidr('::1'), { family: 6, prefix: 128 });
  t.match(parseCidr('::ffff:10.0.0.0/104'), { family: 4, net: 0x0a000000, prefix: 8 }, 'a mapped block is the IPv4 block');
  t.match(parseCidr('10.0.0.1/8'), /did you mean 10\.0\.0\.0\/8\?/);
  t.match(parseCidr('10.0.0.0/33'), /prefix is 0-32/);
  t.match(parseCidr('::/129'), /prefix is 0-128/);
  t.match(parseCidr('fe80::1%eth0/64'), /invalid CIDR/);
  t.match(parseCidr('10.0.0.0/'), /invalid CIDR/);
});

t.test('matching', async (t) => {
  const set = compileCidrs(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1']);
  const table: [string, boolean][] = [
    ['10.200.3.4', true],
    ['11.0.0.1', false],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['::ffff:10.9.9.9', true], // IPv4-mapped counts as IPv4
    ['::ffff:11.9.9.9', false],
    ['2001:db8:1::5', true],
    ['2001:db9::5', false],
    ['::1', true],
    ['::2', false],
    ['', false],
    ['not an ip', false],
  ];
  for (const [ip, want] of table) t.equal(cidrSetHas(set, ip), want, ip);
  const everything = compileCidrs(['0.0.0.0/0', '::/0']);
  for (const ip of ['1.2.3.4', '::1', 'fe80::1%lo', '::ffff:1.2.3.4']) t.ok(cidrSetHas(everything, ip), ip);
  t.notOk(cidrSetHas(compileCidrs('::/0'), '1.2.3.4'), 'families stay apart: ::/0 is not IPv4');
  t.ok(cidrSetHas(compileCidrs('2001:db8::/33'), '2001:db8:7fff::1'));
  t.notOk(cidrSetHas(compileCidrs('2001:db8::/33'), '2001:db8:8000::1'), 'a prefix inside a word');
});
