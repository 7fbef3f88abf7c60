import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { runTool, type ToolResult } from './tools.js';

export const CLI = path.resolve(import.meta.dirname, '../../dist/cli.js');

/** Runs the built CLI (`node dist/cli.js ...`) to completion, as a user would (killed after `timeoutMs` if given). */
export function runCli(args: string[], timeoutMs?: number): Promise<ToolResult> {
  return runTool(process.execPath, [CLI, ...args], '', timeoutMs);
}

/** A long-running CLI process whose stdout can be awaited line by line. */
export interface LiveCli {
  readonly child: ChildProcess;
  readonly output: () => string;
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  exited(): Promise<number | null>;
}

export function startCli(args: string[], opts: { cwd?: string } = {}): LiveCli {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (d: Buffer): void => {
    output += d.toString();
    for (const w of [...waiters]) {
      const m = output.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    waitFor(pattern) {
      const m = output.match(pattern);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        void exit.then((code) => reject(new Error(`sniffmux exited (${code}) before printing ${pattern}:\n${output}`)));
      });
    },
    exited: () => exit,
  };
}
