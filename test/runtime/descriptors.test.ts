/** The descriptor budget's arithmetic and /proc parsing; the binary under `ulimit -n` is test/hostile/resources.test.ts. */
import t from 'tap';
import { descriptorBudget, DESCRIPTOR_HEADROOM, parseOpenFileLimit, readDescriptorUse } from '../../src/runtime/descriptors.js';
import { nativeDescriptorReserve, nativeSpliceUnavailable } from '../../src/splice/native.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

t.test('the soft "Max open files" limit, or null', async (t) => {
  t.equal(parseOpenFileLimit(LIMITS), 1024, 'the soft one, not the hard one');
  t.equal(parseOpenFileLimit(LIMITS.replace('1024  ', 'unlimited')), null, 'unlimited: no ceiling');
  t.equal(parseOpenFileLimit('garbage'), null);
});

t.test('two descriptors per served connection, one per held, headroom kept', async (t) => {
  for (const [limit, inUse, reserve] of [[256, 22, 1], [1024, 30, 4], [65536, 40, 100], [20, 22, 0]]) {
    const b = descriptorBudget({ limit: limit!, inUse: inUse! }, reserve!, 4096);
    const spare = Math.max(0, limit! - inUse! - reserve! - DESCRIPTOR_HEADROOM);
    t.ok(b.connections >= 1, `${limit}: at least one connection (${b.connections})`);
    t.ok(spare === 0 || 2 * b.connections + b.held <= spare, `${limit}: ${b.connections} × 2 + ${b.held} held fit in ${spare} spare descriptors`);
    t.ok(b.held <= 4096, `${limit}: held at most the hold queue`);
  }
  t.same(descriptorBudget({ limit: 100_000, inUse: 40 }, 0, 4096).held, 4096, 'a large limit: the whole hold queue');
  // What a proxy is judged on: HAProxy serves (limit - headroom) / 2 connections; serving must keep nearly all of that.
  // With what the native thread keeps out of the budget (its pipes, its untold accepts, its connect dups) and 4 checked servers.
  const reserve = 4 + nativeDescriptorReserve(20_000, true);
  const at20k = descriptorBudget({ limit: 20_000, inUse: 30 }, reserve, 4096);
  t.ok(at20k.connections >= 9_000, `at 20,000 descriptors ${at20k.connections} connections served (and ${at20k.held} held), ${reserve} reserved`);
  if (nativeSpliceUnavailable === null) t.equal(reserve - 4, 2 * 256 + 16 + 32, "the native thread's reserve at 20,000: 256 pipes, 16 connect dups, 32 untold accepts");
  else t.comment(`NOT CHECKED: the native thread's reserve (the addon is unavailable: ${nativeSpliceUnavailable})`);
});

t.test('this process: its limit and what it has open', async (t) => {
  const use = readDescriptorUse();
  if (use === null) return t.pass('no /proc here (not Linux), or no limit: no ceiling');
  t.ok(use.limit > 0 && use.inUse >= 3 && use.inUse < use.limit, `limit ${use.limit}, ${use.inUse} open`);
});
