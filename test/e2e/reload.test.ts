import t from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import path from 'node:path';
import { copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startCli } from '../helpers/cli.js';
import { makeCerts } from '../helpers/certs.js';
import { RawClient } from '../helpers/http.js';
import { startMux } from '../helpers/mux.js';
import { exchange, firstLine, taggedEcho } from '../helpers/servers.js';
import { tempDir } from '../helpers/temp-dir.js';

type Teardown = { teardown(fn: () => unknown): void };

/** Connects and resolves with the tag line the backend greets with, keeping the socket open. */
function open(port: number, host = '127.0.0.1'): Promise<{ socket: net.Socket; tag: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => socket.write('\x00'));
    socket.once('data', (d: Buffer) => resolve({ socket, tag: firstLine(d) }));
    socket.once('error', reject);
  });
}

function roundTrip(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.endsWith(text)) {
        socket.removeListener('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.write(text);
  });
}

t.test('SIGHUP: a new route for new connections, the open session keeps flowing; an invalid config keeps the old one', async (t) => {
  const a = await taggedEcho('A');
  const b = await taggedEcho('B');
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const dir = tempDir('smx-reload-');
  const file = path.join(dir, 'sniffmux.yaml');
  const config = (backend: string) =>
    `frontends:\n  - name: fe\n    listen: [127.0.0.1:0]\n    inspect: { delay: 100ms }\n    default: ${backend}\nbackends:\n  - name: a\n    servers: [{ name: a1, address: ${a.address} }]\n  - name: b\n    servers: [{ name: b1, address: ${b.address} }]\n`;
  writeFileSync(file, config('a'));
  const cli = startCli(['run', '-c', file]);
  t.teardown(() => {
    cli.child.kill('SIGTERM');
    return cli.exited();
  });
  const port = Number((await cli.waitFor(/"port":(\d+),"msg":"listening"/))[1]);
  const session = await open(port);
  t.equal(session.tag, 'A');

  writeFileSync(file, config('b'));
  cli.child.kill('SIGHUP');
  await cli.waitFor(/"msg":"config reloaded"/);
  const fresh = await open(port);
  t.equal(fresh.tag, 'B', 'a new connection takes the new route');
  fresh.socket.destroy();
  t.match(await roundTrip(session.socket, 'still here'), /still here$/, 'the session opened before the reload still flows');

  writeFileSync(file, 'frontends: [ this is not valid');
  cli.child.kill('SIGHUP');
  await cli.waitFor(/"msg":"reload failed: keeping the running config"/);
  t.match(cli.output(), /"problems":\[".*sniffmux\.yaml:1:\d+: YAML syntax error/);
  const after = await open(port);
  t.equal(after.tag, 'B', 'the running config stays');
  after.socket.destroy();
  session.socket.destroy();
});

/** Resolves with how a new connection to host:port ends up: 'accepted', or the error code. */
function connectOutcome(port: number, host: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host, () => {
      s.destroy();
      resolve('accepted');
    });
    s.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

t.test('SIGHUP adds and removes listen addresses; a session on a removed address keeps flowing', async (t) => {
  const backend = await taggedEcho('e');
  t.teardown(() => backend.close());
  const file = path.join(tempDir('smx-listen-'), 'sniffmux.yaml');
  const config = (listen: string[]) =>
    `frontends:\n  - name: fe\n    listen: [${listen.join(', ')}]\n    inspect: { delay: 100ms }\n    default: b\nbackends:\n  - name: b\n    servers: [{ name: b1, address: ${backend.address} }]\n`;
  writeFileSync(file, config(['127.0.0.1:0']));
  const cli = startCli(['run', '-c', file]);
  t.teardown(() => {
    cli.child.kill('SIGTERM');
    return cli.exited();
  });
  const kept = Number((await cli.waitFor(/"host":"127\.0\.0\.1","port":(\d+),"msg":"listening"/))[1]);

  writeFileSync(file, config(['127.0.0.1:0', '127.0.0.2:0']));
  cli.child.kill('SIGHUP');
  const added = Number((await cli.waitFor(/"host":"127\.0\.0\.2","port":(\d+),"msg":"listening"/))[1]);
  await cli.waitFor(/"msg":"config reloaded"/);
  const session = await open(added, '127.0.0.2');
  t.equal(session.tag, 'e', 'the added address accepts and routes');

  writeFileSync(file, config(['127.0.0.1:0']));
  cli.child.kill('SIGHUP');
  await cli.waitFor(/"listen":"127\.0\.0\.2:0","msg":"stopped listening"/);
  await cli.waitFor(/(?:"msg":"config reloaded"[\s\S]*){2}/);
  t.equal(await connectOutcome(added, '127.0.0.2'), 'ECONNREFUSED', 'the removed address refuses new connections');
  t.match(await roundTrip(session.socket, 'after removal'), /after removal$/, 'the session opened on it still flows');
  const other = await open(kept);
  t.equal(other.tag, 'e', 'the address that stayed still accepts');
  other.socket.destroy();
  session.socket.destroy();
});

t.test('SIGHUP picks up renewed certificates for new connections', async (t) => {
  const backend = await taggedEcho('tls-backend');
  t.teardown(() => backend.close());
  const certs = makeCerts({ 'old.test': ['site.test'], 'new.test': ['site.test'] });
  const dir = tempDir('smx-renew-');
  copyFileSync(certs['old.test']!.cert, path.join(dir, 'site.pem'));
  copyFileSync(certs['old.test']!.key, path.join(dir, 'site.key'));
  const file = path.join(dir, 'sniffmux.yaml');
  writeFileSync(
    file,
    `frontends:\n  - name: fe\n    listen: [127.0.0.1:0]\n    tls: { certificates: [{ cert: site.pem, key: site.key }] }\n    default: b\nbackends:\n  - name: b\n    servers: [{ name: b1, address: ${backend.address} }]\n`,
  );
  const cli = startCli(['run', '-c', file]);
  t.teardown(() => {
    cli.child.kill('SIGTERM');
    return cli.exited();
  });
  const port = Number((await cli.waitFor(/"port":(\d+),"msg":"listening"/))[1]);
  const subject = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'site.test', rejectUnauthorized: false }, () => {
        resolve(String(s.getPeerCertificate().subject.CN));
        s.destroy();
      });
      s.once('error', reject);
    });
  t.equal(await subject(), 'old.test');
  copyFileSync(certs['new.test']!.cert, path.join(dir, 'site.pem'));
  copyFileSync(certs['new.test']!.key, path.join(dir, 'site.key'));
  cli.child.kill('SIGHUP');
  await cli.waitFor(/"msg":"config reloaded"/);
  t.equal(await subject(), 'new.test', 'the renewed certificate is served');
});

