import net from 'node:net';
import tls from 'node:tls';
import type { Address } from '../config/types.js';
import type { BackendTlsOptions } from '../tls/client.js';

export type ConnectFailure = 'connect-timeout' | 'connect-error';

export class ConnectError extends Error {
  constructor(
    readonly kind: ConnectFailure,
    message: string,
  ) {
    super(message);
  }
}

/** This process is out of file descriptors: no fault of the server, and it passes as connections close. */
export function outOfDescriptors(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** How often a connect that found no free descriptor tries again (within its timeout). */
const DESCRIPTOR_RETRY_MS = 50;

type ShortageListener = (error: NodeJS.ErrnoException, address: string) => void;
const shortageListeners = new Set<ShortageListener>();

/**
 * Calls `listener` whenever a connect to a server (or a health check) finds
 * this process out of file descriptors: the one place it shows, since libuv
 * closes the clients it cannot accept without telling Node. Returns the unsubscribe.
 */
export function onDescriptorShortage(listener: ShortageListener): () => void {
  shortageListeners.add(listener);
  return () => shortageListeners.delete(listener);
}

export function reportDescriptorShortage(error: NodeJS.ErrnoException, address: string): void {
  for (const listener of shortageListeners) listener(error, address);
}

/**
 * Opens a connection to a server — plain TCP, or TLS when the backend
 * re-encrypts — failing with `connect-timeout` when it is not established
 * (handshake included) within `timeoutMs`. Half-open is allowed so that a
 * client's FIN can be passed on while the server still answers. When this
 * process has no file descriptor to spare (EMFILE, ENFILE) it waits for one
 * within the same timeout instead of failing: the server is not at fault.
 */
export function connectTo(address: Address, timeoutMs: number, secure: BackendTlsOptions | null = null): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const host = address.host || '127.0.0.1';
    let settled = false;
    let socket: net.Socket | null = null;
    let retry: NodeJS.Timeout | null = null;
    const timer = setTimeout(() => {
      settled = true;
      if (retry) clearTimeout(retry);
      socket?.destroy();
      reject(new ConnectError('connect-timeout', `connect to ${address.text} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const attempt = (): void => {
      retry = null;
      const raw = net.connect({ host, port: address.port, allowHalfOpen: true, noDelay: true });
      const current = secure
        ? tls.connect({
            socket: raw,
            secureContext: secure.secureContext,
            rejectUnauthorized: secure.rejectUnauthorized,
            servername: secure.servername ?? (net.isIP(host) ? undefined : host),
          })
        : raw;
      socket = current;
      const onError = (error: Error): void => {
        if (settled || socket !== current) return;
        current.destroy();
        if (outOfDescriptors(error)) {
          reportDescriptorShortage(error, address.text);
          socket = null;
          retry = setTimeout(attempt, DESCRIPTOR_RETRY_MS);
          return;
        }
        settled = true;
        clearTimeout(timer);
        const tlsFailure = secure && (error as NodeJS.ErrnoException).code !== 'ECONNREFUSED';
        reject(new ConnectError('connect-error', `${tlsFailure ? 'TLS connect to' : 'connect to'} ${address.text} failed: ${error.message}`));
      };
      current.once(secure ? 'secureConnect' : 'connect', () => {
        if (settled || socket !== current) return;
        settled = true;
        clearTimeout(timer);
        current.removeListener('error', onError);
        resolve(current);
      });
      current.on('error', onError);
      // The TCP socket under a TLS one: its errors before the handshake fail the connect; later ones reach the TLS socket as a close.
      if (current !== raw) raw.on('error', onError);
    };
    attempt();
  });
}
