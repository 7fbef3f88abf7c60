/**
 * IdleCollector: one full collection when new connections stop after a
 * burst, none while they keep coming, none for a trickle.
 */
import t from 'tap';
import { setTimeout as delay } from 'node:timers/promises';
import { IdleCollector, fullCollection } from '../../src/runtime/idle-gc.js';

// The collector's timer is unref'd (it must never keep a stopping process up); here something else must hold the loop open.
const keepAlive = setInterval(() => {}, 1000);
t.teardown(() => clearInterval(keepAlive));

function spy() {
  let calls = 0;
  let resolve!: () => void;
  const called = new Promise<void>((r) => (resolve = r));
  return {
    collect: () => {
      calls++;
      resolve();
    },
    called,
    calls: () => calls,
  };
}

t.test('a burst, then quiet: one collection', async (t) => {
  const s = spy();
  const c = new IdleCollector({ collect: s.collect, burst: 10, quietMs: 20 });
  t.teardown(() => c.stop());
  for (let i = 0; i < 10; i++) c.accepted();
  await s.called;
  t.equal(s.calls(), 1);
});

t.test('fewer than a burst: no collection', async (t) => {
  const s = spy();
  const c = new IdleCollector({ collect: s.collect, burst: 10, quietMs: 5 });
  for (let i = 0; i < 9; i++) c.accepted();
  await delay(30);
  t.equal(s.calls(), 0);
  c.stop();
});

t.test('while connections keep coming, none; once they stop, one', async (t) => {
  const s = spy();
  const c = new IdleCollector({ collect: s.collect, burst: 5, quietMs: 500 });
  t.teardown(() => c.stop());
  for (let i = 0; i < 20; i++) {
    c.accepted();
    await delay(10); // a new connection every 10 ms: never 500 ms quiet
  }
  t.equal(s.calls(), 0, 'not during the burst');
  await s.called;
  t.equal(s.calls(), 1, 'once after it');
});

t.test('none while connections are still sniffing; one once they are not', async (t) => {
  const s = spy();
  let sniffing = 3;
  const c = new IdleCollector({ collect: s.collect, burst: 5, quietMs: 20, busy: () => sniffing > 0 });
  t.teardown(() => c.stop());
  for (let i = 0; i < 5; i++) c.accepted();
  await delay(100);
  t.equal(s.calls(), 0, 'a pause now could outlast their inspect delay');
  sniffing = 0;
  await s.called;
  t.equal(s.calls(), 1);
});

t.test("V8's full collection is reachable, and frees garbage", async (t) => {
  const gc = fullCollection();
  t.type(gc, 'function');
  gc!();
  const base = process.memoryUsage().heapUsed;
  let garbage: unknown[] | null = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `item ${i}` }));
  t.ok(process.memoryUsage().heapUsed > base + 5e6, 'the garbage takes room');
  garbage = null;
  gc!();
  t.ok(process.memoryUsage().heapUsed < base + 2e6, `collected (heap ${(process.memoryUsage().heapUsed / 1e6).toFixed(1)} MB, ${(base / 1e6).toFixed(1)} MB before)`);
  t.equal(garbage, null);
});
