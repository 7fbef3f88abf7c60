import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Aggregator, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { buildStatus, type StatusSnapshot, type StatusSource } from './status-json.js';
import { protocolLabel } from '../observe/stats.js';

/** Sniffing decides in well under a millisecond when bytes arrive; `none` waits the whole inspect delay. */
const SNIFF_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

let processRegistry: Registry | null = null;

/**
 * Node's process metrics (CPU, memory, event-loop lag) describe the process,
 * not an instance: registered once, on a registry of their own, and appended
 * to every instance's /metrics.
 */
function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * /metrics for one instance, on its own registry (never prom-client's global
 * one, so several instances in one process do not collide). Everything but
 * the sniff-time histogram is read at scrape time from the same snapshot
 * /status.json shows, so the two always agree.
 */
export class Metrics {
  readonly registry = new Registry();
  private snapshot: StatusSnapshot | null = null;

  constructor(private readonly source: StatusSource) {
    const registers = [this.registry];
    // Counters read at scrape time are reset and re-added: the numbers live in Stats and ServerState, not here.
    const metrics = this;

    new Gauge({
      name: 'sniffmux_build_info',
      help: 'Always 1; the labels say which sniffmux this is.',
      labelNames: ['version'],
      registers,
      // Across cluster workers: the same value, once.
      aggregator: 'first',
      collect() {
        this.reset();
        this.set({ version: metrics.current().sniffmux.version }, 1);
      },
    });

    new Counter({
      name: 'sniffmux_connections_total',
      help: 'Finished client connections by frontend, sniffed protocol and termination.',
      labelNames: ['frontend', 'protocol', 'termination'],
      registers,
      collect() {
        this.reset();
        for (const fe of source.frontends) {
          for (const { protocol, termination, count } of source.stats.frontend(fe.name).byOutcome.values()) {
            this.inc({ frontend: fe.name, protocol, termination }, count);
          }
        }
      },
    });

    new Gauge({
      name: 'sniffmux_active_connections',
      help: 'Client connections open now, by frontend.',
      labelNames: ['frontend'],
      registers,
      collect() {
        this.reset();
        for (const fe of metrics.current().frontends) this.set({ frontend: fe.name }, fe.active);
      },
    });

    for (const direction of ['in', 'out'] as const) {
      const field = direction === 'in' ? 'bytesIn' : 'bytesOut';
      const what = direction === 'in' ? 'Bytes received from clients' : 'Bytes sent to clients';
      new Counter({
        name: `sniffmux_frontend_bytes_${direction}_total`,
        help: `${what}, by frontend (open connections included).`,
        labelNames: ['frontend'],
        registers,
        collect() {
          this.reset();
          for (const fe of metrics.current().frontends) this.inc({ frontend: fe.name }, fe[field]);
        },
      });
      new Counter({
        name: `sniffmux_backend_bytes_${direction}_total`,
        help: `${what} on connections routed to a backend, by backend (open connections included).`,
        labelNames: ['backend'],
        registers,
        collect() {
          this.reset();
          for (const be of metrics.current().backends) this.inc({ backend: be.name }, be[field]);
        },
      });
      new Counter({
        name: `sniffmux_server_bytes_${direction}_total`,
        help: `${what} on connections spliced to a server, by server (open connections included).`,
        labelNames: ['backend', 'server'],
        registers,
        collect() {
          this.reset();
          for (const be of metrics.current().backends) {
            for (const s of be.servers) this.inc({ backend: be.name, server: s.name }, s[field]);
          }
        },
      });
    }

    const sniff = new Histogram({
      name: 'sniffmux_sniff_duration_seconds',
      help: 'Time from accept to the routing decision, by frontend.',
      labelNames: ['frontend', 'protocol'],
      buckets: SNIFF_BUCKETS,
      registers,
    });
    source.stats.onRecord((record) => {
      if (record.protocol !== null) sniff.observe({ frontend: record.frontend, protocol: protocolLabel(record) }, record.timings.sniff / 1000);
    });

    // Across cluster workers (each runs its own checks): up only while every worker has it up, as /status.json says.
    this.serverGauge(
      'sniffmux_server_up',
      'Whether the server takes new connections (1) or is down after failed health checks (0).',
      (s) => (s.state === 'up' ? 1 : 0),
      'min',
    );
    this.serverGauge('sniffmux_server_active_connections', 'Connections to the server open now (connecting included).', (s) => s.active);
    this.serverCounter('sniffmux_server_connections_total', 'Connections established to the server.', (s) => s.total);
    this.serverCounter('sniffmux_server_connect_failures_total', 'Connects to the server that failed or timed out.', (s) => s.failures);

    new Gauge({
      name: 'sniffmux_backend_queue_length',
      help: 'Connections waiting for a server slot (per-server maxconn), by backend.',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        for (const be of metrics.current().backends) this.set({ backend: be.name }, be.queue);
      },
    });

