import type { BackendStatus, FrontendStatus, ServerStatus, StatusSnapshot, Traffic, WorkerStatus } from './status-json.js';

/** One worker's /status.json snapshot, as it answered the primary. */
export interface WorkerSnapshot {
  readonly id: number;
  readonly snapshot: StatusSnapshot;
}

/**
 * /status.json of a cluster: the workers' snapshots added up, so a cluster
 * reads like one big process. Every worker runs the same config, so
 * frontends, backends and servers are matched by name (in the order of the
 * first worker; a name only some workers have, as while a reload is being
 * applied, is appended).
 *
 * - Counts, bytes, errors, terminations, protocols, queues: summed.
 * - Limits (`maxconn`): per worker in the config, so the cluster's is the sum.
 * - A server is `up` only while every worker has it up (each worker runs its
 *   own health checks), as `sniffmux_server_up` (aggregated with `min`) says;
 *   its last check is the most recent of any worker.
 * - `sniffmux` describes the primary (pid, start, uptime); `workers` lists
 *   the workers that answered.
 */
export function mergeStatus(
  parts: readonly WorkerSnapshot[],
  primary: { readonly pid: number; readonly startedAt: number },
  now = Date.now(),
): StatusSnapshot {
  const snapshots = parts.map((p) => p.snapshot);
  const first = snapshots[0];
  const workers: WorkerStatus[] = parts.map(({ id, snapshot }) => ({
    id,
    pid: snapshot.sniffmux.pid,
    startedAt: snapshot.sniffmux.startedAt,
    uptime: snapshot.sniffmux.uptime,
    active: snapshot.connections.active,
    total: snapshot.frontends.reduce((n, f) => n + f.total, 0),
  }));
  return {
    sniffmux: {
      version: first?.sniffmux.version ?? 'unknown',
      pid: primary.pid,
      startedAt: new Date(primary.startedAt).toISOString(),
      uptime: Math.round((now - primary.startedAt) / 1000),
      now: new Date(now).toISOString(),
    },
    connections: {
      active: sum(snapshots, (s) => s.connections.active),
      maxconn: sum(snapshots, (s) => s.connections.maxconn),
    },
    frontends: byName(snapshots.map((s) => s.frontends)).map(mergeFrontend),
    backends: byName(snapshots.map((s) => s.backends)).map(mergeBackend),
    workers,
  };
}

function mergeFrontend(list: readonly FrontendStatus[]): FrontendStatus {
  const f = list[0]!;
  return {
    name: f.name,
    listen: f.listen.map((l, i) => ({
      address: l.address,
      // Workers share their listeners: any worker's bound address is the cluster's.
      bound: list.map((x) => x.listen[i]?.bound ?? null).find((b) => b !== null) ?? null,
    })),
    active: sum(list, (x) => x.active),
    total: sum(list, (x) => x.total),
    maxconn: sum(list, (x) => x.maxconn),
    ...mergeTraffic(list),
    protocols: addCounts(list.map((x) => x.protocols)),
  };
}

function mergeBackend(list: readonly BackendStatus[]): BackendStatus {
  const b = list[0]!;
  const servers = byName(list.map((x) => x.servers)).map(mergeServer);
  const regular = servers.filter((s) => !s.backup);
  const regularUp = regular.filter((s) => s.state === 'up').length;
  return {
    name: b.name,
    mode: b.mode,
    balance: b.balance,
    state: regularUp === regular.length ? 'up' : regularUp > 0 ? 'degraded' : 'down',
    serversUp: servers.filter((s) => s.state === 'up').length,
    active: sum(list, (x) => x.active),
    total: sum(list, (x) => x.total),
    queue: sum(list, (x) => x.queue),
    ...mergeTraffic(list),
    healthCheck: b.healthCheck,
    servers,
  };
}

function mergeServer(list: readonly ServerStatus[]): ServerStatus {
  const s = list[0]!;
  const checks = list.map((x) => x.check).filter((c) => c !== null);
  const lasts = checks.map((c) => c.last).filter((l) => l !== null);
  const latest = lasts.reduce<(typeof lasts)[number] | null>((best, l) => (best === null || l.at > best.at ? l : best), null);
  return {
    name: s.name,
    address: s.address,
    state: list.every((x) => x.state === 'up') ? 'up' : 'down',
    backup: s.backup,
    weight: s.weight,
    maxconn: sum(list, (x) => x.maxconn),
    active: sum(list, (x) => x.active),
    total: sum(list, (x) => x.total),
    failures: sum(list, (x) => x.failures),
    ...mergeTraffic(list),
    check:
      checks.length === 0
        ? null
        : {
            last: latest,
            passes: sum(checks, (c) => c.passes),
            fails: sum(checks, (c) => c.fails),
            pending: Math.max(...checks.map((c) => c.pending)),
          },
  };
}

function mergeTraffic(list: readonly Traffic[]): Traffic {
  return {
    bytesIn: sum(list, (x) => x.bytesIn),
    bytesOut: sum(list, (x) => x.bytesOut),
    errors: sum(list, (x) => x.errors),
    terminations: addCounts(list.map((x) => x.terminations)),
  };
}

/** Items of several lists grouped by name, in first-seen order. */
function byName<T extends { readonly name: string }>(lists: readonly (readonly T[])[]): T[][] {
  const groups = new Map<string, T[]>();
  for (const list of lists) {
    for (const item of list) {
      const group = groups.get(item.name);
      if (group) group.push(item);
      else groups.set(item.name, [item]);
    }
  }
  return [...groups.values()];
}

function addCounts(records: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const record of records) for (const [key, n] of Object.entries(record)) out[key] = (out[key] ?? 0) + n;
  return out;
}

function sum<T>(items: readonly T[], value: (t: T) => number): number {
  return items.reduce((total, item) => total + value(item), 0);
}
