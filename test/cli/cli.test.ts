import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { runCli, startCli } from '../helpers/cli.js';
import { haveTool, runTool } from '../helpers/tools.js';
import { FIXTURES } from '../helpers/mux.js';
import { exchange, taggedEcho, tcpServer } from '../helpers/servers.js';
import { tempDir } from '../helpers/temp-dir.js';

const seed = path.join(FIXTURES, 'configs/seed.yaml');

t.test('check: config OK for the seed recipe', async (t) => {
  const r = await runCli(['check', '-c', seed]);
  t.equal(r.stdout, 'config OK\n');
  t.equal(r.code, 0);
});

t.test('check: one PATH: message line per problem, exit 1', async (t) => {
  const dir = tempDir('smx-check-');
  const write = (name: string, text: string): string => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const backends = 'backends:\n  - name: b\n    servers: [{ name: s, address: 127.0.0.1:1 }]\n';
  const badPort = await runCli(['check', '-c', write('port.yaml', `frontends:\n  - name: a\n    listen: [127.0.0.1:80, 127.0.0.1:99999]\n    default: b\n${backends}`)]);
  t.equal(badPort.code, 1);
  t.equal(badPort.stdout, 'frontends[0].listen[1]: port must be 1-65535\n');
  const unknown = await runCli(['check', '-c', write('unknown.yaml', `frontends:\n  - name: a\n    listen: [127.0.0.1:80]\n    default: nowhere\n${backends}`)]);
  t.equal(unknown.code, 1);
  t.equal(unknown.stdout, "frontends[0].default: unknown backend 'nowhere'\n");
});

t.test('run: a busy port is one line naming the address, exit 1', async (t) => {
  const busy = await tcpServer(() => {});
  t.teardown(() => busy.close());
  const dir = tempDir('smx-busy-');
  const file = path.join(dir, 'busy.yaml');
  writeFileSync(
    file,
    `frontends:\n  - name: a\n    listen: [${busy.address}]\n    default: b\nbackends:\n  - name: b\n    servers: [{ name: s, address: 127.0.0.1:1 }]\n`,
  );
  const r = await runCli(['run', '-c', file]);
  t.equal(r.code, 1);
  t.equal(r.stderr, `sniffmux: cannot listen on ${busy.address}: address already in use\n`);
});

t.test('run: a missing config file is one line naming it', async (t) => {
  const r = await runCli(['run', '-c', '/nonexistent/sniffmux.yaml']);
  t.equal(r.code, 1);
  t.match(r.stderr, /^sniffmux: .*\/nonexistent\/sniffmux\.yaml.*\n$/);
  t.equal(r.stderr.split('\n').length, 2, 'one line');
});

