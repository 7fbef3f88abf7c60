import t from 'tap';
import { startMux, type RunningMux } from '../helpers/mux.js';
import { httpPeer, RawClient, get, type HttpPeer, type RawResponse } from '../helpers/http.js';

/**
 * The sticky cookie's fallback (src/http/sticky.ts): a cookie that names no
 * server of the backend, or a server its health check has taken out, is
 * balanced like a request without one, and the answer carries a new cookie
 * naming the server that served it.
 */
type Teardown = { teardown(fn: () => unknown): void };

const NAMES = ['one', 'two', 'three'] as const;

async function setup(t: Teardown): Promise<{ mux: RunningMux; peers: Map<string, HttpPeer> }> {
  const peers = new Map<string, HttpPeer>();
  for (const name of NAMES) peers.set(name, await httpPeer(name));
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], inspect: { delay: '300ms' }, default: 'web' }],
    backends: [
      {
        name: 'web',
        mode: 'http',
        http: { stickyCookie: 'SRV' },
        healthCheck: { type: 'tcp', interval: 100, rise: 2, fall: 2, timeout: 500 },
        servers: NAMES.map((name) => ({ name, address: peers.get(name)!.address })),
      },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    for (const p of peers.values()) await p.close();
  });
  return { mux, peers };
}

/** One request on a new connection, carrying `cookie`. */
async function askWith(mux: RunningMux, cookie: string): Promise<RawResponse> {
  const client = await RawClient.connect(mux.port('fe'));
  client.write(get('/page', `Cookie: theme=dark; ${cookie}\r\n`));
  const response = await client.response();
  client.close();
  return response;
}

t.test('a cookie naming an unknown server: balanced, and a new cookie names the server that answered', async (t) => {
  const { mux, peers } = await setup(t);
  const r = await askWith(mux, 'SRV=nosuch');
  t.equal(r.status, 200);
  const servedBy = r.headers['x-served-by']!;
  t.ok(NAMES.includes(servedBy as (typeof NAMES)[number]), `served by ${servedBy}`);
  t.equal(r.headers['set-cookie'], `SRV=${servedBy}; Path=/; HttpOnly`);
  t.equal(peers.get(servedBy)!.seen[0]!.headers.cookie, 'theme=dark', 'the stale sticky cookie is taken out');
  // The new cookie sticks, and is not set again.
  for (let i = 0; i < 3; i++) {
    const again = await askWith(mux, `SRV=${servedBy}`);
    t.equal(again.headers['x-served-by'], servedBy);
    t.equal(again.headers['set-cookie'], undefined, 'a valid cookie is not set again');
  }
});

t.test('a cookie naming a server its health check took out: another server, and a cookie naming it', async (t) => {
  const { mux, peers } = await setup(t);
  t.equal((await askWith(mux, 'SRV=two')).headers['x-served-by'], 'two', 'while up, "two" gets its sticky clients');
  await peers.get('two')!.close();
  await mux.waitForLog((l) => l.msg === 'server down' && l.server === 'two');
  const failedBefore = mux.logs.filter((l) => l.msg === 'server connect failed').length;
  for (let i = 0; i < 4; i++) {
    const r = await askWith(mux, 'SRV=two');
    t.equal(r.status, 200);
    const servedBy = r.headers['x-served-by']!;
    t.ok(servedBy === 'one' || servedBy === 'three', `served by ${servedBy}`);
    t.equal(r.headers['set-cookie'], `SRV=${servedBy}; Path=/; HttpOnly`, 'the cookie now names the server that answered');
  }
  t.equal(mux.logs.filter((l) => l.msg === 'server connect failed').length, failedBefore, 'the down server is not even tried');
});
