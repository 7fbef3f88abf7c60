import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import type { HealthMonitor } from '../backend/health/monitor.js';
import type { FrontendRuntime } from '../frontend/frontend.js';
import type { ConnectionRecord } from '../observe/record.js';
import type { Stats } from '../observe/stats.js';

/** What the snapshot reads; an Instance is one (kept as an interface so admin does not depend on the runtime). */
export interface StatusSource {
  readonly config: Config;
  readonly frontends: readonly FrontendRuntime[];
  readonly pools: ReadonlyMap<string, BackendPool>;
  readonly stats: Stats;
  readonly health: HealthMonitor;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly activeConnections: number;
  addresses(): readonly { readonly frontend: string; readonly listen: string; readonly host: string; readonly port: number }[];
  /** Connections still open: their bytes so far are added to the finished ones'. */
  openConnections(): Iterable<{ logFields(): ConnectionRecord }>;
}

export interface StatusSnapshot {
  readonly sniffmux: { readonly version: string; readonly pid: number; readonly startedAt: string; readonly uptime: number; readonly now: string };
  readonly connections: { readonly active: number; readonly maxconn: number };
  readonly frontends: FrontendStatus[];
  readonly backends: BackendStatus[];
  /**
   * With `global.workers` > 1 only: the worker processes whose numbers are
   * added up above (`sniffmux.pid` is then the primary's). Absent in a single
   * process.
   */
  readonly workers?: WorkerStatus[];
}

export interface WorkerStatus {
  /** 1..N, the worker's slot; a replaced worker keeps its slot's id. */
  readonly id: number;
  readonly pid: number;
  readonly startedAt: string;
  /** Seconds. */
  readonly uptime: number;
  /** Client connections open in this worker now. */
  readonly active: number;
  /** Connections it accepted since it started. */
  readonly total: number;
}

export interface Traffic {
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Finished connections that ended in an error termination. */
  readonly errors: number;
  /** Finished connections by termination. */
  readonly terminations: Record<string, number>;
}

export interface FrontendStatus extends Traffic {
  readonly name: string;
  readonly listen: { readonly address: string; readonly bound: string | null }[];
  readonly active: number;
  readonly total: number;
  /** 0 = unlimited. */
  readonly maxconn: number;
  /** Finished connections by sniffed protocol. */
  readonly protocols: Record<string, number>;
}

export interface BackendStatus extends Traffic {
  readonly name: string;
  readonly mode: string;
  readonly balance: string;
  /** up: every regular server up; degraded: some; down: none (backups may still serve). */
  readonly state: 'up' | 'degraded' | 'down';
  readonly serversUp: number;
  readonly active: number;
  readonly total: number;
  /** Connections waiting for a server slot (the queue is per backend: any server may take them). */
  readonly queue: number;
  readonly healthCheck: {
    readonly type: string;
    readonly path: string | null;
    readonly expect: string | null;
    readonly interval: number;
    readonly rise: number;
    readonly fall: number;
    readonly timeout: number;
  } | null;
  readonly servers: ServerStatus[];
}

export interface ServerStatus extends Traffic {
  readonly name: string;
  readonly address: string;
  readonly state: 'up' | 'down';
  readonly backup: boolean;
  readonly weight: number;
  /** 0 = unlimited. */
  readonly maxconn: number;
  readonly active: number;
  /** Connections established to it. */
  readonly total: number;
  /** Connects that failed. */
  readonly failures: number;
  /** null when its backend has no health check. */
  readonly check: {
    /** The latest check; null before the first one finished. */
    readonly last: { readonly ok: boolean; readonly detail: string; readonly at: string; readonly age: number; readonly duration: number } | null;
    readonly passes: number;
    readonly fails: number;
    /** Results in a row against the current state: failures while up, successes while down. */
    readonly pending: number;
  } | null;
}

const VERSION = readVersion();

