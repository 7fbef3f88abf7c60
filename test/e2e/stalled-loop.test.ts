/**
 * Bytes that arrived within the inspect delay count even when the event loop
 * was stalled past it (a long collection, a starved CPU): the delay is an
 * upper bound on waiting, and the bytes were there in time. Before, the timer
 * (which runs before the loop reads sockets) decided `none` with the request
 * waiting unread.
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { firstLine, taggedEcho } from '../helpers/servers.js';
import { startMux } from '../helpers/mux.js';
import { eventually } from '../helpers/eventually.js';

t.test('a request sent in time is sniffed as sent, though the loop stalled past the delay', async (t) => {
  const web = await taggedEcho('web');
  const silent = await taggedEcho('silent');
  t.teardown(async () => {
    await web.close();
    await silent.close();
  });
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        inspect: { delay: '100ms' },
        rules: [
          { if: { protocol: 'http' }, use: 'web' },
          { if: { protocol: 'none' }, use: 'silent' },
        ],
        default: 'silent',
      },
    ],
    backends: [
      { name: 'web', servers: [{ name: 'w', address: web.address }] },
      { name: 'silent', servers: [{ name: 's', address: silent.address }] },
    ],
  });
  t.teardown(() => mux.stop());
  const client = net.connect(mux.port('fe'), '127.0.0.1');
  t.teardown(() => client.destroy());
  await once(client, 'connect');
  await eventually('the connection accepted', () => mux.instance.activeConnections === 1);
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // into the kernel at once (the socket is writable)
  const until = Date.now() + 300;
  while (Date.now() < until); // the stall: three inspect delays without a turn of the loop
  const received: Buffer[] = [];
  client.on('data', (d: Buffer) => received.push(d));
  await eventually('the backend greeting', () => Buffer.concat(received).includes('\n'));
  t.equal(firstLine(Buffer.concat(received)), 'web', 'routed as HTTP, not as a silent client');
  client.end();
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.match(line, { protocol: 'http', backend: 'web' });
});
