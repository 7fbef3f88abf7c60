import cluster, { type Worker } from 'node:cluster';
import { mergeStatus } from '../admin/aggregate.js';
import { aggregateMetrics, METRICS_CONTENT_TYPE, type MetricsJson } from '../admin/metrics.js';
import { AdminServer, type AdminView } from '../admin/server.js';
import type { StatusSnapshot } from '../admin/status-json.js';
import { loadConfigFile, type Config } from '../config/index.js';
import { SniffmuxError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { isMessage, WORKER_ENV, type FromWorker, type Question, type ReloadAnswer, type ToWorker } from './ipc.js';

/** How long the admin endpoints wait for a worker's numbers before leaving it out. */
const ADMIN_TIMEOUT_MS = 2_000;
/** How long a worker may take to read, check and swap in a new config. */
const RELOAD_TIMEOUT_MS = 30_000;
/** After global.grace, how long a draining worker gets to close the rest and exit before it is killed. */
const STOP_MARGIN_MS = 5_000;
/** A worker that served this long before it died was not crash-looping: its slot's back-off starts over. */
const STABLE_MS = 30_000;
const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 10_000;

/**
 * Delay before replacing a worker that died, by how many times in a row its
 * slot's worker died soon after starting: 100 ms, 200 ms, 400 ms, … up to 10 s.
 */
export function restartDelay(crashes: number): number {
  return Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.max(0, crashes - 1));
}

/** One of the N worker places; a replaced worker takes its predecessor's slot. */
interface Slot {
  readonly id: number;
  worker: Worker | null;
  /** Resolves when the current worker has exited. */
  exited: Promise<void>;
  /** Settles the current worker's start: ready, or failed (its problems). */
  starting: { resolve: () => void; reject: (error: SniffmuxError) => void } | null;
  forkedAt: number;
  /** When the current worker said it was ready; 0 before. */
  readyAt: number;
  /** Workers of this slot that died in a row, each soon after it started. */
  crashes: number;
  restart: NodeJS.Timeout | null;
}

interface Pending {
  readonly worker: Worker;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * `global.workers` > 1: this process becomes a node:cluster primary that
 * forks N workers, each running the Instance. The workers share the listening
 * sockets (node:cluster). With global.workerBalance `primary` (the default)
 * the primary accepts every connection and hands it to the next worker in
 * turn; with `kernel` every worker accepts from the shared socket itself.
 * The primary handles no connection itself. It:
 *
 * - checks the config before forking, so a bad config is one line and exit 1
 *   as in a single process; a worker that cannot start (an address in use)
 *   stops the start the same way;
 * - runs the one admin listener: /status, /status.json and /metrics add up
 *   every worker's numbers (asked over IPC), /healthz answers from here;
 * - SIGHUP: checks the file once, then has every worker reload it; logs once;
 * - SIGTERM/SIGINT: every worker drains for up to global.grace, then exit 0;
 * - replaces a worker that dies, with a back-off (`restartDelay`).
 */
export class ClusterPrimary implements AdminView {
  readonly startedAt = Date.now();
  readonly metricsContentType = METRICS_CONTENT_TYPE;
  private readonly slots: Slot[];
  private readonly admin: AdminServer | null;
  private phase: 'starting' | 'running' | 'stopping' = 'starting';
  /** Signals that came while starting, done once started. */
  private deferred: { stop: NodeJS.Signals | null; reload: boolean } = { stop: null, reload: false };
  private readonly pending = new Map<number, Pending>();
  private nextQuestion = 1;
  private restarts = 0;
  private reloading: Promise<void> = Promise.resolve();
  /** When the last reload that every worker applied was asked for (a worker forked before it reloads once ready). */
  private reloadedAt = 0;

  constructor(
    private config: Config,
    private readonly logger: Logger,
  ) {
    this.slots = Array.from({ length: config.global.workers }, (_, i) => ({
      id: i + 1,
      worker: null,
      exited: Promise.resolve(),
      starting: null,
      forkedAt: 0,
      readyAt: 0,
      crashes: 0,
      restart: null,
    }));
    this.admin = config.admin ? new AdminServer(config.admin, this, logger) : null;
  }

