import t from 'tap';
import { ROUTE_PROTOCOLS } from '../../src/sniff/probe.js';
import { PROBES } from '../../src/sniff/registry.js';

t.test('the table: every probed protocol once, in decision order', async (t) => {
  t.same(
    PROBES.map((row) => row.protocol),
    ['tls', 'http2', 'http', 'ssh', 'flash-policy'],
  );
  t.same(
    ROUTE_PROTOCOLS.filter((protocol) => protocol !== 'other' && protocol !== 'none'),
    PROBES.map((row) => row.protocol),
    'ROUTE_PROTOCOLS lists the same probed protocols',
  );
  t.ok(Object.isFrozen(PROBES));
});

t.test('every probe says need-more on no bytes at all', async (t) => {
  for (const { protocol, probe } of PROBES) t.equal(probe(Buffer.alloc(0), { maxBytes: 16384 }).kind, 'need-more', protocol);
});
