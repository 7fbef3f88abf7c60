/**
 * One request of an http-mode connection, sent to a server of its backend
 * over a kept-alive connection and answered back through Node's
 * ServerResponse (which frames the body for the client: Content-Length as the
 * server gave it, else chunked for HTTP/1.1 or close-delimited for 1.0).
 *
 * Server choice: the sticky cookie's server when it is up and has room, else
 * the balancer, through the backend's queue when every server is full. A
 * connect failure tries another server (up to `retries` more), as in tcp mode;
 * the body is only sent once a connection is up, so nothing is lost by it. A
 * reused idle connection that the server had just closed (the keep-alive race)
 * is retried once on a fresh one when the request has no body.
 *
 * Errors before any byte of the response: 502 (invalid or no response),
 * 503 (no server, queue timeout, connect error), 504 (connect or server
 * timeout). After that the client connection can only be cut.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { queueFullReason, type BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import { ConnectError } from '../backend/connect.js';
import type { Termination } from '../observe/termination.js';
import { responseHeaders } from './headers.js';
import type { ErrorStatus } from './responses.js';
import { reserveSticky, stickyCookieValue } from './sticky.js';

/** What a request is sent as, decided from its head and its backend's `http` settings. */
export interface RequestPlan {
  readonly pool: BackendPool;
  readonly target: string;
  readonly headers: readonly string[];
  /** The request has a body (Content-Length or chunked). */
  readonly hasBody: boolean;
  /** The backend's sticky cookie name, or null. */
  readonly stickyCookie: string | null;
  /** The value of that cookie in the request, or null. */
  readonly stickyValue: string | null;
}

