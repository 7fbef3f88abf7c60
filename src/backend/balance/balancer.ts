import type { ServerState } from '../server-state.js';

/**
 * A balancing algorithm: picks one of the candidates (all available, none
 * already tried for this connection, never empty). One file per algorithm,
 * as HAProxy's lb_*.c.
 */
export interface Balancer {
  pick(candidates: readonly ServerState[], clientIp: string): ServerState;
}