function readVersion(): string {
  try {
    // src/admin and dist/admin are both two levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Bytes of connections still open, by frontend and by backend/server. */
class LiveBytes {
  private readonly totals = new Map<string, { bytesIn: number; bytesOut: number }>();

  constructor(open: Iterable<{ logFields(): ConnectionRecord }>) {
    for (const connection of open) {
      const r = connection.logFields();
      this.add(`f ${r.frontend}`, r);
      if (r.backend !== null) this.add(`b ${r.backend}`, r);
      if (r.backend !== null && r.server !== null) this.add(`s ${r.backend} ${r.server}`, r);
    }
  }

  frontend(name: string): { bytesIn: number; bytesOut: number } {
    return this.totals.get(`f ${name}`) ?? NONE;
  }
  backend(name: string): { bytesIn: number; bytesOut: number } {
    return this.totals.get(`b ${name}`) ?? NONE;
  }
  server(backend: string, server: string): { bytesIn: number; bytesOut: number } {
    return this.totals.get(`s ${backend} ${server}`) ?? NONE;
  }

  private add(key: string, r: ConnectionRecord): void {
    const t = this.totals.get(key) ?? { bytesIn: 0, bytesOut: 0 };
    t.bytesIn += r.bytesIn;
    t.bytesOut += r.bytesOut;
    this.totals.set(key, t);
  }
}
const NONE = { bytesIn: 0, bytesOut: 0 };

function traffic(
  finished: { bytesIn: number; bytesOut: number; errors: number; terminations: ReadonlyMap<string, number> },
  live: { bytesIn: number; bytesOut: number },
): Traffic {
  return {
    bytesIn: finished.bytesIn + live.bytesIn,
    bytesOut: finished.bytesOut + live.bytesOut,
    errors: finished.errors,
    terminations: Object.fromEntries(finished.terminations),
  };
}

/**
 * One consistent picture of the instance for /status, /status.json and
 * /metrics: every number is read once, here.
 */
export function buildStatus(source: StatusSource, now = Date.now()): StatusSnapshot {
  const live = new LiveBytes(source.openConnections());
  const bound = source.addresses();
  return {
    sniffmux: {
      version: VERSION,
      pid: process.pid,
      startedAt: new Date(source.startedAt).toISOString(),
      uptime: Math.round((now - source.startedAt) / 1000),
      now: new Date(now).toISOString(),
    },
    connections: { active: source.activeConnections, maxconn: source.config.global.maxconn },
    frontends: source.frontends.map((fe) => {
      const counters = source.stats.frontend(fe.name);
      const mine = bound.filter((b) => b.frontend === fe.name);
      return {
        name: fe.name,
        listen: fe.config.listen.map((l) => {
          const b = mine.find((m) => m.listen === l.address.text);
          return { address: l.address.text, bound: b ? hostPort(b.host, b.port) : null };
        }),
        active: fe.active,
        total: fe.total,
        maxconn: fe.config.maxconn,
        ...traffic(counters, live.frontend(fe.name)),
        protocols: Object.fromEntries(counters.protocols),
      };
    }),
    backends: [...source.pools.values()].map((pool) => backendStatus(pool, source, live, now)),
  };
}

function backendStatus(pool: BackendPool, source: StatusSource, live: LiveBytes, now: number): BackendStatus {
  const servers = pool.servers.map((s) => serverStatus(pool.name, s, source, live, now));
  const regular = servers.filter((s) => !s.backup);
  const regularUp = regular.filter((s) => s.state === 'up').length;
  const check = pool.config.healthCheck;
  return {
    name: pool.name,
    mode: pool.config.mode,
    balance: pool.config.balance,
    state: regularUp === regular.length ? 'up' : regularUp > 0 ? 'degraded' : 'down',
    serversUp: servers.filter((s) => s.state === 'up').length,
    active: sum(servers, (s) => s.active),
    total: sum(servers, (s) => s.total),
    queue: pool.queued,
    ...traffic(source.stats.backend(pool.name), live.backend(pool.name)),
    healthCheck: check && {
      type: check.type,
      path: check.type === 'http' ? check.path : null,
      expect: check.type === 'http' ? check.expect.text : null,
      interval: check.interval,
      rise: check.rise,
      fall: check.fall,
      timeout: check.timeout,
    },
    servers,
  };
}

function serverStatus(backend: string, server: ServerState, source: StatusSource, live: LiveBytes, now: number): ServerStatus {
  const checker = source.health.checkerFor(server);
  const last = checker?.last ?? null;
  return {
    name: server.name,
    address: server.config.address.text,
    state: server.up ? 'up' : 'down',
    backup: server.config.backup,
    weight: server.config.weight,
    maxconn: server.config.maxconn,
    active: server.active,
    total: server.total,
    failures: server.failures,
    ...traffic(source.stats.server(backend, server.name), live.server(backend, server.name)),
    check: checker && {
      last: last && { ok: last.ok, detail: last.detail, at: new Date(last.at).toISOString(), age: Math.max(0, now - last.at), duration: last.duration },
      passes: checker.passes,
      fails: checker.fails,
      pending: checker.pending,
    },
  };
}

function sum<T>(items: readonly T[], value: (t: T) => number): number {
  return items.reduce((total, item) => total + value(item), 0);
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
