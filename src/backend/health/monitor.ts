import type { BackendPool } from '../pool.js';
import type { ServerState } from '../server-state.js';
import type { Logger } from '../../observe/log.js';
import { HealthChecker, type Probe } from './checker.js';
import { httpProbe } from './http.js';
import { tcpProbe } from './tcp.js';

/** The health checks of an instance: one checker per server of every backend with `healthCheck`. */
export class HealthMonitor {
  private readonly checkers = new Map<ServerState, HealthChecker>();

  constructor(pools: Iterable<BackendPool>, logger: Logger) {
    for (const pool of pools) {
      const check = pool.config.healthCheck;
      if (check === null) continue;
      for (const server of pool.servers) {
        const probe: Probe = check.type === 'http' ? httpProbe(server.config.address, check) : tcpProbe(server.config.address);
        // A server back up can take connections waiting in the queue right away, not at the next release.
        const onTransition = (up: boolean): void => {
          if (up) pool.serveQueue();
        };
        this.checkers.set(server, new HealthChecker(pool.name, server, check, probe, logger, onTransition));
      }
    }
  }

  start(): void {
    for (const checker of this.checkers.values()) checker.start();
  }

  stop(): void {
    for (const checker of this.checkers.values()) checker.stop();
  }

  /** The checker of a server, or null when its backend has no health check. */
  checkerFor(server: ServerState): HealthChecker | null {
    return this.checkers.get(server) ?? null;
  }
}
