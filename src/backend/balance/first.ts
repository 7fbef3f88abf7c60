import type { Balancer } from './balancer.js';
import type { ServerState } from '../server-state.js';

/** The first listed server with a free slot: fills servers one after another (HAProxy `balance first`). */
export class First implements Balancer {
  pick(candidates: readonly ServerState[]): ServerState {
    return candidates[0]!;
  }
}
