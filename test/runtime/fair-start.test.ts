/**
 * FairStart's rule for starting an arrival at once (src/runtime/fair-start.ts):
 * while arrivals come from one address, each starts at once; once a second
 * address arrives, they take their turns round-robin for a while. A client
 * whose address is unknown (it left before it was asked) is no second address:
 * each such one, common with TCP health checks that connect and close at
 * once, put every arrival of the next 200 ms through the queue.
 */
import t from 'tap';
import { FairStart } from '../../src/runtime/fair-start.js';

t.test('one address: every arrival starts at once, a client with no address in between changes nothing', async (t) => {
  const fair = new FairStart<string>(() => {});
  t.equal(fair.startsNow('127.0.0.1'), true);
  t.equal(fair.startsNow(''), true, 'the client that left');
  t.equal(fair.startsNow('127.0.0.1'), true, 'the next one from the same address');
});

t.test('a second address: arrivals take their turns', async (t) => {
  const fair = new FairStart<string>(() => {});
  t.equal(fair.startsNow('127.0.0.1'), true);
  t.equal(fair.startsNow('127.0.0.2'), false);
  t.equal(fair.startsNow('127.0.0.1'), false, 'and so does the first address again, for a while');
});