    new Counter({
      name: 'sniffmux_health_checks_total',
      help: 'Health checks by server and result (pass or fail).',
      labelNames: ['backend', 'server', 'result'],
      registers,
      collect() {
        this.reset();
        for (const be of metrics.current().backends) {
          for (const s of be.servers) {
            if (s.check === null) continue;
            this.inc({ backend: be.name, server: s.name, result: 'pass' }, s.check.passes);
            this.inc({ backend: be.name, server: s.name, result: 'fail' }, s.check.fails);
          }
        }
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition: this instance's metrics, then the process's. */
  async render(): Promise<string> {
    this.snapshot = null;
    const own = await this.registry.metrics();
    return `${own}\n${await processMetrics().metrics()}`;
  }

  /**
   * The same metrics as data (prom-client's JSON form), for a cluster
   * primary to add up with those of the other workers (`aggregateMetrics`).
   */
  async json(): Promise<MetricsJson> {
    this.snapshot = null;
    return [...(await this.registry.getMetricsAsJSON()), ...(await processMetrics().getMetricsAsJSON())];
  }

  /** One snapshot per scrape, built by the first metric that needs it. */
  private current(): StatusSnapshot {
    return (this.snapshot ??= buildStatus(this.source));
  }

  private serverGauge(
    name: string,
    help: string,
    value: (s: StatusSnapshot['backends'][number]['servers'][number]) => number,
    aggregator: Aggregator = 'sum',
  ): void {
    const metrics = this;
    new Gauge({
      name,
      help,
      labelNames: ['backend', 'server'],
      registers: [this.registry],
      aggregator,
      collect() {
        this.reset();
        for (const be of metrics.current().backends) for (const s of be.servers) this.set({ backend: be.name, server: s.name }, value(s));
      },
    });
  }

  private serverCounter(name: string, help: string, value: (s: StatusSnapshot['backends'][number]['servers'][number]) => number): void {
    const metrics = this;
    new Counter({
      name,
      help,
      labelNames: ['backend', 'server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const be of metrics.current().backends) for (const s of be.servers) this.inc({ backend: be.name, server: s.name }, value(s));
      },
    });
  }
}

/** One process's metrics as prom-client JSON (what `Metrics.json` returns, and what crosses cluster IPC). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/**
 * /metrics of a cluster: the workers' metrics added up by prom-client's
 * AggregatorRegistry (counters, histograms and most gauges summed; a
 * metric's `aggregator` says otherwise, e.g. `min` for sniffmux_server_up),
 * then the primary's own lines.
 */
export async function aggregateMetrics(workers: readonly MetricsJson[], primary: { live: number; configured: number; restarts: number }): Promise<string> {
  const registry = AggregatorRegistry.aggregate(workers as MetricsJson[]);
  const own = new Registry();
  const workersGauge = new Gauge({
    name: 'sniffmux_workers',
    help: 'Worker processes: configured (global.workers) and live (answering this scrape).',
    labelNames: ['state'],
    registers: [own],
  });
  workersGauge.set({ state: 'configured' }, primary.configured);
  workersGauge.set({ state: 'live' }, primary.live);
  new Counter({ name: 'sniffmux_worker_restarts_total', help: 'Workers that died and were replaced.', registers: [own] }).inc(primary.restarts);
  return `${await registry.metrics()}\n${await own.metrics()}`;
}