/** Resolves with the error code of a connect attempt, or how it connected. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(`connected from port ${socket.localPort}`);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`run: ${signal} stops accepting, drains within global.grace, closes the rest and exits 0`, async (t) => {
    const backend = await taggedEcho('b');
    t.teardown(() => backend.close());
    const dir = tempDir('smx-stop-');
    const file = path.join(dir, 'run.yaml');
    writeFileSync(
      file,
      `global: { grace: 1s }\nfrontends:\n  - name: a\n    listen: [127.0.0.1:0]\n    default: b\nbackends:\n  - name: b\n    servers: [{ name: s, address: ${backend.address} }]\n`,
    );
    const cli = startCli(['run', '-c', file]);
    // A failed assertion must not leave the process running.
    t.teardown(() => void (cli.child.exitCode === null && cli.child.kill('SIGKILL')));
    const [, port] = await cli.waitFor(/"port":(\d+),"msg":"listening"/);
    // Two open spliced connections: one ends on its own during the grace period, one never does.
    const open = async (): Promise<net.Socket> => {
      const socket = net.connect(Number(port), '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((r) => socket.once('data', r));
      return socket;
    };
    const finishing = await open();
    const lingering = await open();
    const lingeringClosed = new Promise((r) => lingering.once('close', r));
    cli.child.kill(signal);
    await cli.waitFor(new RegExp(`"signal":"${signal}","active":2.*"msg":"stopping: draining connections"`));
    t.equal(await connectOutcome(Number(port)), 'ECONNREFUSED', 'no new connection is accepted');
    finishing.end();
    await cli.waitFor(/"termination":"client-close","msg":"connection"/);
    t.equal(cli.output().includes('"termination":"shutdown"'), false, 'the other one still runs inside the grace period');
    await lingeringClosed;
    t.equal(await cli.exited(), 0);
    t.match(cli.output(), /"termination":"shutdown","msg":"connection"/, 'the connection still open at the end of the grace is closed, logged shutdown');
  });
}

t.test('cert writes a certificate and key', async (t) => {
  const dir = tempDir('smx-cert-');
  const r = await runCli(['cert', '--cn', 'demo.test', '--san', '127.0.0.1', '--out', dir]);
  t.equal(r.code, 0);
  t.ok(existsSync(path.join(dir, 'demo.test.pem')));
  t.match(readFileSync(path.join(dir, 'demo.test.key'), 'utf8'), /BEGIN (RSA )?PRIVATE KEY/);
});

t.test('explain on a captured ClientHello', async (t) => {
  const r = await runCli(['explain', '-c', seed, '--file', path.join(FIXTURES, 'clienthellos/clienthello-curl.bin')]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /protocol: tls/);
  t.match(r.stdout, /sni: +curl\.example\.test/);
  t.match(r.stdout, /alpn: +h2, http\/1\.1/);
  t.match(r.stdout, /decision: backend sio_tcp .*rules\[3\] matched/);
  t.match(r.stdout, /decided after 1 of 517 bytes/);
});

t.test('explain on an HTTP request', async (t) => {
  const hex = Buffer.from('GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: a\r\n\r\n').toString('hex');
  const r = await runCli(['explain', '-c', seed, '--hex', hex]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /method: +GET/);
  t.match(r.stdout, /path: +\/socket\.io\/\?EIO=4/);
  t.match(r.stdout, /decision: backend socket_io .*rules\[0\] matched/);
});

t.test('demo: HTTP, raw TCP and policy on one port, policy on the other', async (t) => {
  const cli = startCli(['demo', '--port', '0', '--policy-port', '0']);
  t.teardown(() => {
    cli.child.kill('SIGTERM');
    return cli.exited();
  });
  const m = await cli.waitFor(/every protocol on 127\.0\.0\.1:(\d+), Flash policy only on 127\.0\.0\.1:(\d+)/);
  const port = Number(m[1]);
  const policyPort = Number(m[2]);
  const page = await fetch(`http://127.0.0.1:${port}/`);
  t.equal(page.status, 200);
  t.match(await page.text(), /new WebSocket/);
  const echo = await exchange(port, 'raw bytes\n', { until: (r) => r.toString() === 'raw bytes\n' });
  t.equal(echo.received.toString(), 'raw bytes\n', 'raw TCP is echoed');
  for (const p of [port, policyPort]) {
    const policy = await exchange(p, '<policy-file-request/>\0');
    t.match(policy.received.toString(), /<cross-domain-policy>[\s\S]*<\/cross-domain-policy>\n?\0$/);
  }
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const messages: string[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data) => {
      messages.push(data.toString());
      if (messages.length === 1) ws.send('hi');
      else {
        ws.close();
        resolve();
      }
    });
    ws.on('error', reject);
  });
  t.same(messages, ['hello from the sniffmux demo WebSocket echo', 'echo: hi']);
});

t.test('demo: https, wss and openssl s_client on the same port as plain HTTP', async (t) => {
  const cli = startCli(['demo', '--port', '0', '--policy-port', '0']);
  t.teardown(() => {
    cli.child.kill('SIGTERM');
    return cli.exited();
  });
  const port = Number((await cli.waitFor(/every protocol on 127\.0\.0\.1:(\d+)/))[1]);
  t.match(cli.output(), `curl -k https://127.0.0.1:${port}/`, 'the guide shows HTTPS');
  t.match(cli.output(), `wss://127.0.0.1:${port}/ws`, 'the guide shows wss');
  t.match(cli.output(), `openssl s_client -connect 127.0.0.1:${port}`, 'the guide shows openssl s_client');

  const page = await new Promise<{ status: number; body: string; subject: string }>((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false }, (res) => {
      const subject = String((res.socket as TLSSocket).getPeerCertificate().subject.CN);
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body, subject }));
    });
    req.on('error', reject);
  });
  t.equal(page.status, 200, 'https://');
  t.match(page.body, /new WebSocket/);
  t.equal(page.subject, 'localhost', 'with the certificate made at start');

  const { WebSocket } = await import('ws');
  const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { rejectUnauthorized: false });
  const greeting = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve(data.toString()));
    ws.on('error', reject);
  });
  ws.close();
  t.equal(greeting, 'hello from the sniffmux demo WebSocket echo', 'wss://');

  if (haveTool(t, 'openssl')) {
    // -ign_eof keeps s_client reading after its input ends, until the server closes (HTTP/1.0 without keep-alive).
    const r = await runTool('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof'], 'GET /health HTTP/1.0\r\n\r\n');
    t.match(r.stdout, /subject=CN ?= ?localhost/, 'openssl s_client: the demo certificate');
    t.match(r.stdout, /HTTP\/1\.1 200[\s\S]*\r\n\r\nok/, 'and an answer through the TLS it terminated');
  }

  const plain = await fetch(`http://127.0.0.1:${port}/health`);
  t.equal(plain.status, 200, 'plain HTTP still works');
});