  /**
   * Binds the admin listener, forks the workers and waits until every one
   * listens. On any failure, stops what was started and throws the one-line
   * SniffmuxError (the first worker's, if workers failed).
   */
  async start(): Promise<void> {
    // Fixed by the first setupPrimary: a reload cannot change it.
    cluster.schedulingPolicy = this.config.global.workerBalance === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR;
    // Workers run this same command line (process.argv) and know they are workers by WORKER_ENV.
    cluster.setupPrimary({ serialization: 'advanced' });
    cluster.on('message', (worker, message) => this.onMessage(worker, message));
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal));
    this.handleSignals();
    try {
      // First: an admin address in use fails the start before anything is forked.
      await this.admin?.start();
      const starts = this.slots.map((slot) => this.fork(slot));
      for (const start of starts) start.catch(() => {});
      await Promise.all(starts);
    } catch (error) {
      await this.abortStart();
      throw error;
    }
    this.phase = 'running';
    this.logger.info(
      {
        config: this.config.source,
        frontends: this.config.frontends.length,
        backends: this.config.backends.length,
        workers: this.slots.length,
        workerPids: this.slots.map((s) => s.worker?.process.pid),
      },
      'sniffmux started',
    );
    if (this.deferred.stop) this.stop(this.deferred.stop);
    else if (this.deferred.reload) this.requestReload();
  }

  /** Forks the slot's worker; resolves when it is ready, rejects with its start-up error. */
  private fork(slot: Slot): Promise<void> {
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.id) });
    // An IPC write to a worker that just died; its exit is handled on 'exit'.
    worker.on('error', (error) => this.logger.debug({ worker: slot.id, error: error.message }, 'worker IPC error'));
    slot.worker = worker;
    slot.forkedAt = Date.now();
    slot.readyAt = 0;
    slot.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    return new Promise((resolve, reject) => (slot.starting = { resolve, reject }));
  }

  private slotOf(worker: Worker): Slot | undefined {
    return this.slots.find((s) => s.worker === worker);
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (!isMessage<FromWorker>(message)) return;
    const slot = this.slotOf(worker);
    switch (message.sniffmux) {
      case 'ready':
        if (!slot) return;
        slot.readyAt = Date.now();
        slot.starting?.resolve();
        slot.starting = null;
        if (this.phase === 'running') {
          this.logger.info({ worker: slot.id, workerPid: worker.process.pid }, 'worker started');
          // Forked before the last reload, it may have read the file before it changed.
          if (slot.forkedAt <= this.reloadedAt) void this.catchUp(slot, worker);
        }
        return;
      case 'failed': {
        if (!slot) return;
        const problems = message.problems.length > 0 ? message.problems : ['worker failed to start'];
        slot.starting?.reject(new SniffmuxError(message.code ?? 'SMX_ERR_LISTEN', problems[0]!, problems));
        slot.starting = null;
        if (this.phase === 'running') this.logger.error({ worker: slot.id, workerPid: worker.process.pid, problems }, 'worker failed to start');
        return;
      }
      case 'answer': {
        const pending = this.pending.get(message.id);
        if (!pending) return;
        this.pending.delete(message.id);
        clearTimeout(pending.timer);
        if (message.error !== undefined) pending.reject(new Error(message.error));
        else pending.resolve(message.value);
        return;
      }
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    for (const [id, pending] of this.pending) {
      if (pending.worker !== worker) continue;
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new Error(`worker ${worker.process.pid} exited`));
    }
    if (!slot) return;
    slot.worker = null;
    const pid = worker.process.pid;
    if (slot.starting) {
      slot.starting.reject(
        new SniffmuxError('SMX_ERR_LISTEN', `worker ${slot.id} (pid ${pid}) exited while starting (${signal ?? `exit code ${code}`})`),
      );
      slot.starting = null;
    }
    if (this.phase !== 'running') return;
    // A worker that served a while before dying is not a crash loop.
    if (slot.readyAt > 0 && Date.now() - slot.readyAt >= STABLE_MS) slot.crashes = 0;
    slot.crashes++;
    this.restarts++;
    const delay = restartDelay(slot.crashes);
    this.logger.error({ worker: slot.id, workerPid: pid, code, signal, restartIn: delay }, 'worker died: starting a new one');
    slot.restart = setTimeout(() => {
      slot.restart = null;
      if (this.phase === 'running') this.fork(slot).catch(() => {});
    }, delay);
  }

  /** A worker forked before the last reload reloads once it is ready, so it runs what the others run. */
  private async catchUp(slot: Slot, worker: Worker): Promise<void> {
    try {
      const problems = (await this.ask(worker, 'reload', RELOAD_TIMEOUT_MS)) as ReloadAnswer;
      if (problems !== null) this.logger.error({ worker: slot.id, workerPid: worker.process.pid, problems }, 'reload failed in a new worker');
    } catch {
      // It died or hangs: its exit is handled on 'exit'.
    }
  }

  /** Kills what a failed start left running and waits until it is gone. */
  private async abortStart(): Promise<void> {
    this.phase = 'stopping';
    for (const slot of this.slots) slot.worker?.process.kill('SIGKILL');
    await Promise.all(this.slots.map((s) => s.exited));
    await this.admin?.stop();
    cluster.removeAllListeners('message');
    cluster.removeAllListeners('exit');
    this.removeSignalHandlers();
  }

  private readonly onStopSignal = (signal: NodeJS.Signals): void => {
    if (this.phase === 'starting') this.deferred.stop = signal;
    else this.stop(signal);
  };
  private readonly onReloadSignal = (): void => {
    if (this.phase === 'starting') this.deferred.reload = true;
    else if (this.phase === 'running') this.requestReload();
  };

  private handleSignals(): void {
    process.on('SIGTERM', this.onStopSignal);
    process.on('SIGINT', this.onStopSignal);
    process.on('SIGHUP', this.onReloadSignal);
  }

  private removeSignalHandlers(): void {
    process.removeListener('SIGTERM', this.onStopSignal);
    process.removeListener('SIGINT', this.onStopSignal);
    process.removeListener('SIGHUP', this.onReloadSignal);
  }

  /** Asks one worker; rejects if it does not answer within `timeoutMs` or exits first. */
  private ask(worker: Worker, question: Question, timeoutMs: number): Promise<unknown> {
    const id = this.nextQuestion++;
    return new Promise((resolve, reject) => {
      if (!worker.isConnected()) return reject(new Error(`worker ${worker.process.pid} is not connected`));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not answer '${question}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { worker, resolve, reject, timer });
      worker.send({ sniffmux: 'ask', id, question } satisfies ToWorker);
    });
  }

  /** The workers serving now (ready and connected). */
  private live(): { slot: Slot; worker: Worker }[] {
    return this.slots.flatMap((slot) => (slot.worker && slot.readyAt > 0 && slot.worker.isConnected() ? [{ slot, worker: slot.worker }] : []));
  }

  /** Asks every live worker; those that fail to answer are logged and left out. */
  private async askAll(question: Question, timeoutMs: number): Promise<{ slot: Slot; worker: Worker; value: unknown }[]> {
    const live = this.live();
    const settled = await Promise.allSettled(live.map(({ worker }) => this.ask(worker, question, timeoutMs)));
    const answers: { slot: Slot; worker: Worker; value: unknown }[] = [];
    settled.forEach((result, i) => {
      const { slot, worker } = live[i]!;
      if (result.status === 'fulfilled') answers.push({ slot, worker, value: result.value });
      else this.logger.warn({ worker: slot.id, workerPid: worker.process.pid, error: (result.reason as Error).message }, `worker did not answer: ${question}`);
    });
    return answers;
  }

  /** /status and /status.json: every worker's snapshot, added up. */
  async status(): Promise<StatusSnapshot> {
    const answers = await this.askAll('status', ADMIN_TIMEOUT_MS);
    if (answers.length === 0) throw new Error('no worker answered');
    return mergeStatus(
      answers.map(({ slot, value }) => ({ id: slot.id, snapshot: value as StatusSnapshot })),
      { pid: process.pid, startedAt: this.startedAt },
    );
  }

  /** /metrics: every worker's metrics, added up by prom-client's AggregatorRegistry, then the primary's own. */
  async metrics(): Promise<string> {
    const answers = await this.askAll('metrics', ADMIN_TIMEOUT_MS);
    return aggregateMetrics(
      answers.map(({ value }) => value as MetricsJson),
      { live: answers.length, configured: this.slots.length, restarts: this.restarts },
    );
  }

  private requestReload(): void {
    // One reload at a time, in the order the signals came.
    this.reloading = this.reloading.then(() => this.reload());
  }

  /**
   * SIGHUP: the file is checked here first, so an invalid one is logged once
   * and no worker is bothered; then every worker reads it and swaps it in.
   */
  private async reload(): Promise<void> {
    const source = this.config.source;
    if (source === null) return;
    let config: Config;
    try {
      config = loadConfigFile(source);
    } catch (error) {
      const problems = error instanceof SniffmuxError ? error.problems : [String(error)];
      this.logger.error({ config: source, problems }, 'reload failed: keeping the running config');
      return;
    }
    if (config.global.workers !== this.slots.length) {
      this.logger.warn({ workers: this.slots.length, configured: config.global.workers }, 'global.workers changes on restart only: keeping the running workers');
    }
    if (JSON.stringify(config.admin) !== JSON.stringify(this.config.admin)) {
      this.logger.warn('admin changes on restart only: the admin listener stays as it is');
    }
    const askedAt = Date.now();
    const live = this.live();
    const settled = await Promise.allSettled(live.map(({ worker }) => this.ask(worker, 'reload', RELOAD_TIMEOUT_MS)));
    const failed: { worker: number; workerPid: number | undefined; problems: readonly string[] }[] = [];
    settled.forEach((result, i) => {
      const { slot, worker } = live[i]!;
      const problems = result.status === 'fulfilled' ? (result.value as ReloadAnswer) : [(result.reason as Error).message];
      if (problems !== null) failed.push({ worker: slot.id, workerPid: worker.process.pid, problems });
    });
    if (failed.length === 0) {
      this.config = config;
      this.reloadedAt = askedAt;
      this.logger.info({ config: source, frontends: config.frontends.length, backends: config.backends.length, workers: live.length }, 'config reloaded');
    } else if (failed.length === live.length) {
      this.logger.error({ config: source, problems: failed[0]!.problems }, 'reload failed: keeping the running config');
    } else {
      this.config = config;
      this.reloadedAt = askedAt;
      this.logger.error({ config: source, failed }, 'reload failed in some workers: they keep the running config');
    }
  }

  /**
   * SIGTERM/SIGINT: every worker stops accepting and drains for up to
   * global.grace; then the admin listener closes and the primary exits 0. A
   * second signal kills the workers and exits 1 at once.
   */
  private stop(signal: NodeJS.Signals): void {
    if (this.phase === 'stopping') {
      this.logger.warn({ signal }, 'second stop signal: exiting now');
      for (const slot of this.slots) slot.worker?.process.kill('SIGKILL');
      process.exit(1);
    }
    this.phase = 'stopping';
    const grace = this.config.global.grace;
    for (const slot of this.slots) {
      if (slot.restart) clearTimeout(slot.restart);
      slot.restart = null;
    }
    const workers = this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
    this.logger.info({ signal, workers: workers.length, grace }, 'stopping: draining connections');
    for (const worker of workers) {
      if (worker.isConnected()) worker.send({ sniffmux: 'stop' } satisfies ToWorker);
      else worker.process.kill('SIGKILL');
    }
    const deadline = setTimeout(() => {
      for (const slot of this.slots) {
        if (!slot.worker) continue;
        this.logger.warn({ worker: slot.id, workerPid: slot.worker.process.pid }, 'worker did not stop in time: killing it');
        slot.worker.process.kill('SIGKILL');
      }
    }, grace + STOP_MARGIN_MS);
    void Promise.all(this.slots.map((s) => s.exited))
      .then(async () => {
        clearTimeout(deadline);
        // Last, so the status page can be watched while the workers drain.
        await this.admin?.stop();
      })
      .then(() => {
        this.logger.info('stopped');
        process.exit(0);
      });
  }
}

/** `sniffmux run` with `global.workers` > 1. */
export async function runPrimary(config: Config, logger: Logger): Promise<ClusterPrimary> {
  const primary = new ClusterPrimary(config, logger);
  await primary.start();
  return primary;
}
