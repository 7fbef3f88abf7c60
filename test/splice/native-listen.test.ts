import t from 'tap';
import { fileURLToPath } from 'node:url';
import { nativeSpliceUnavailable } from '../../src/splice/native.js';
import { limitedChild } from '../helpers/limited-child.js';

/**
 * The native thread's own accept (listenNatively) when the process is out
 * of descriptors: accept(2) fails with EMFILE, the owner hears it, the
 * client waits in the backlog (neither accepted and closed, as libuv does,
 * nor lost), and once descriptors free the thread accepts it, its first
 * bytes peeked, within its retry interval.
 */
if (nativeSpliceUnavailable !== null) {
  t.fail(`the native splice addon is needed for these tests and is unavailable: ${nativeSpliceUnavailable} (npm install builds it)`);
  process.exit(1);
}
const nativeModule = JSON.stringify(fileURLToPath(new URL('../../src/splice/native.ts', import.meta.url)));

t.test('out of descriptors: accept fails, the owner hears EMFILE, and the waiting client is accepted once some free', async (t) => {
  const code = `
    import net from 'node:net';
    import { once } from 'node:events';
    import { openSync, closeSync } from 'node:fs';
    import { listenNatively, startNativeSplice } from ${nativeModule};
    const until = async (what, test) => { const end = Date.now() + 10000; while (!test()) { if (Date.now() > end) throw new Error('timed out: ' + what); await new Promise((r) => setTimeout(r, 5)); } };
    if (startNativeSplice() !== null) throw new Error('no native thread');
    const server = net.createServer();
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const port = server.address().port;
    const failures = [];
    const accepted = [];
    const listener = listenNatively(server._handle.fd, 1024, {
      accepted: (c) => accepted.push(c),
      acceptFailed: (e) => failures.push(e.code),
    });
    server.close();
    const dummies = [];
    try { for (;;) dummies.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
    closeSync(dummies.pop()); // the client's own socket
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {}); // reset at the end: its bytes were never read
    await once(client, 'connect');
    const clientPort = client.localPort;
    client.write('hello');
    await until('the accept failure', () => failures.length > 0);
    const acceptedWhileShort = accepted.length;
    const freedAt = Date.now();
    for (const fd of dummies.splice(0, 8)) closeSync(fd);
    await until('the client accepted', () => accepted.length > 0);
    const waitedMs = Date.now() - freedAt;
    const c = accepted[0];
    c.job.release();
    closeSync(c.fd);
    await listener.close();
    const refused = await new Promise((r) => net.connect(port, '127.0.0.1').once('error', (e) => r(e.code)).once('connect', () => r('accepted')));
    for (const fd of dummies) closeSync(fd);
    console.log(JSON.stringify({ failures: [...new Set(failures)], acceptedWhileShort, waitedMs, first: c.first?.toString(), address: c.address, port: c.port, clientPort, refused }));
    process.exit(0);
  `;
  const report = await limitedChild<Record<string, unknown>>(t, 64, code);
  t.same(report.failures, ['EMFILE'], 'the owner heard EMFILE');
  t.equal(report.acceptedWhileShort, 0, 'nothing accepted while short');
  t.equal(report.first, 'hello', `then accepted (${report.waitedMs as number} ms after descriptors freed; the thread retries every 100 ms), its first bytes peeked`);
  t.equal(report.address, '127.0.0.1', 'the client address');
  t.equal(report.port, report.clientPort, 'its port, as the client sees its own');
  t.equal(report.refused, 'ECONNREFUSED', 'once closed, the port refuses');
});
