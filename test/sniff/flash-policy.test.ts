import t from 'tap';
import { POLICY_REQUEST, probeFlashPolicy } from '../../src/sniff/flash-policy.js';
import { Sniffer } from '../../src/sniff/sniffer.js';

const LIMITS = { maxBytes: 16384 };

t.test('the policy request: need-more while a prefix, complete match at 23 bytes', async (t) => {
  t.equal(POLICY_REQUEST.length, 23);
  for (let length = 0; length < POLICY_REQUEST.length; length++) {
    t.equal(probeFlashPolicy(POLICY_REQUEST.subarray(0, length), LIMITS).kind, 'need-more', `${length} bytes`);
  }
  t.same(probeFlashPolicy(POLICY_REQUEST, LIMITS), { kind: 'match', complete: true });
});

t.test('no-match at the first wrong byte', async (t) => {
  for (const text of ['G', '<p0', '<POLICY', '<policy-file-request/>\n']) {
    t.equal(probeFlashPolicy(Buffer.from(text), LIMITS).kind, 'no-match', JSON.stringify(text));
  }
  t.equal(probeFlashPolicy(Buffer.from('<policy-file-request/>'), LIMITS).kind, 'need-more', 'the NUL is still to come');
});

t.test('a policy request in three pieces through the Sniffer', async (t) => {
  const sniffer = new Sniffer(LIMITS);
  const pieces = ['<policy-', 'file-request/', '>\0'];
  let received = Buffer.alloc(0);
  const seen: [string, string | undefined][] = [];
  for (const piece of pieces) {
    received = Buffer.concat([received, Buffer.from(piece, 'latin1')]);
    const view = sniffer.update(received, false);
    seen.push([view.probe('flash-policy'), view.protocol]);
  }
  t.same(seen, [
    ['need-more', undefined],
    ['need-more', undefined],
    ['match', 'flash-policy'],
  ]);
  t.equal(sniffer.update(received, false).settled, true);
});
