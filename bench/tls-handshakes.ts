/**
 * New TLS connections per second: through sniffmux (terminating TLS, then
 * routing the decrypted stream) versus directly to a Node TLS server, each
 * in its own process, on loopback.
 *
 *   npm run build && node --import tsx bench/tls-handshakes.ts [seconds=5] [concurrency=20]
 *
 * Each client connection does a full TLS 1.3 handshake (no session resumption),
 * writes one byte, waits for it to come back and closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tmpdir } from 'node:os';
import tls from 'node:tls';
import { makeSelfSigned } from '../src/tls/selfsigned.js';

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 20);
const dir = mkdtempSync(path.join(tmpdir(), 'smx-tlsbench-'));
const { cert, key } = makeSelfSigned({ commonName: 'bench.test' });
writeFileSync(path.join(dir, 'cert.pem'), cert);
writeFileSync(path.join(dir, 'key.pem'), key);

/** A child process running a script; resolves with the port it prints. */
function child(args: string[], portPattern: RegExp): Promise<{ proc: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(portPattern);
      if (m) resolve({ proc, port: Number(m[1]) });
    });
    proc.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

const echoScript = `require('net').createServer(s=>s.pipe(s)).listen(0,'127.0.0.1',function(){console.log('port '+this.address().port)})`;
const tlsScript = `const fs=require('fs');require('tls').createServer({cert:fs.readFileSync('${dir}/cert.pem'),key:fs.readFileSync('${dir}/key.pem')},s=>s.pipe(s)).listen(0,'127.0.0.1',function(){console.log('port '+this.address().port)})`;

async function measure(port: number): Promise<number> {
  let done = 0;
  const until = Date.now() + seconds * 1000;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'bench.test', rejectUnauthorized: false }, () => s.write('x'));
      s.once('data', () => {
        done++;
        s.destroy();
        resolve();
      });
      s.once('error', () => resolve());
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) await one();
    }),
  );
  return done / seconds;
}

const echo = await child(['-e', echoScript], /port (\d+)/);
const direct = await child(['-e', tlsScript], /port (\d+)/);
const config = path.join(dir, 'sniffmux.yaml');
writeFileSync(
  config,
  `frontends:\n  - name: tls\n    listen: [127.0.0.1:0]\n    tls: { certificates: [{ cert: ${dir}/cert.pem, key: ${dir}/key.pem }] }\n    default: echo\nbackends:\n  - name: echo\n    servers: [{ name: e, address: 127.0.0.1:${echo.port} }]\n`,
);
const mux = await child(['dist/cli.js', 'run', '-c', config], /"port":(\d+),"msg":"listening"/);
const samples: Record<string, number[]> = {};
for (let round = 0; round < 3; round++) {
  for (const [name, port] of [
    ['direct Node TLS server', direct.port],
    ['through sniffmux (terminate + sniff + splice)', mux.port],
  ] as const) {
    const rate = await measure(port);
    (samples[name] ??= []).push(rate);
    process.stderr.write(`round ${round + 1}: ${name}: ${rate.toFixed(0)} handshakes/s\n`);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = Object.fromEntries(Object.entries(samples).map(([name, xs]) => [name, median(xs)]));
console.log(`\nnew TLS connections per second (median of 3 × ${seconds}s, ${concurrency} concurrent clients, TLS 1.3, RSA 2048):`);
for (const [name, rate] of Object.entries(results)) console.log(`  ${name.padEnd(48)} ${rate.toFixed(0)}/s`);
const names = Object.keys(results);
console.log(`  ratio sniffmux/direct: ${(results[names[1]!]! / results[names[0]!]!).toFixed(2)}`);
for (const c of [echo, direct, mux]) c.proc.kill();
