/**
 * Kept-alive connections to servers: one http.Agent per server of a backend,
 * whose connections are made by connectTo (connect timeout, re-encryption)
 * instead of net.connect. Idle connections are kept for FREE_SOCKET_IDLE_MS,
 * or less when a server announces `Keep-Alive: timeout=N` (Node's agent reads it).
 *
 * A backend that sends a PROXY header gives each client connection its own
 * agents: the header names one client, so its server connections cannot be
 * shared with another (HAProxy marks such connections private too).
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import { connectTo } from '../backend/connect.js';

/** Below the 5 s keep-alive timeout of Node's own servers (and most others), so a server rarely closes one we are reusing. */
export const FREE_SOCKET_IDLE_MS = 4_000;

export class ServerAgent extends http.Agent {
  constructor(
    private readonly pool: BackendPool,
    private readonly server: ServerState,
    private readonly proxyHeader: Buffer | null,
  ) {
    super({
      keepAlive: true,
      keepAliveMsecs: 1_000,
      maxSockets: server.config.maxconn > 0 ? server.config.maxconn : Infinity,
      maxFreeSockets: 256,
      scheduling: 'lifo',
      timeout: FREE_SOCKET_IDLE_MS,
    });
  }

  /** Asynchronous: the agent takes the socket through the callback once it is connected (and the TLS handshake done). */
  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    connectTo(this.server.config.address, this.pool.config.timeouts.connect, this.pool.tls).then(
      (socket) => {
        if (this.proxyHeader) socket.write(this.proxyHeader);
        callback?.(null, socket);
      },
      (error: Error) => callback?.(error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

const shared = new WeakMap<BackendPool, Map<ServerState, ServerAgent>>();

/** The agent all client connections share for this server of this backend. */
export function sharedAgent(pool: BackendPool, server: ServerState): ServerAgent {
  let agents = shared.get(pool);
  if (!agents) {
    agents = new Map();
    shared.set(pool, agents);
  }
  let agent = agents.get(server);
  if (!agent) {
    agent = new ServerAgent(pool, server, null);
    agents.set(server, agent);
  }
  return agent;
}
