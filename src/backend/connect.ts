import net from 'node:net';
import tls from 'node:tls';
import type { Address } from '../config/types.js';
import { connectThenSplice, nativeConnect, type ConnectSpliceOwner } from '../splice/native.js';
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

/** The connect-timeout failure, as every connect path names it. */
function timedOut(address: Address, timeoutMs: number): ConnectError {
  return new ConnectError('connect-timeout', `connect to ${address.text} timed out after ${timeoutMs} ms`);
}

/** A connect-error failure: the address, then what the connect said (`connect ECONNREFUSED 127.0.0.1:80`). */
export function connectFailedWith(address: Address, error: Error): ConnectError {
  return new ConnectError('connect-error', `connect to ${address.text} failed: ${error.message}`);
}

/**
 * The connect timeout of a connect the native thread makes and then splices
 * by itself: when it fires the connect is cancelled unless it has connected,
 * so the thread's verdict decides (a connect that made it just as the timer
 * fired is spliced, not cut). failure() names how a failed one failed.
 */
export class NativeConnectTimeout {
  private fired = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly address: Address,
    private readonly timeoutMs: number,
    private readonly job: { cancelConnect(): void },
  ) {
    this.timer = setTimeout(NativeConnectTimeout.fire, timeoutMs, this);
  }

  private static fire(timeout: NativeConnectTimeout): void {
    timeout.fired = true;
    timeout.job.cancelConnect();
  }

  connected(): void {
    clearTimeout(this.timer);
  }

  failure(error: Error): ConnectError {
    clearTimeout(this.timer);
    return this.fired ? timedOut(this.address, this.timeoutMs) : connectFailedWith(this.address, error);
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
 * One try at a connection: calls `succeed` or `fail` once (not synchronously
 * required), and returns how to abandon it (the timeout fired).
 */
type Attempt<T> = (succeed: (value: T) => void, fail: (error: Error) => void) => () => void;

/**
 * Runs connect attempts until one succeeds, fails or `timeoutMs` passes.
 * When this process has no file descriptor to spare (EMFILE, ENFILE) it
 * tries again within the same timeout instead of failing: the server is
 * not at fault.
 */
function connectWithin<T>(address: Address, timeoutMs: number, attempt: Attempt<T>, failure: (error: Error) => string): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let abandon: (() => void) | null = null;
    let retry: NodeJS.Timeout | null = null;
    const timer = setTimeout(() => {
      settled = true;
      if (retry) clearTimeout(retry);
      abandon?.();
      reject(timedOut(address, timeoutMs));
    }, timeoutMs);
    const fail = (error: Error): void => {
      if (settled) return;
      abandon = null;
      if (outOfDescriptors(error)) {
        reportDescriptorShortage(error, address.text);
        retry = setTimeout(start, DESCRIPTOR_RETRY_MS);
        return;
      }
      settled = true;
      clearTimeout(timer);
      reject(new ConnectError('connect-error', failure(error)));
    };
    const succeed = (value: T): void => {
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    const start = (): void => {
      retry = null;
      try {
        abandon = attempt(succeed, fail);
      } catch (error) {
        fail(error as Error);
      }
    };
    start();
  });
}

/**
 * Opens a connection to a server — plain TCP, or TLS when the backend
 * re-encrypts — failing with `connect-timeout` when it is not established
 * (handshake included) within `timeoutMs`. Half-open is allowed so that a
 * client's FIN can be passed on while the server still answers.
 */
export function connectTo(address: Address, timeoutMs: number, secure: BackendTlsOptions | null = null): Promise<net.Socket> {
  const host = address.host || '127.0.0.1';
  const attempt: Attempt<net.Socket> = (succeed, fail) => {
    const raw = net.connect({ host, port: address.port, allowHalfOpen: true, noDelay: true });
    const socket = secure
      ? tls.connect({
          socket: raw,
          secureContext: secure.secureContext,
          rejectUnauthorized: secure.rejectUnauthorized,
          servername: secure.servername ?? (net.isIP(host) ? undefined : host),
        })
      : raw;
    let done = false;
    const onError = (error: Error): void => {
      if (done) return;
      done = true;
      socket.destroy();
      fail(error);
    };
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (done) return;
      done = true;
      // The raw socket under a TLS one keeps the (now inert) listener: an error there must never go unheard.
      socket.removeListener('error', onError);
      succeed(socket);
    });
    socket.on('error', onError);
    // The TCP socket under a TLS one: its errors before the handshake fail the connect; later ones reach the TLS socket as a close.
    if (socket !== raw) raw.on('error', onError);
    return () => {
      done = true;
      socket.destroy();
    };
  };
  return connectWithin(address, timeoutMs, attempt, (error) => {
    const tlsFailure = secure && (error as NodeJS.ErrnoException).code !== 'ECONNREFUSED';
    return `${tlsFailure ? 'TLS connect to' : 'connect to'} ${address.text} failed: ${error.message}`;
  });
}

/** A server the native thread can connect to: a numeric address (no name to resolve, no IPv6 zone such as %eth0). */
export function nativelyConnectable(address: Address): boolean {
  return address.host === '' || (net.isIP(address.host) !== 0 && !address.host.includes('%'));
}

/**
 * connectTo for a plain TCP server, made by the native splice's thread
 * (src/splice/native.ts): resolves with the connected descriptor, for
 * adoptConnected. Only for nativelyConnectable addresses.
 */
export function connectFd(address: Address, timeoutMs: number): Promise<number> {
  const host = address.host || '127.0.0.1';
  const attempt: Attempt<number> = (succeed, fail) => {
    const pending = nativeConnect(host, address.port, (error, fd) => (error ? fail(error) : succeed(fd)));
    return () => pending.cancel();
  };
  return connectWithin(address, timeoutMs, attempt, (error) => connectFailedWith(address, error).message);
}

/**
 * connectFd and the native splice in one step, for a client whose bytes
 * go straight on (src/splice/native.ts, connectThenSplice): resolves true
 * once the server is connected and owner.spliceConnected has run, false when
 * this way cannot be taken (the loop declined the socket, or no descriptor
 * is free): connect with connectFd then. Fails like connectFd, the client
 * socket as it was.
 */
export function connectSpliced(
  address: Address,
  timeoutMs: number,
  client: net.Socket,
  replay: Buffer,
  idleMs: number,
  owner: ConnectSpliceOwner,
): Promise<boolean> {
  const host = address.host || '127.0.0.1';
  return new Promise((resolve, reject) => {
    let timeout: NativeConnectTimeout | null = null;
    const relay: ConnectSpliceOwner = {
      spliceDone: (result) => owner.spliceDone(result),
      spliceConnected: (splice) => {
        timeout?.connected();
        owner.spliceConnected(splice);
        resolve(true);
      },
      spliceConnectFailed: (error) => {
        owner.spliceConnectFailed(error);
        reject(timeout!.failure(error));
      },
    };
    try {
      timeout = new NativeConnectTimeout(address, timeoutMs, connectThenSplice(client, host, address.port, replay, idleMs, relay));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (outOfDescriptors(error) || code === undefined) return resolve(false);
      reject(connectFailedWith(address, error as Error));
    }
  });
}
