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
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startMux } from '../helpers/mux.js';
import { tcpServer } from '../helpers/servers.js';
import { tempDir } from '../helpers/temp-dir.js';

const BURST = 60;

/**
 * Opens the burst (from `burstAddresses` in turn) and then the lone client,
 * each sending its banner at once; resolves with the order the backend saw.
 * The clients run in a child process while this one (sniffmux's) is held,
 * so every connection waits, in that order and with its banner already
 * there, before sniffmux's JavaScript hears of any (in the kernel's accept
 * queue, or accepted by the native thread): the order then shows how
 * sniffmux started them, not how fast each one's bytes came.
 */
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
  const clients = [...Array.from({ length: BURST }, (_, i) => [`burst-${i}`, burstAddresses[i % burstAddresses.length]!]), ['lone', '127.0.6.2']];
  const ready = path.join(tempDir('sniffmux-fair-'), 'ready');
  const child = spawn(process.execPath, ['-e', CLIENTS, String(mux.port('fe')), JSON.stringify(clients), ready], { stdio: ['pipe', 'inherit', 'inherit'] });
  t.teardown(async () => {
    child.kill();
    await mux.stop();
    await backend.close();
  });
  // Held, not sleeping: this process runs nothing (no accept) until the child has sent every banner.
  const deadline = Date.now() + 20_000;
  const hold = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(ready)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the client process did not connect its clients');
    Atomics.wait(hold, 0, 0, 2);
  }
  await everyBanner;
  return seen;
}

/**
 * The child: connects each client once the one before has sent its banner, and says so (a file) once every banner
 * is sent. One at a time, because the native thread accepts while this process is held: a client it took before its
 * banner came (the child's loop busy connecting the others) would be routed when the banner came, after the next
 * ones, as whichever is ready first is (HAProxy too).
 */
const CLIENTS = `
  const net = require('node:net');
  const fs = require('node:fs');
  const [port, clients, ready] = [Number(process.argv[1]), JSON.parse(process.argv[2]), process.argv[3]];
  const next = (i) => {
    if (i === clients.length) return fs.writeFileSync(ready, '');
    const [name, localAddress] = clients[i];
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    socket.on('error', (e) => { console.error(name, e.message); process.exit(1); });
    socket.write('SSH-2.0-' + name + '\\r\\n', () => next(i + 1));
  };
  next(0);
  process.stdin.resume(); // until the test kills it
`;

t.test('a burst from two addresses: a client from a third is started among the first, not after the burst', async (t) => {
  const seen = await startOrder(t, ['127.0.6.1', '127.0.6.3']);
  const position = seen.indexOf('SSH-2.0-lone');
  // libuv accepts one connection a turn and sniffmux starts one every other turn, so by the time the lone client is
  // accepted about half the burst has started; the other half waits in sniffmux's round-robin, behind it. Add the
  // first two, started at once before a second address was seen, and one round over the three addresses.
  t.ok(position >= 0 && position <= BURST / 2 + 5, `the lone client was started ${position + 1}th of ${BURST + 1} (first come, first served: ${BURST + 1}th)`);
  for (const address of ['127.0.6.1', '127.0.6.3']) {
    const own = seen.filter((s) => s.startsWith('SSH-2.0-burst')).filter((s) => Number(s.split('-').pop()) % 2 === (address === '127.0.6.1' ? 0 : 1));
    t.same(own, [...own].sort((a, b) => Number(a.split('-').pop()) - Number(b.split('-').pop())), `${address}: its connections keep their order`);
  }
});

t.test('a burst from one address is started first come, first served (no turn given up: nobody to be fair to yet)', async (t) => {
  const seen = await startOrder(t, ['127.0.6.1']);
  t.same(
    seen.filter((s) => s.startsWith('SSH-2.0-burst')),
    Array.from({ length: BURST }, (_, i) => `SSH-2.0-burst-${i}`),
    "one address's connections keep their order",
  );
  t.ok(seen.includes('SSH-2.0-lone'), 'and the client from another address is served too');
});
