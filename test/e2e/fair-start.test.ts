/**
 * A burst from several addresses does not queue a client from another
 * behind all of it (src/runtime/fair-start.ts): accepted connections are
 * started round-robin across client addresses. The backend sees, in order,
 * the banner each connection sent first; the lone client's comes in the
 * middle of the burst, not after its last, where first-come-first-served
 * puts it. A burst from one address alone is started first come, first
 * served, without giving up loop turns (they would only cost).
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { startMux } from '../helpers/mux.js';
import { tcpServer } from '../helpers/servers.js';

const BURST = 60;

/** Opens the burst (from `burstAddresses` in turn) and then the lone client; resolves with the order the backend saw. */
async function startOrder(t: Test, burstAddresses: string[]): Promise<string[]> {
  const seen: string[] = [];
  let allSeen: () => void;
  const everyBanner = new Promise<void>((resolve) => (allSeen = resolve));
  const backend = await tcpServer((socket) => {
    let first = '';
    socket.on('data', (d: Buffer) => {
      if (first.includes('\n')) return;
      first += d.toString('latin1');
      if (!first.includes('\n')) return;
      seen.push(first.split('\r\n')[0]!);
      if (seen.length === BURST + 1) allSeen();
    });
  });
  const mux = await startMux({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'echo' }],
    backends: [{ name: 'echo', servers: [{ name: 'e1', address: backend.address }] }],
  });
  const sockets: net.Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await mux.stop();
    await backend.close();
  });
  const open = (name: string, localAddress: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ port: mux.port('fe'), host: '127.0.0.1', localAddress }, () => {
        socket.write(`SSH-2.0-${name}\r\n`);
        resolve();
      });
      socket.on('error', reject);
      sockets.push(socket);
    });
  // All at once: the burst first, the lone client last, in the kernel's accept queue in that order.
  const connected = [...Array.from({ length: BURST }, (_, i) => open(`burst-${i}`, burstAddresses[i % burstAddresses.length]!)), open('lone', '127.0.6.2')];
  await Promise.all(connected);
  await everyBanner;
  return seen;
}

/**
 * How far out of its place the furthest of these banners reached the
 * backend. Started in order, a connection can still be overtaken by the
 * next: one whose first bytes had come with the accept is routed at once,
 * while one whose bytes come a moment later waits for the native thread to
 * see them (src/frontend/fast-connection.ts), as HAProxy routes whichever
 * is ready first. That is a place or two, never a turn of the round-robin.
 */
function displacement(banners: string[]): number {
  const index = (s: string) => Number(s.split('-').pop());
  const order = [...banners].sort((a, b) => index(a) - index(b));
  return Math.max(0, ...banners.map((s, at) => Math.abs(at - order.indexOf(s))));
}

t.test('a burst from two addresses: a client from a third is started among the first, not after the burst', async (t) => {
  const seen = await startOrder(t, ['127.0.6.1', '127.0.6.3']);
  const position = seen.indexOf('SSH-2.0-lone');
  // libuv accepts one connection a turn and sniffmux starts one every other turn, so by the time the lone client is
  // accepted about half the burst has started; the other half waits in sniffmux's round-robin, behind it. Add the
  // first two, started at once before a second address was seen, and one round over the three addresses.
  t.ok(position >= 0 && position <= BURST / 2 + 5, `the lone client was started ${position + 1}th of ${BURST + 1} (first come, first served: ${BURST + 1}th)`);
  for (const address of ['127.0.6.1', '127.0.6.3']) {
    const own = seen.filter((s) => s.startsWith('SSH-2.0-burst')).filter((s) => Number(s.split('-').pop()) % 2 === (address === '127.0.6.1' ? 0 : 1));
    t.ok(displacement(own) <= 3, `${address}: its connections keep their order, give or take ${displacement(own)} places`);
  }
});

t.test('a burst from one address is started first come, first served (no turn given up: nobody to be fair to yet)', async (t) => {
  const seen = await startOrder(t, ['127.0.6.1']);
  const burst = seen.filter((s) => s.startsWith('SSH-2.0-burst'));
  t.equal(burst.length, BURST, 'every connection of the burst was served');
  t.ok(displacement(burst) <= 3, `one address's connections keep their order, give or take ${displacement(burst)} places`);
  t.ok(seen.includes('SSH-2.0-lone'), 'and the client from another address is served too');
});
