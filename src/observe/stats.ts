import type { ConnectionRecord } from './record.js';
import type { Termination } from './termination.js';

/**
 * Terminations that mean something went wrong (for the "errors" columns). A
 * close by either side, a served policy request and our own shutdown are the
 * normal ends of a connection.
 */
export const ERROR_TERMINATIONS: ReadonlySet<Termination> = new Set<Termination>([
  'client-timeout',
  'server-timeout',
  'connect-timeout',
  'connect-error',
  'no-server',
  'queue-timeout',
  'maxconn',
  'tls-error',
  'bad-request',
]);

/** Counts of finished connections, for a frontend, a backend or one server. */
export class TrafficCounters {
  connections = 0;
  bytesIn = 0;
  bytesOut = 0;
  errors = 0;
  readonly terminations = new Map<Termination, number>();

  add(record: ConnectionRecord): void {
    this.connections++;
    this.bytesIn += record.bytesIn;
    this.bytesOut += record.bytesOut;
    if (ERROR_TERMINATIONS.has(record.termination)) this.errors++;
    increment(this.terminations, record.termination);
  }
}

export class FrontendCounters extends TrafficCounters {
  /** Finished connections by protocol and termination, the labels of sniffmux_connections_total. */
  readonly byOutcome = new Map<string, { protocol: string; termination: Termination; count: number }>();
  readonly protocols = new Map<string, number>();

  override add(record: ConnectionRecord): void {
    super.add(record);
    const protocol = protocolLabel(record);
    increment(this.protocols, protocol);
    const key = `${protocol} ${record.termination}`;
    const entry = this.byOutcome.get(key);
    if (entry) entry.count++;
    else this.byOutcome.set(key, { protocol, termination: record.termination, count: 1 });
  }
}

/** `unknown` when the connection ended before the sniffer had anything to say. */
export function protocolLabel(record: Pick<ConnectionRecord, 'protocol'>): string {
  return record.protocol ?? 'unknown';
}

function increment<K>(map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/**
 * What the connection log lines add up to, kept in memory for /status and
 * /metrics: one record per finished connection, fed by
 * FrontendRuntime.recordDone. Bytes of connections still open are not here
 * (the status snapshot adds them), so a counter only ever grows.
 */
export class Stats {
  private readonly frontendCounters = new Map<string, FrontendCounters>();
  private readonly backendCounters = new Map<string, TrafficCounters>();
  private readonly serverCounters = new Map<string, TrafficCounters>();
  private readonly listeners: ((record: ConnectionRecord) => void)[] = [];

  record(record: ConnectionRecord): void {
    getOrCreate(this.frontendCounters, record.frontend, () => new FrontendCounters()).add(record);
    if (record.backend !== null) {
      getOrCreate(this.backendCounters, record.backend, () => new TrafficCounters()).add(record);
      if (record.server !== null) getOrCreate(this.serverCounters, serverKey(record.backend, record.server), () => new TrafficCounters()).add(record);
    }
    for (const listener of this.listeners) listener(record);
  }

  /** Called with every record after it is counted (metrics observe the sniff time here). */
  onRecord(listener: (record: ConnectionRecord) => void): void {
    this.listeners.push(listener);
  }

  frontend(name: string): FrontendCounters {
    return this.frontendCounters.get(name) ?? EMPTY_FRONTEND;
  }

  backend(name: string): TrafficCounters {
    return this.backendCounters.get(name) ?? EMPTY;
  }

  server(backend: string, server: string): TrafficCounters {
    return this.serverCounters.get(serverKey(backend, server)) ?? EMPTY;
  }
}

// Read-only stand-ins for "nothing counted yet", so readers never create entries.
const EMPTY = new TrafficCounters();
const EMPTY_FRONTEND = new FrontendCounters();

function getOrCreate<V>(map: Map<string, V>, key: string, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) map.set(key, (value = create()));
  return value;
}

// Names are [A-Za-z0-9_.-] (schema), so a space cannot be part of either.
function serverKey(backend: string, server: string): string {
  return `${backend} ${server}`;
}
