import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminSettings } from '../config/types.js';
import { listenError } from '../frontend/listener.js';
import type { Logger } from '../observe/log.js';
import { Metrics } from './metrics.js';
import { buildStatus, type StatusSnapshot, type StatusSource } from './status-json.js';
import { refreshSeconds, renderStatusHtml, STATUS_CSP } from './status-html.js';

type Reply = { status: number; type: string; body: string; headers?: Record<string, string> };

/**
 * What the admin endpoints show. One instance in this process (an Instance,
 * read directly), or the numbers of several worker processes added up (a
 * cluster primary, `src/process/cluster.ts`).
 */
export interface AdminView {
  status(): Promise<StatusSnapshot>;
  /** Prometheus text. */
  metrics(): Promise<string>;
  readonly metricsContentType: string;
}

/** The admin view of an instance in this process. */
export function instanceView(source: StatusSource): AdminView {
  const metrics = new Metrics(source);
  return {
    status: async () => buildStatus(source),
    metrics: () => metrics.render(),
    metricsContentType: metrics.contentType,
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * The admin listener: GET /status (HTML), /status.json, /metrics
 * (Prometheus) and /healthz. With `auth`, every endpoint but /healthz needs
 * HTTP basic auth: a liveness probe should not need credentials, and "ok"
 * tells nobody anything.
 */
export class AdminServer {
  private readonly server: http.Server;
  private readonly view: AdminView;
  private readonly sockets = new Set<Socket>();
  /** sha256 of `user:password`: comparing digests of equal length keeps the comparison constant-time. */
  private readonly expectedAuth: Buffer | null;

  constructor(
    readonly settings: AdminSettings,
    source: StatusSource | AdminView,
    private readonly logger: Logger,
  ) {
    this.view = 'metricsContentType' in source ? source : instanceView(source);
    const auth = settings.auth;
    this.expectedAuth = auth ? digest(`${auth.user}:${auth.password}`) : null;
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Binds; an address in use or not permitted is a one-line SniffmuxError naming it. */
  async start(): Promise<void> {
    const { host, port, text } = this.settings.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(text, error)));
      this.server.listen({ host: host === '' ? undefined : host, port }, () => {
        this.server.removeAllListeners('error');
        this.server.on('error', (error) => this.logger.warn({ error: error.message }, 'admin server error'));
        resolve();
      });
    });
    const bound = this.address();
    this.logger.info({ listen: text, host: bound.host, port: bound.port, auth: this.expectedAuth !== null }, 'admin listening');
  }

  address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo | null;
    if (a === null) throw new Error('admin server is not listening');
    return { host: a.address, port: a.port };
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // An open /status tab keeps its connection alive; it must not hold up a shutdown.
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let reply: Reply;
    try {
      reply = await this.route(req);
    } catch (error) {
      this.logger.error({ error: (error as Error).message, path: req.url }, 'admin request failed');
      reply = { status: 500, type: 'text/plain; charset=utf-8', body: 'internal error\n' };
    }
    res.writeHead(reply.status, {
      'content-type': reply.type,
      'content-length': Buffer.byteLength(reply.body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...reply.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  }

  private async route(req: http.IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return { status: 405, type: 'text/plain; charset=utf-8', body: 'method not allowed\n', headers: { allow: 'GET, HEAD' } };
    }
    if (path === '/healthz') return { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' };
    if (!this.authorized(req)) {
      return {
        status: 401,
        type: 'text/plain; charset=utf-8',
        body: 'authentication required\n',
        headers: { 'www-authenticate': 'Basic realm="sniffmux admin", charset="UTF-8"' },
      };
    }
    switch (path) {
      case '/':
        return { status: 302, type: 'text/plain; charset=utf-8', body: 'see /status\n', headers: { location: '/status' } };
      case '/status':
        return {
          status: 200,
          type: 'text/html; charset=utf-8',
          body: renderStatusHtml(await this.view.status(), refreshSeconds(url.searchParams)),
          headers: { 'content-security-policy': STATUS_CSP, 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' },
        };
      case '/status.json':
        return { status: 200, type: 'application/json; charset=utf-8', body: `${JSON.stringify(await this.view.status(), null, 2)}\n` };
      case '/metrics':
        return { status: 200, type: this.view.metricsContentType, body: await this.view.metrics() };
      default:
        return { status: 404, type: 'text/plain; charset=utf-8', body: 'not found: try /status, /status.json, /metrics or /healthz\n' };
    }
  }

  private authorized(req: http.IncomingMessage): boolean {
    if (this.expectedAuth === null) return true;
    const match = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
    if (match === null) return false;
    return timingSafeEqual(digest(Buffer.from(match[1]!, 'base64').toString('utf8')), this.expectedAuth);
  }
}
