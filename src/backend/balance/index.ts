import type { BalanceAlgorithm } from '../../config/types.js';
import type { Balancer } from './balancer.js';
import { First } from './first.js';
import { LeastConn } from './leastconn.js';
import { RoundRobin } from './roundrobin.js';
import { SourceHash } from './source.js';

export type { Balancer };

/** The one table of balancing algorithms. */
const ALGORITHMS: Record<BalanceAlgorithm, () => Balancer> = {
  roundrobin: () => new RoundRobin(),
  leastconn: () => new LeastConn(),
  source: () => new SourceHash(),
  first: () => new First(),
};

export function createBalancer(algorithm: BalanceAlgorithm): Balancer {
  return ALGORITHMS[algorithm]();
}