t.test('reload keeps the state of servers that did not change', async (t) => {
  const s1 = await taggedEcho('s1');
  const s2 = await taggedEcho('s2');
  t.teardown(() => Promise.all([s1.close(), s2.close()]));
  const raw = (servers: { name: string; address: string }[]) => ({
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], default: 'b' }],
    backends: [{ name: 'b', servers }],
  });
  const mux = await startMux(raw([{ name: 's1', address: s1.address }, { name: 's2', address: s2.address }]));
  t.teardown(() => mux.stop());
  const before = mux.instance.pools.get('b')!.servers;
  before[0]!.up = false;
  const { parseConfig } = await import('../../src/config/index.js');
  await mux.instance.reload(
    parseConfig(raw([{ name: 's1', address: s1.address }, { name: 's2', address: s1.address }]), { baseDir: tmpdir(), source: null }),
  );
  const after = mux.instance.pools.get('b')!.servers;
  t.equal(after[0], before[0], 'an unchanged server is the same server, still down');
  t.equal(after[0]!.up, false);
  t.not(after[1], before[1], 'a server whose address changed starts afresh');
  const { received } = await exchange(mux.port('fe'), '\x00', { until: (r) => r.includes(0x0a) });
  t.equal(firstLine(received), 's1', 'traffic goes to the up server (s2 now points at s1’s address)');
});

t.test('frontend maxconn holds new connections, unanswered, and serves them when a slot frees', async (t) => {
  const backend = await taggedEcho('x');
  t.teardown(() => backend.close());
  const mux = await startMux({
    global: { maxconn: 5 },
    frontends: [{ name: 'fe', listen: ['127.0.0.1:0'], maxconn: 1, inspect: { delay: '100ms' }, default: 'b' }],
    backends: [{ name: 'b', servers: [{ name: 'b1', address: backend.address }] }],
  });
  t.teardown(() => mux.stop());
  const first = await open(mux.port('fe'));
  const second = await RawClient.connect(mux.port('fe'));
  t.teardown(() => second.close());
  second.write('\x00held');
  // Well past the inspect delay: a second connection that was served would have been greeted and echoed by now.
  await sleep(400);
  t.equal(second.pending.toString('latin1'), '', 'the second connection gets no answer while the first is open');
  t.equal(mux.instance.frontends.find((f) => f.name === 'fe')!.active, 1, 'the frontend is at its maxconn');
  first.socket.destroy();
  const served = await second.until((r) => r.includes('\x00held'));
  t.equal(served.toString('latin1'), 'x\n\x00held', 'once the first closes, the second is routed and its bytes echoed');
});
