import type { Balancer } from './balancer.js';
import type { ServerState } from '../server-state.js';

/** Fewest active connections per unit of weight; ties go to the first listed. */
export class LeastConn implements Balancer {
  pick(candidates: readonly ServerState[]): ServerState {
    let best = candidates[0]!;
    for (const server of candidates) {
      if (server.active * best.config.weight < best.active * server.config.weight) best = server;
    }
    return best;
  }
}
