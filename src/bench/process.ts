/**
 * Process plumbing for the benchmark: free loopback ports, waiting for a
 * listener, child processes that are always stopped, RSS of a process, the
 * machine description written next to every result.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** A module next to this one, in src/ (run through tsx) or dist/ (built): same extension as this file. */
export function siblingModule(relative: string): string {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(relative + ext, import.meta.url));
}

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once a TCP connect to 127.0.0.1:port succeeds (the probe connection is reset at once). */
export async function waitForPort(port: number, timeoutMs = 10_000, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.resetAndDestroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process that should listen on port ${port} exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Resident set size of a process in bytes (Linux /proc), or null when unknown. */
export function rssOf(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system) a process has used so far, in ms (Linux /proc,
 * clock ticks of 10 ms), or null when unknown.
 */
export function cpuMsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

/** Child processes of a pid (Linux /proc), for detecting worker processes. */
export function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim();
    return text === '' ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

export interface Daemon {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Everything it wrote on stdout and stderr so far (last 16 KB). */
  output(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

/** Spawns a long-running process; stop() sends SIGTERM, then SIGKILL after `killAfterMs`. */
export function spawnDaemon(command: string, args: string[], opts: { cwd?: string; killAfterMs?: number } = {}): Daemon {
  const child = spawn(command, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return wrapDaemon(child, opts.killAfterMs ?? 3000);
}

function wrapDaemon(child: ChildProcess, killAfterMs: number): Daemon {
  let output = '';
  let exited = child.exitCode !== null;
  const onOutput = (d: Buffer): void => {
    output = (output + d.toString()).slice(-16_384);
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.once('error', (error) => {
    output += `\n${error.message}`;
    exited = true;
  });
  return {
    pid: child.pid ?? -1,
    child,
    output: () => output,
    alive: () => !exited,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** The bench backend in its own process; resolves with its port. */
export async function startBackendProcess(): Promise<{ port: number; daemon: Daemon }> {
  const child = fork(siblingModule('./backend-process'), [], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const daemon = wrapDaemon(child, 2000);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`bench backend exited (${code}): ${daemon.output()}`)));
  });
  return { port, daemon };
}

export interface MachineInfo {
  readonly date: string;
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
  readonly kernel: string;
  readonly os: string;
  readonly memoryGiB: number;
  readonly openFileLimit: number | null;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let openFileLimit: number | null = null;
  try {
    const limits = readFileSync('/proc/self/limits', 'latin1');
    const m = /^Max open files\s+(\d+)/m.exec(limits);
    if (m) openFileLimit = Number(m[1]);
  } catch {
    // not Linux
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    os: `${os.platform()} ${os.arch()}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    openFileLimit,
  };
}
