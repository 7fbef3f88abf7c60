import t from 'tap';
import { exchange, firstLine, tcpServer } from '../helpers/servers.js';
import { startMux } from '../helpers/mux.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/sniff/proxy-protocol.js';

/**
 * A listener with proxyProtocol: true consumes the PROXY header: the backend
 * never sees it, the log's client and the rules' src are the header's source.
 */
async function setup(t: { teardown(fn: () => unknown): void }) {
  const received: Buffer[] = [];
  const arrived: Array<() => void> = [];
  const backend = await tcpServer((socket) => {
    socket.write('backend\n');
    socket.on('data', (c: Buffer) => {
      received.push(c);
      for (const check of arrived.splice(0)) check();
    });
  });
  /** Resolves once the backend has received exactly `text` (the first bytes on, since any connection). */
  const backendGot = (text: string): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (Buffer.concat(received).toString() === text ? resolve() : void arrived.push(check));
      check();
    });
  const other = await tcpServer((socket) => socket.end('from-10-net\n'));
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: [{ address: '127.0.0.1:0', proxyProtocol: true }],
        inspect: { delay: '300ms' },
        rules: [{ if: { src: ['10.0.0.0/8'] }, use: 'tennet' }],
        default: 'be',
      },
    ],
    backends: [
      { name: 'be', servers: [{ name: 's1', address: backend.address }] },
      { name: 'tennet', servers: [{ name: 's1', address: other.address }] },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    await backend.close();
    await other.close();
  });
  return { mux, received, backendGot };
}

t.test('PROXY v1: consumed, and its source is the client', async (t) => {
  const { mux, received, backendGot } = await setup(t);
  const header = encodeProxyV1({ source: { address: '203.0.113.7', port: 5555 }, destination: { address: '127.0.0.1', port: 80 } });
  const helloArrived = backendGot('hello');
  // The backend's greeting and the client's bytes cross: the greeting may reach the client before the backend read "hello".
  const { received: reply } = await exchange(mux.port('fe'), Buffer.concat([header, Buffer.from('hello')]), {
    until: (r) => r.includes('\n'),
  });
  await helloArrived;
  t.equal(firstLine(reply), 'backend');
  t.equal(Buffer.concat(received).toString(), 'hello', 'the backend gets the bytes without the header');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.client, '203.0.113.7:5555');
  t.equal(line.bytesIn, 5, 'bytesIn does not count the consumed header');
});

t.test('PROXY v2: its source address is what src rules see', async (t) => {
  const { mux } = await setup(t);
  const header = encodeProxyV2({ source: { address: '10.1.2.3', port: 4000 }, destination: { address: '127.0.0.1', port: 80 } });
  const { received } = await exchange(mux.port('fe'), Buffer.concat([header, Buffer.from([0])]));
  t.equal(received.toString(), 'from-10-net\n');
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.client, '10.1.2.3:4000');
  t.equal(line.backend, 'tennet');
  t.notOk('reason' in line, 'a connection that ended well has no reason field');
});

t.test('a connection without a PROXY header is closed', async (t) => {
  const { mux } = await setup(t);
  const { received } = await exchange(mux.port('fe'), 'GET / HTTP/1.1\r\n\r\n');
  t.equal(received.length, 0);
  const line = await mux.waitForLog((l) => l.msg === 'connection');
  t.equal(line.termination, 'bad-request');
  t.match(line.reason, /^invalid PROXY header: /, 'the log line says why');
  t.equal(line.backend, null);
});
