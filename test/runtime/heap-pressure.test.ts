/**
 * HeapPressure: when sniffmux refuses new connections for want of heap, and
 * when it takes them again. Readings are (heap used, heap limit, open
 * connections); the limit is 100 so "over the mark" is used > 50.
 */
import t from 'tap';
import { HeapPressure, TIGHT_FLOOR } from '../../src/runtime/heap-pressure.js';

const LIMIT = 100;
const FULL = 80;
const LIGHT = 10;

t.test('tight once the heap is over the mark with enough connections open, never with few', async (t) => {
  const p = new HeapPressure();
  t.equal(p.update(FULL, LIMIT, TIGHT_FLOOR - 1), null, 'a full heap with few connections is garbage V8 will collect');
  t.equal(p.tight, false);
  t.equal(p.update(LIGHT, LIMIT, 5000), null, 'many connections in a light heap are fine');
  t.equal(p.update(FULL, LIMIT, 2500), 'tight');
  t.equal(p.tight, true);
  t.equal(p.update(FULL, LIMIT, 2400), null, 'still tight while fewer than a tenth have closed');
  t.equal(p.tight, true);
});

t.test('at ease once the heap is below the mark', async (t) => {
  const p = new HeapPressure();
  p.update(FULL, LIMIT, 2500);
  t.equal(p.update(LIGHT, LIMIT, 2500), 'eased');
  t.equal(p.update(FULL, LIMIT, 2500), 'tight', 'with nothing to wait for, a full heap is tight again at once');
});

t.test('a draining flood does not flap it: garbage still fills the heap while connections close', async (t) => {
  const p = new HeapPressure();
  p.update(FULL, LIMIT, 2500);
  t.equal(p.update(FULL, LIMIT, 2249), 'eased', 'a tenth of the connections closed');
  const changes: Array<string | null> = [];
  // The flood closes over many readings while the heap is not collected yet; a few clients arrive in between.
  for (let active = 2200; active >= TIGHT_FLOOR; active -= 150) {
    changes.push(p.update(FULL, LIMIT, active));
    changes.push(p.update(FULL, LIMIT, active + 3));
    t.equal(p.tight, false, `accepting with ${active} open`);
  }
  t.same(changes.filter((c) => c !== null), [], 'no change while it drains');
});

t.test('after easing with the heap still full, connections growing again make it tight again', async (t) => {
  const p = new HeapPressure();
  p.update(FULL, LIMIT, 2500);
  p.update(FULL, LIMIT, 2200);
  p.update(FULL, LIMIT, 1000);
  t.equal(p.update(FULL, LIMIT, 1000 + TIGHT_FLOOR - 1), null, 'less than TIGHT_FLOOR more than the fewest since');
  t.equal(p.update(FULL, LIMIT, 1000 + TIGHT_FLOOR), 'tight', 'a new flood on a heap still full');
});

t.test('a collection in the middle of a drain does not make the rest of the drain tight again', async (t) => {
  const p = new HeapPressure();
  p.update(FULL, LIMIT, 4140);
  t.equal(p.update(FULL, LIMIT, 2091), 'eased', 'eased with the heap still full: the flood drains');
  // Seen under load in test/hostile/resources.test.ts: a collection took the heap below the mark, the garbage of the closing connections took it over again.
  t.equal(p.update(LIGHT, LIMIT, 1500), null);
  t.equal(p.update(FULL, LIMIT, 858), null, 'fewer open than when it eased: still accepting');
  t.equal(p.update(FULL, LIMIT, 859), null, 'and a new client arriving meanwhile is taken');
  t.equal(p.tight, false);
  t.equal(p.update(FULL, LIMIT, 858 + TIGHT_FLOOR), 'tight', 'a new flood after it is refused again');
});
