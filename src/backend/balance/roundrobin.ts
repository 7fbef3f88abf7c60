import type { Balancer } from './balancer.js';
import type { ServerState } from '../server-state.js';

/**
 * Smooth weighted round robin (as nginx): each pick adds every candidate's
 * weight to its running score, takes the highest, and subtracts the total
 * from the winner. Weights 5,1,1 give a,a,b,a,c,a,a rather than a burst of a's.
 */
export class RoundRobin implements Balancer {
  private readonly score = new WeakMap<ServerState, number>();

  pick(candidates: readonly ServerState[]): ServerState {
    let best = candidates[0]!;
    let bestScore = -Infinity;
    let total = 0;
    for (const server of candidates) {
      const weight = server.config.weight;
      total += weight;
      const score = (this.score.get(server) ?? 0) + weight;
      this.score.set(server, score);
      if (score > bestScore) {
        best = server;
        bestScore = score;
      }
    }
    this.score.set(best, bestScore - total);
    return best;
  }
}
