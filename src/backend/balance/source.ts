import { createHash } from 'node:crypto';
import type { Balancer } from './balancer.js';
import type { ServerState } from '../server-state.js';

/**
 * Consistent hashing of the client IP by rendezvous (highest random weight)
 * hashing: every server gets a score hash(server name, client IP) and the
 * highest wins. It depends only on the names, so every sniffmux instance with
 * the same server list sends a client to the same server, and removing a
 * server moves only the clients that were on it.
 */
export class SourceHash implements Balancer {
  pick(candidates: readonly ServerState[], clientIp: string): ServerState {
    let best = candidates[0]!;
    let bestScore = -1;
    for (const server of candidates) {
      const score = weightedScore(server.name, clientIp, server.config.weight);
      if (score > bestScore) {
        best = server;
        bestScore = score;
      }
    }
    return best;
  }
}

/** Weighted rendezvous score: -w / ln(u) with u uniform in (0,1) from the hash. */
function weightedScore(serverName: string, clientIp: string, weight: number): number {
  const digest = createHash('sha256').update(serverName).update('\0').update(clientIp).digest();
  const u = (digest.readUIntBE(0, 6) + 1) / (2 ** 48 + 2);
  return -weight / Math.log(u);
}
