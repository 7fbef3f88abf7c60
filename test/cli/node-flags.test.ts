/**
 * sniffmux runs with NODE_FLAGS (src/runtime/node-flags.ts) however it is
 * started: the bin's shebang, `npm start`, and (by inheritance) its workers.
 */
import t from 'tap';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { NODE_FLAGS } from '../../src/runtime/node-flags.js';
import { FIXTURES } from '../helpers/mux.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SHEBANG = `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`;

t.test('the shebang of the bin passes NODE_FLAGS (source and build)', async (t) => {
  t.equal(readFileSync(path.join(ROOT, 'src/cli.ts'), 'utf8').split('\n')[0], SHEBANG);
  t.equal(readFileSync(path.join(ROOT, 'dist/cli.js'), 'utf8').split('\n')[0], SHEBANG);
});

t.test('npm start passes NODE_FLAGS', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.start, `node ${NODE_FLAGS.join(' ')} dist/cli.js demo`);
});

t.test('the bin runs through its shebang on this machine (env -S)', async (t) => {
  // A copy beside dist/cli.js (its imports are relative), executable as npm makes an installed bin.
  const bin = path.join(ROOT, 'dist', `cli-shebang-test-${process.pid}.js`);
  copyFileSync(path.join(ROOT, 'dist/cli.js'), bin);
  t.teardown(() => rmSync(bin, { force: true }));
  chmodSync(bin, 0o755);
  const child = spawn(bin, ['check', '-c', path.join(FIXTURES, 'configs/seed.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'close')) as [number];
  t.equal(code, 0, out);
  t.match(out, /config OK/);
});
