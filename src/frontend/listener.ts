import net from 'node:net';
import { SniffmuxError } from '../errors.js';
import type { Listen } from '../config/types.js';

/**
 * Binds one listen address. Start-up errors become one line naming the
 * address (SPEC §1): in use, not permitted, or anything else the OS says.
 */
export function bindListener(
  listen: Listen,
  onConnection: (socket: net.Socket) => void,
  onAcceptError: (error: NodeJS.ErrnoException) => void = () => {},
): Promise<net.Server> {
  // Unread until the instance starts on the connection (runtime/fair-start.ts).
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, onConnection);
  const { host, port, text } = listen.address;
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(text, error)));
    server.listen({ host: host === '' ? undefined : host, port, backlog: 4096 }, () => {
      server.removeAllListeners('error');
      // After binding, accept errors (EMFILE and the like) are transient: Node keeps listening, and the caller logs them.
      server.on('error', onAcceptError);
      resolve(server);
    });
  });
}

export function listenError(address: string, error: NodeJS.ErrnoException): SniffmuxError {
  switch (error.code) {
    case 'EADDRINUSE':
      return new SniffmuxError('SMX_ERR_ADDR_IN_USE', `cannot listen on ${address}: address already in use`);
    case 'EACCES':
    case 'EPERM':
      return new SniffmuxError(
        'SMX_ERR_ADDR_DENIED',
        `cannot listen on ${address}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`,
      );
    case 'EADDRNOTAVAIL':
      return new SniffmuxError('SMX_ERR_LISTEN', `cannot listen on ${address}: no such local address`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new SniffmuxError('SMX_ERR_LISTEN', `cannot listen on ${address}: host name does not resolve`);
    default:
      return new SniffmuxError('SMX_ERR_LISTEN', `cannot listen on ${address}: ${error.message}`);
  }
}

/** The address a bound server actually listens on (the port when 0 was asked). */
export function boundAddress(server: net.Server): { host: string; port: number } {
  const address = server.address();
  if (address && typeof address === 'object') return { host: address.address, port: address.port };
  throw new Error('listener is not bound');
}