export interface ExchangeOwner {
  readonly srcIp: string;
  agentFor(pool: BackendPool, server: ServerState): http.Agent;
  /** The request cannot be served: answer `status` (nothing of a response was sent yet). */
  fail(exchange: Exchange, status: ErrorStatus, termination: Termination, reason: string): void;
  /** The response went out mid-way and cannot be finished: cut the client connection. */
  cut(exchange: Exchange, termination: Termination, reason: string): void;
  /** The response was handed to the client socket in full. */
  responseDone(exchange: Exchange): void;
  /** For the log line: the server chosen, and time spent queued or connecting (added up). */
  served(server: ServerState, queueMs: number, connectMs: number): void;
  warn(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

class ServerTimeout extends Error {}

/** Errors that mean "the server closed the connection" rather than "the server said something wrong". */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export class Exchange {
  /** The client's request (head and body) went through Node in full. */
  requestDone = false;
  /** The response went out in full. */
  responseDone = false;
  /** The response's head went to the client: an error can no longer be answered. */
  responseStarted = false;
  private server: ServerState | null = null;
  private proxyReq: http.ClientRequest | null = null;
  private readonly tried = new Set<ServerState>();
  private failure: ConnectError | null = null;
  private resets = 0;
  private aborted = false;

  constructor(
    private readonly owner: ExchangeOwner,
    private readonly plan: RequestPlan,
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse,
  ) {}

  start(): void {
    this.res.on('finish', this.onFinish);
    this.res.on('close', this.onResponseClose);
    void this.send();
  }

  /** The client went away or the session gave up: stop, and give the server slot back. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.proxyReq?.destroy();
    this.releaseServer();
  }

  private async send(): Promise<void> {
    const pool = this.plan.pool;
    let server = this.tried.size === 0 ? reserveSticky(pool, this.plan.stickyValue, this.tried) : null;
    let queueMs = 0;
    if (!server) {
      let acquired = pool.acquire(this.tried, this.owner.srcIp);
      if (acquired instanceof Promise) {
        this.owner.debug({ backend: pool.name, path: this.req.url, queued: pool.queued }, 'request queued');
        const queuedAt = performance.now();
        acquired = await acquired;
        queueMs = performance.now() - queuedAt;
      }
      if (this.aborted) {
        if (acquired.kind === 'server') pool.release(acquired.server);
        return;
      }
      if (acquired.kind === 'queue-timeout') return this.fail(503, 'queue-timeout', `no free server slot in backend ${pool.name} within the queue timeout`);
      if (acquired.kind === 'queue-full') return this.fail(503, 'no-server', queueFullReason(pool));
      if (acquired.kind === 'no-server') {
        const failure = this.failure;
        if (failure) return this.fail(failure.kind === 'connect-timeout' ? 504 : 503, failure.kind, failure.message);
        return this.fail(503, 'no-server', `no server available in backend ${pool.name}`);
      }
      server = acquired.server;
    }
    this.server = server;
    this.tried.add(server);
    this.owner.served(server, queueMs, 0);
    const address = server.config.address;
    let proxyReq: http.ClientRequest;
    try {
      proxyReq = http.request({
        agent: this.owner.agentFor(pool, server),
        host: address.host || '127.0.0.1',
        port: address.port,
        method: this.req.method,
        path: this.plan.target,
        headers: this.plan.headers as string[],
        setHost: false,
      });
    } catch (error) {
      // Node refuses a path or field it would not write (e.g. a rewrite that produced a space).
      this.releaseServer();
      return this.fail(400, 'bad-request', `request cannot be sent: ${(error as Error).message}`);
    }
    this.proxyReq = proxyReq;
    const connectAt = performance.now();
    proxyReq.on('socket', () => {
      if (proxyReq !== this.proxyReq) return;
      server.total++;
      this.owner.served(server, 0, performance.now() - connectAt);
      proxyReq.setTimeout(pool.config.timeouts.server);
      if (this.plan.hasBody) {
        // A client that sent `Expect: 100-continue` waits for the server's 100 before its body: the head must go now.
        if (this.req.headers.expect !== undefined) proxyReq.flushHeaders();
        this.req.pipe(proxyReq);
      } else {
        this.req.resume();
        proxyReq.end();
      }
    });
    proxyReq.on('timeout', () => proxyReq.destroy(new ServerTimeout(`no answer from server ${server.name} within ${pool.config.timeouts.server} ms`)));
    proxyReq.on('information', (info: http.InformationEvent) => {
      if (info.statusCode === 100 && !this.responseStarted) this.res.writeContinue();
    });
    proxyReq.on('response', (proxyRes: http.IncomingMessage) => this.onResponse(proxyReq, proxyRes, server));
    proxyReq.on('error', (error: Error) => this.onError(proxyReq, server, error));
  }

  private onResponse(proxyReq: http.ClientRequest, proxyRes: http.IncomingMessage, server: ServerState): void {
    proxyRes.on('error', (error: Error) => this.onError(proxyReq, server, error));
    if (this.aborted || proxyReq !== this.proxyReq) {
      proxyRes.resume();
      return;
    }
    const { stickyCookie, stickyValue } = this.plan;
    const setCookie = stickyCookie !== null && stickyValue !== server.name ? stickyCookieValue(stickyCookie, server.name) : null;
    try {
      this.res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, responseHeaders(proxyRes.rawHeaders, setCookie));
    } catch (error) {
      proxyReq.destroy();
      this.releaseServer();
      return this.fail(502, 'server-close', `server ${server.name} sent a response Node cannot pass on: ${(error as Error).message}`);
    }
    this.responseStarted = true;
    proxyRes.on('end', () => this.releaseServer());
    proxyRes.pipe(this.res);
  }

  private onError(proxyReq: http.ClientRequest, server: ServerState, error: Error): void {
    if (proxyReq !== this.proxyReq || this.responseDone || this.aborted) return;
    this.releaseServer();
    const pool = this.plan.pool;
    const timeout = error instanceof ServerTimeout;
    if (this.responseStarted) {
      this.aborted = true;
      return this.owner.cut(this, timeout ? 'server-timeout' : 'server-close', `server ${server.name}: ${error.message}`);
    }
    if (error instanceof ConnectError) {
      server.failures++;
      this.failure = error;
      this.owner.warn({ backend: pool.name, server: server.name, error: error.message }, 'server connect failed');
      if (this.tried.size <= pool.config.retries) {
        void this.send();
        return;
      }
      return this.fail(error.kind === 'connect-timeout' ? 504 : 503, error.kind, error.message);
    }
    if (timeout) return this.fail(504, 'server-timeout', error.message);
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (proxyReq.reusedSocket && !this.plan.hasBody && RESET_CODES.has(code) && this.resets < 2) {
      // The keep-alive race: the server closed this idle connection as we reused it.
      this.resets++;
      this.tried.delete(server);
      void this.send();
      return;
    }
    return this.fail(502, 'server-close', `server ${server.name}: ${error.message}${code ? ` (${code})` : ''}`);
  }

  private fail(status: ErrorStatus, termination: Termination, reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.proxyReq?.destroy();
    this.owner.fail(this, status, termination, reason);
  }

  private releaseServer(): void {
    if (this.server === null) return;
    this.plan.pool.release(this.server);
    this.server = null;
  }

  private readonly onFinish = (): void => {
    this.responseDone = true;
    this.releaseServer();
    this.owner.responseDone(this);
  };

  private readonly onResponseClose = (): void => {
    if (!this.responseDone) this.abort();
  };
}
