import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface ChildTest {
  teardown(fn: () => unknown): void;
  equal(a: unknown, b: unknown, m: string): void;
}

/**
 * Runs `code` (an ES module, tsx loaded) in a child whose open-file limit is
 * `nofile`, asserts that it exits 0 and returns the JSON of its last output
 * line. For running out of descriptors without harming the test process.
 */
export async function limitedChild<T>(t: ChildTest, nofile: number, code: string): Promise<T> {
  const child = spawn('sh', ['-c', `ulimit -n ${nofile} && exec "$0" --import tsx --input-type=module -e "$1"`, process.execPath, code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const [exitCode] = (await once(child, 'exit')) as [number];
  t.equal(exitCode, 0, 'the child ran to the end');
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}
