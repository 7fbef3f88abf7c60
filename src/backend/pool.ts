import type { Backend, Server } from '../config/types.js';
import { createBalancer, type Balancer } from './balance/index.js';
import { ServerState } from './server-state.js';
import { backendTlsOptions, type BackendTlsOptions } from '../tls/client.js';
import { cidrSetHas, compileCidrs, type CidrSet } from '../route/cidr.js';

/** The outcome of asking a backend for a server slot. */
export type Acquired =
  | { readonly kind: 'server'; readonly server: ServerState }
  | { readonly kind: 'no-server' }
  /** Every server that could take it is full and `maxqueue` connections already wait. */
  | { readonly kind: 'queue-full' }
  | { readonly kind: 'queue-timeout' };

interface Waiter {
  readonly tried: ReadonlySet<ServerState>;
  readonly clientIp: string;
  readonly resolve: (acquired: Acquired) => void;
  readonly timer: NodeJS.Timeout;
}

const NO_SERVER: Acquired = Object.freeze({ kind: 'no-server' });
const QUEUE_FULL: Acquired = Object.freeze({ kind: 'queue-full' });
const QUEUE_TIMEOUT: Acquired = Object.freeze({ kind: 'queue-timeout' });

/** Why a connection turned away by a full queue ends as no-server (SPEC has no word of its own for it). */
export function queueFullReason(pool: BackendPool): string {
  return `every server of backend ${pool.name} is at its maxconn and its queue is full (maxqueue ${pool.config.maxqueue})`;
}

/**
 * A backend at run time: its servers' live state, its balancer and its queue.
 * Backup servers are candidates only when no regular server is. When every
 * server that is up is at its `maxconn`, connections wait in a FIFO queue for
 * up to `timeouts.queue`, and each released slot goes to the oldest waiter.
 * At most `maxqueue` wait: more are turned away at once rather than held.
 */
export class BackendPool {
  readonly servers: readonly ServerState[];
  /** Re-encryption settings, prepared once; null for plain TCP. */
  readonly tls: BackendTlsOptions | null;
  /** http.trustForwarded, compiled once. */
  private readonly forwardingPeers: CidrSet;
  private readonly balancer: Balancer;
  private readonly queue: Waiter[] = [];

  /**
   * `previous` is the same backend before a reload: its servers that did not
   * change are kept as they are, with their health state and open connections.
   */
  constructor(
    readonly config: Backend,
    previous?: BackendPool,
  ) {
    this.servers = config.servers.map((s) => previous?.unchanged(s) ?? new ServerState(s));
    this.balancer = createBalancer(config.balance);
    this.tls = config.tls ? backendTlsOptions(config.tls) : null;
    this.forwardingPeers = compileCidrs(config.http.trustForwarded);
  }

  /** Are this client's forwarding fields (X-Forwarded-For and the like) to be believed (http.trustForwarded)? */
  trustsForwarding(clientIp: string): boolean {
    return cidrSetHas(this.forwardingPeers, clientIp);
  }

  get name(): string {
    return this.config.name;
  }

  /** This pool's state for a server configured exactly like `server`, if any. */
  private unchanged(server: Server): ServerState | undefined {
    return this.servers.find(
      (s) =>
        s.config.name === server.name &&
        s.config.address.text === server.address.text &&
        s.config.maxconn === server.maxconn &&
        s.config.weight === server.weight &&
        s.config.backup === server.backup,
    );
  }

  /** Connections waiting for a server slot now. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Reserves a slot on a server (counted in its `active`) for a new
   * connection, waiting in the queue when every server that could take it is
   * full. Every reserved slot must be given back with release().
   */
  acquire(tried: ReadonlySet<ServerState>, clientIp: string): Promise<Acquired> | Acquired {
    const server = this.acquireNow(tried, clientIp);
    if (server) return { kind: 'server', server };
    const couldServe = this.servers.some((s) => s.up && !tried.has(s));
    if (!couldServe) return NO_SERVER;
    if (this.queue.length >= this.config.maxqueue) return QUEUE_FULL;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        tried,
        clientIp,
        resolve,
        timer: setTimeout(() => {
          this.queue.splice(this.queue.indexOf(waiter), 1);
          resolve(QUEUE_TIMEOUT);
        }, this.config.timeouts.queue),
      };
      this.queue.push(waiter);
    });
  }

  /** A slot on a server free now (counted in its `active`, to release()), or null: no queueing here (acquire() does). */
  acquireNow(tried: ReadonlySet<ServerState>, clientIp: string): ServerState | null {
    const server = this.pick(tried, clientIp);
    if (server) server.active++;
    return server ?? null;
  }

  /** Gives a slot back and hands it (or any other now free) to the oldest waiters that can use it. */
  release(server: ServerState): void {
    server.active--;
    this.serveQueue();
  }

  /** Hands free slots to the oldest waiters that can use them: after a release, or when a health check brings a server back. */
  serveQueue(): void {
    for (let i = 0; i < this.queue.length; ) {
      const waiter = this.queue[i]!;
      const next = this.pick(waiter.tried, waiter.clientIp);
      if (!next) {
        i++;
        continue;
      }
      next.active++;
      clearTimeout(waiter.timer);
      this.queue.splice(i, 1);
      waiter.resolve({ kind: 'server', server: next });
    }
  }

  /**
   * A server for a new connection, skipping those already tried for it; null
   * when none can take it now. Backup servers stand in only while no regular
   * server is up and untried (down, or refused this connection), as in
   * HAProxy: regular servers that are merely at their maxconn make the
   * connection queue for them instead.
   */
  pick(tried: ReadonlySet<ServerState>, clientIp: string): ServerState | null {
    const regularLeft = this.servers.some((s) => !s.config.backup && s.up && !tried.has(s));
    const candidates = this.candidates(tried, !regularLeft);
    return candidates.length > 0 ? this.balancer.pick(candidates, clientIp) : null;
  }

  private candidates(tried: ReadonlySet<ServerState>, backup: boolean): ServerState[] {
    return this.servers.filter((s) => s.config.backup === backup && s.available && !tried.has(s));
  }
}
