/** The static "matches every connection" / "matches none" answers behind the unreachable-rule check. */
import t from 'tap';
import { matchesEverything, matchesNothing, type ReachContext } from '../../src/route/index.js';
import type { Condition } from '../../src/config/types.js';

const plain: ReachContext = { onlyTls: false, listenPorts: [80, 443] };
const hellos: ReachContext = { onlyTls: true, listenPorts: [443] };
const ALL7 = ['tls', 'http2', 'http', 'ssh', 'flash-policy', 'other', 'none'] as const;

const table: [Condition, ReachContext, boolean, boolean][] = [
  // condition, context, matches everything, matches nothing
  [{ protocol: [...ALL7] }, plain, true, false],
  [{ protocol: ['tls', 'http2', 'http', 'ssh', 'flash-policy', 'other'] }, plain, false, false],
  [{ protocol: 'tls' }, hellos, true, false],
  [{ protocol: 'http' }, hellos, false, true],
  [{ tls: true }, plain, false, false],
  [{ tls: true }, hellos, true, false],
  [{ tls: false }, hellos, false, true],
  [{ src: ['0.0.0.0/0', '::/0'] }, plain, true, false],
  [{ src: '0.0.0.0/0' }, plain, false, false],
  [{ src: ['::ffff:0.0.0.0/96', '::/0'] }, plain, true, false],
  [{ port: [443, 80] }, plain, true, false],
  [{ port: 80 }, plain, false, false],
  [{ port: 8080 }, plain, false, true],
  [{ not: { protocol: [...ALL7] } }, plain, false, true],
  [{ not: { tls: false } }, hellos, true, false],
  [{ all: [{ protocol: [...ALL7] }, { src: ['0.0.0.0/0', '::/0'] }] }, plain, true, false],
  [{ all: [{ protocol: [...ALL7] }, { host: 'x' }] }, plain, false, false],
  [{ all: [{ protocol: 'http' }, { not: { protocol: 'http' } }] }, plain, false, true],
  [{ all: [{ websocket: true }, { websocket: false }] }, plain, false, true],
  [{ any: [{ host: 'x' }, { protocol: [...ALL7] }] }, plain, true, false],
  [{ any: [{ protocol: 'http' }, { not: { protocol: 'http' } }] }, plain, true, false],
  [{ any: [{ tls: true }, { tls: false }] }, plain, true, false],
  [{ any: [{ port: 1 }, { port: 2 }] }, plain, false, true],
  [{ any: [{ protocol: 'http' }, { protocol: 'tls' }] }, plain, false, false],
  [{ sni: '*' }, hellos, false, false], // a hello without SNI fails it
  [{ path: { regex: '' } }, plain, false, false],
];

t.test('static reachability', async (t) => {
  for (const [cond, ctx, always, never] of table) {
    const name = `${JSON.stringify(cond)}${ctx.onlyTls ? ' (ClientHellos only)' : ''}`;
    t.equal(matchesEverything(cond, ctx), always, `${name} matches everything`);
    t.equal(matchesNothing(cond, ctx), never, `${name} matches nothing`);
  }
});

t.test('no listen ports known: port proves nothing', async (t) => {
  const ctx: ReachContext = { onlyTls: false, listenPorts: [] };
  t.notOk(matchesEverything({ port: [80] }, ctx));
  t.notOk(matchesNothing({ port: [80] }, ctx));
});
