import { Writable } from 'node:stream';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/observe/log.js';
import { Instance } from '../../src/runtime/instance.js';

export const FIXTURES = path.resolve(import.meta.dirname, '../../fixtures');

export type LogLine = Record<string, unknown> & { msg: string };

export interface RunningMux {
  readonly instance: Instance;
  /** Every log line so far, parsed, as a user would read them. */
  readonly logs: LogLine[];
  port(frontend: string, index?: number): number;
  /** Resolves with the first log line (already written or still to come) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean): Promise<LogLine>;
  /** The `connection` log lines. */
  connections(): LogLine[];
  /**
   * Resolves with the `connection` lines once there are at least `count`:
   * the line is written after both sides closed, so a client that has its
   * answer can be ahead of it.
   */
  waitForConnections(count: number): Promise<LogLine[]>;
  stop(): Promise<void>;
}

/**
 * Runs sniffmux in this process with a raw config object (as a YAML file
 * would give), logging into memory at the given level.
 */
export async function startMux(raw: unknown, opts: { level?: string; baseDir?: string } = {}): Promise<RunningMux> {
  const config = parseConfig(raw, { baseDir: opts.baseDir ?? FIXTURES, source: null });
  const logs: LogLine[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as LogLine;
        logs.push(line);
        for (const w of [...waiters]) {
          if (w.predicate(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
      callback();
    },
  });
  const logger = createLogger((opts.level ?? 'info') as 'info', sink);
  const instance = new Instance(config, logger);
  await instance.start();
  const connections = () => logs.filter((l) => l.msg === 'connection');
  const waitForLog = (predicate: (line: LogLine) => boolean): Promise<LogLine> => {
    const found = logs.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => waiters.push({ predicate, resolve }));
  };
  return {
    instance,
    logs,
    port: (frontend, index = 0) => instance.port(frontend, index),
    waitForLog,
    connections,
    async waitForConnections(count) {
      await waitForLog(() => connections().length >= count);
      return connections();
    },
    stop: () => instance.stop(0),
  };
}

/** A fixture config as the raw object its YAML gives. */
export function readFixtureConfig(name: string): Record<string, any> {
  return parseYaml(readFileSync(path.join(FIXTURES, 'configs', name), 'utf8')) as Record<string, any>;
}
