import { performance } from 'node:perf_hooks';
import type { HealthCheck } from '../../config/types.js';
import type { Logger } from '../../observe/log.js';
import type { ServerState } from '../server-state.js';

/** What one check found: `detail` is for people ("HTTP 503 (expected 2xx)", "connect failed: ECONNREFUSED"). */
export interface ProbeOutcome {
  readonly ok: boolean;
  readonly detail: string;
  /** The check could not be made from here (this process is out of file descriptors): it counts neither way. */
  readonly skipped?: boolean;
}

/**
 * One check of one server. It must give up (and free its socket) when
 * `signal` aborts: the checker aborts it on timeout and on stop.
 */
export type Probe = (signal: AbortSignal) => Promise<ProbeOutcome>;

export interface CheckResult extends ProbeOutcome {
  /** When the check finished (epoch ms). */
  readonly at: number;
  /** How long it took, ms. */
  readonly duration: number;
}

/**
 * The rise/fall rule on its own: `fall` consecutive failures take an up
 * server down, `rise` consecutive successes bring a down one back. A result
 * that agrees with the current state resets the opposite count, so only an
 * unbroken run flips the state.
 */
export class RiseFall {
  private run = 0;

  constructor(
    public up: boolean,
    private readonly rise: number,
    private readonly fall: number,
  ) {}

  /** Counts one result; returns the new state when it flips, else null. */
  observe(ok: boolean): 'up' | 'down' | null {
    if (ok === this.up) {
      this.run = 0;
      return null;
    }
    this.run++;
    if (this.run < (this.up ? this.fall : this.rise)) return null;
    this.run = 0;
    this.up = ok;
    return ok ? 'up' : 'down';
  }

  /** Consecutive results against the current state so far (failures while up, successes while down). */
  get pending(): number {
    return this.run;
  }
}

/**
 * Checks one server every `interval` (counted from the end of the previous
 * check, so a slow server is never checked twice at once) and flips its
 * `up` flag by the rise/fall rule; BackendPool.pick skips servers that are
 * down. Each transition is logged once.
 */
export class HealthChecker {
  passes = 0;
  fails = 0;
  last: CheckResult | null = null;
  private readonly state: RiseFall;
  private timer: NodeJS.Timeout | null = null;
  private running: AbortController | null = null;
  private stopped = true;

  constructor(
    readonly backend: string,
    readonly server: ServerState,
    readonly config: HealthCheck,
    private readonly probe: Probe,
    private readonly logger: Logger,
    /** Called after each transition (the pool hands queued connections to a server that came back). */
    private readonly onTransition: (up: boolean) => void = () => {},
  ) {
    // Servers start up (SPEC §4): traffic flows before the first check says otherwise.
    this.state = new RiseFall(server.up, config.rise, config.fall);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    // Spread the first checks over one interval so many servers are not all checked in the same tick.
    this.schedule(Math.floor(Math.random() * this.config.interval));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.running?.abort();
    this.running = null;
  }

  /** Consecutive results against the current state (shown as "2/3 failed" on the status page). */
  get pending(): number {
    return this.state.pending;
  }

  private schedule(delay: number): void {
    // unref: health checks alone must never keep the process alive.
    this.timer = setTimeout(() => void this.check(), delay).unref();
  }

  private async check(): Promise<void> {
    this.timer = null;
    const controller = new AbortController();
    this.running = controller;
    const started = performance.now();
    const timeout = setTimeout(() => controller.abort(), this.config.timeout).unref();
    let outcome: ProbeOutcome;
    try {
      outcome = await this.probe(controller.signal);
    } catch (error) {
      outcome = { ok: false, detail: (error as Error).message };
    } finally {
      clearTimeout(timeout);
    }
    if (this.stopped || this.running !== controller) return;
    this.running = null;
    if (controller.signal.aborted) outcome = { ok: false, detail: `no answer within ${this.config.timeout} ms` };
    if (!outcome.skipped) this.record(outcome, performance.now() - started);
    this.schedule(this.config.interval);
  }

  private record(outcome: ProbeOutcome, duration: number): void {
    this.last = { ...outcome, at: Date.now(), duration: Math.round(duration) };
    if (outcome.ok) this.passes++;
    else this.fails++;
    const flip = this.state.observe(outcome.ok);
    if (flip === null) return;
    this.server.up = flip === 'up';
    const runs = flip === 'up' ? `${this.config.rise} passed checks` : `${this.config.fall} failed checks`;
    const fields = { backend: this.backend, server: this.server.name, reason: `${outcome.detail} (${runs})` };
    if (flip === 'down') this.logger.warn(fields, 'server down');
    else this.logger.info(fields, 'server up');
    this.onTransition(flip === 'up');
  }
}
