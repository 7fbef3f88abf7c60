/**
 * What the load goes through: the direct connection to the bench backend,
 * or a proxy in front of it. A target is started fresh for each measurement
 * (so memory figures start from the same state) and stopped after it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../config/index.js';
import { createLogger } from '../observe/log.js';
import { Instance } from '../runtime/instance.js';
import { NODE_FLAGS } from '../runtime/node-flags.js';
import { freePort, siblingModule, spawnDaemon, waitForPort } from './process.js';
import { POLICY_ALLOW } from './protocol.js';

export interface RunningTarget {
  /** Where the load generator connects. */
  readonly port: number;
  /** The proxy's process, for memory figures; null for the direct connection or an in-process proxy. */
  readonly pid: number | null;
  stop(): Promise<void>;
}

export interface Target {
  /** Short id used in JSON and on the command line (direct, sniffmux, haproxy…). */
  readonly name: string;
  /** Column heading. */
  readonly label: string;
  /** Version or build description, for the results. */
  readonly version?: string;
  /** Scenarios this target cannot run, with the reason (shown as a note). */
  readonly skips?: Readonly<Record<string, string>>;
  start(backendPort: number): Promise<RunningTarget>;
}

export const direct: Target = {
  name: 'direct',
  label: 'direct',
  skips: { memory: 'no proxy process to measure' },
  async start(backendPort) {
    return { port: backendPort, pid: null, stop: async () => {} };
  },
};

export interface SniffmuxVariant {
  readonly mode?: 'tcp' | 'http';
  readonly workers?: number;
  /** global.workerBalance (with workers > 1): the primary hands connections out, or the kernel does. */
  readonly workerBalance?: 'primary' | 'kernel';
  /** global.splice: the native splice(2) loop or the JavaScript streams (default auto: native when built). */
  readonly splice?: 'auto' | 'native' | 'js';
  /** Extra keys for the http-mode backends (e.g. `{ forwardedFor: true }`). */
  readonly http?: Record<string, unknown>;
}

/**
 * The seed recipe (fixtures/configs/seed.yaml) with every backend on the
 * bench backend, logging off (the peers log nothing either), listening on
 * `port`.
 */
export function sniffmuxBenchConfig(port: number, backendPort: number, variant: SniffmuxVariant = {}): Record<string, unknown> {
  const server = (name: string, extra: Record<string, unknown> = {}) => [{ name, address: `127.0.0.1:${backendPort}`, ...extra }];
  const mode = variant.mode ?? 'tcp';
  const http = variant.http ? { http: variant.http } : {};
  return {
    global: {
      maxconn: 200000,
      workers: variant.workers ?? 1,
      ...(variant.workerBalance ? { workerBalance: variant.workerBalance } : {}),
      grace: '1s',
      splice: variant.splice ?? 'auto',
    },
    log: { level: 'silent' },
    flashPolicy: { allow: POLICY_ALLOW },
    frontends: [
      {
        name: 'app',
        listen: [`127.0.0.1:${port}`],
        maxconn: 200000,
        inspect: { delay: '500ms', maxBytes: 16384 },
        timeouts: { client: '24h', tunnel: '24h' },
        flashPolicy: true,
        rules: [
          { if: { protocol: 'http', path: { prefix: '/socket.io' } }, use: 'socket_io' },
          { if: { protocol: 'http', path: { prefix: '/node' } }, use: 'socket_io' },
          { if: { not: { protocol: 'http' } }, use: 'sio_tcp' },
        ],
        default: 'webapp',
      },
    ],
    backends: [
      { name: 'socket_io', mode, ...http, timeouts: { connect: '5s', server: '24h', tunnel: '24h' }, servers: server('node1', { maxconn: 2000 }) },
      { name: 'sio_tcp', servers: server('node1') },
      { name: 'webapp', mode, ...http, servers: server('web1') },
    ],
  };
}

/** sniffmux's CLI entry (dist/cli.js when built, src/cli.ts under tsx). */
export function sniffmuxCli(): string {
  return siblingModule('../cli');
}

/**
 * sniffmux in its own process (`node dist/cli.js run -c <tmp config>`), so it
 * never shares an event loop with the load generator: the honest setup.
 */
export function sniffmuxProcess(
  opts: { name?: string; label?: string; variant?: SniffmuxVariant; /** A built CLI (dist/cli.js) to run with plain node. */ cli?: string } = {},
): Target {
  // Run as the bin runs (its shebang passes NODE_FLAGS).
  const command = [...NODE_FLAGS, ...(opts.cli ? [opts.cli] : [...process.execArgv, sniffmuxCli()])];
  return {
    name: opts.name ?? 'sniffmux',
    label: opts.label ?? 'sniffmux',
    version: `sniffmux (node ${process.version}, separate process)`,
    async start(backendPort) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'sniffmux-bench-'));
      const file = path.join(dir, 'sniffmux.json');
      const port = await freePort();
      writeFileSync(file, JSON.stringify(sniffmuxBenchConfig(port, backendPort, opts.variant)));
      const daemon = spawnDaemon(process.execPath, [...command, 'run', '-c', file]);
      try {
        await waitForPort(port, 15_000, daemon.alive);
      } catch (error) {
        await daemon.stop();
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`sniffmux did not start: ${(error as Error).message}\n${daemon.output()}`);
      }
      return {
        port,
        pid: daemon.pid,
        async stop() {
          await daemon.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/**
 * sniffmux as an Instance inside the load generator's process. Cheap, but the
 * proxy and the load then share one event loop: kept only to show how much
 * that distorts the figures (`--in-process`).
 */
export const sniffmuxInProcess: Target = {
  name: 'sniffmux-inproc',
  label: 'sniffmux (in-process)',
  version: `sniffmux (node ${process.version}, same process as the load generator)`,
  skips: { memory: 'the proxy shares its process with the load generator' },
  async start(backendPort) {
    const config = parseConfig(sniffmuxBenchConfig(0, backendPort), { baseDir: process.cwd(), source: null });
    const instance = new Instance(config, createLogger('silent'));
    await instance.start();
    return { port: instance.port('app'), pid: null, stop: () => instance.stop(0) };
  },
};
