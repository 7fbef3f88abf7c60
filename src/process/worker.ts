import cluster from 'node:cluster';
import { Metrics } from '../admin/metrics.js';
import { buildStatus } from '../admin/status-json.js';
import { loadConfigFile, type Config } from '../config/index.js';
import { SniffmuxError } from '../errors.js';
import { createLogger, type Logger } from '../observe/log.js';
import { Instance } from '../runtime/instance.js';
import { isMessage, WORKER_ENV, type FromWorker, type Question, type ReloadAnswer, type ToWorker } from './ipc.js';

/** True in a process that a sniffmux cluster primary forked (`global.workers` > 1). */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] !== undefined;
}

/**
 * The admin listener is the primary's: a worker runs the instance without
 * one (and a reload never starts one: an Instance builds its admin only once).
 */
export function withoutAdmin(config: Config): Config {
  return { ...config, admin: null };
}

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || process.send === undefined) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

function problemsOf(error: unknown): string[] {
  if (error instanceof SniffmuxError) return [...error.problems];
  return [error instanceof Error ? error.message : String(error)];
}

/**
 * A cluster worker: reads the config file itself (the primary checked it
 * just before), runs an Instance on the shared listeners and does what the
 * primary asks over IPC: its status snapshot and metrics for the admin
 * listener, a reload, a drain. It also answers signals sent to it directly
 * (a terminal's Ctrl-C reaches the whole process group).
 *
 * A start-up failure is not printed here: it is sent to the primary, which
 * prints the one line, and the worker exits 1.
 */
export async function runWorker(file: string): Promise<undefined> {
  const slot = Number(process.env[WORKER_ENV]);
  let running: RunningWorker | null = null;
  // What arrives while the instance starts is done once it has started.
  const queued: ((r: RunningWorker) => void)[] = [];
  const whenRunning = (fn: (r: RunningWorker) => void): void => {
    if (running) fn(running);
    else queued.push(fn);
  };
  process.on('message', (message: unknown) => {
    if (isMessage<ToWorker>(message)) whenRunning((r) => r.message(message));
  });
  process.on('SIGTERM', () => whenRunning((r) => r.signal('SIGTERM')));
  process.on('SIGINT', () => whenRunning((r) => r.signal('SIGINT')));
  process.on('SIGHUP', () => whenRunning((r) => void r.reloadOnSignal()));
  // If the primary goes away, node:cluster exits the worker at once (it held the listening sockets anyway).

  let started: RunningWorker;
  try {
    const config = loadConfigFile(file);
    const logger = createLogger(config.log.level).child({ worker: slot });
    const instance = new Instance(withoutAdmin(config), logger);
    // Before start: the sniff-time histogram counts from the first connection.
    const metrics = new Metrics(instance);
    await instance.start();
    started = new RunningWorker(instance, metrics, logger, config.source ?? file);
  } catch (error) {
    await send({ sniffmux: 'failed', code: error instanceof SniffmuxError ? error.code : null, problems: problemsOf(error) });
    process.exit(1);
  }
  running = started;
  for (const fn of queued.splice(0)) fn(started);
  await send({ sniffmux: 'ready' });
  return undefined;
}

class RunningWorker {
  private stopping = false;
  private signalled = false;
  private reloads: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly instance: Instance,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly source: string,
  ) {}

  message(message: ToWorker): void {
    if (message.sniffmux === 'stop') return this.stop('primary');
    void this.answer(message.id, message.question);
  }

  private async answer(id: number, question: Question): Promise<void> {
    try {
      await send({ sniffmux: 'answer', id, value: await this.ask(question) });
    } catch (error) {
      await send({ sniffmux: 'answer', id, error: error instanceof Error ? error.message : String(error) });
    }
  }

  private async ask(question: Question): Promise<unknown> {
    switch (question) {
      case 'status':
        return buildStatus(this.instance);
      case 'metrics':
        return this.metrics.json();
      case 'reload':
        return this.reload();
    }
  }

  /**
   * Reads the file again and swaps the config in, one reload at a time. The
   * primary logs the outcome once for every worker; the problems are returned.
   */
  private reload(): Promise<ReloadAnswer> {
    const next = this.reloads.then(async (): Promise<ReloadAnswer> => {
      try {
        await this.instance.reload(withoutAdmin(loadConfigFile(this.source)));
        return null;
      } catch (error) {
        return problemsOf(error);
      }
    });
    this.reloads = next;
    return next;
  }

  /** A SIGHUP sent to this worker itself (not through the primary): logged here, as a single process does. */
  async reloadOnSignal(): Promise<void> {
    const problems = await this.reload();
    if (problems === null) this.logger.info({ config: this.source }, 'config reloaded');
    else this.logger.error({ config: this.source, problems }, 'reload failed: keeping the running config');
  }

  signal(signal: NodeJS.Signals): void {
    if (this.signalled) {
      this.logger.warn({ signal }, 'second stop signal: exiting now');
      process.exit(1);
    }
    this.signalled = true;
    this.stop(signal);
  }

  /** Stops accepting, drains for up to global.grace (Instance.stop), exits 0. Once. */
  stop(reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.logger.info({ reason, active: this.instance.activeConnections, grace: this.instance.config.global.grace }, 'worker draining');
    void this.instance.stop().then(() => {
      this.logger.info('worker stopped');
      process.exit(0);
    });
  }
}
