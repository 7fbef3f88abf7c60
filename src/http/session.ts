/**
 * One client connection in http mode, from the hand-off by ClientConnection
 * to its close:
 *
 *   ┌─> head ──(route)──┬─ http backend: head (+ body) fed to Node ─> Exchange ─> response ─┐
 *   │                   ├─ tcp backend:  raw bytes from this head on ─> ClientConnection.splice
 *   │                   └─ upgrade:      rewritten head + raw rest  ─> ClientConnection.splice
 *   └──────────────────────────────────────────────────────────────────────────────────────┘
 *
 * The session reads the client's bytes itself and frames them (framing.ts)
 * before Node's parser sees them: each request head is parsed with the
 * sniffer's HTTP probe and routed by the frontend's rules on its own facts,
 * and only then fed to Node — one request at a time (a pipelined request
 * waits for the previous response). So a request that routes to a tcp-mode
 * backend has never been parsed by Node, and its raw bytes, with everything
 * after them, are what that backend gets (SPEC §4).
 *
 * Errors are pre-built HTTP answers while no byte of a response has gone out:
 * 400 (malformed head, smuggling shapes, a disagreement between the framing
 * and Node's parser), 408 (head not complete within `timeouts.httpRequest`),
 * 431 (head over `inspect.maxBytes`), and 502/503/504 from the exchange.
 * After an error answer the connection closes.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import { proxyHeaderFor } from '../backend/proxy-header.js';
import type { FrontendRuntime } from '../frontend/frontend.js';
import type { Termination } from '../observe/termination.js';
import { probeHttp } from '../sniff/http.js';
import type { HttpHead } from '../sniff/probe.js';
import { ServerAgent, sharedAgent } from './agents.js';
import { RequestFacts, type ConnectionFacts } from './facts.js';
import { Exchange, type ExchangeOwner, type RequestPlan } from './forward.js';
import { BodyReader, bodyFraming, leadingEmptyLines, type BodyFraming } from './framing.js';
import { requestHeaders, type Forwarded } from './headers.js';
import { ERROR_RESPONSES, type ErrorStatus } from './responses.js';
import { rewriteTarget } from './rewrite.js';
import { attachToNodeHttp, detachFromNodeHttp, nodePaused, type NodeHttpHandlers } from './server.js';
import { findCookie, reserveSticky } from './sticky.js';
import { tunnelHead } from './upgrade.js';

const EMPTY = Buffer.alloc(0);
const LF = 0x0a;

/** What the session needs from the ClientConnection that hands it the client. */
export interface SessionHost {
  readonly frontend: FrontendRuntime;
  readonly facts: ConnectionFacts;
  /**
   * The rest of the connection goes to `pool` as a tcp splice: `replay`
   * first, then the client's bytes. `reserved` is a server slot already taken
   * (the sticky server of an upgrade), to be used first.
   */
  spliceRest(pool: BackendPool, replay: Buffer, reserved: ServerState | null): void;
  /** The outcome, and why (the log line's `reason`); the first one set stays. */
  setTermination(termination: Termination, reason?: string): void;
  /** The client socket closed and nothing is in flight: time for the log line. */
  ended(): void;
}

/** The last request of the connection, for its log line. */
export interface RequestSummary {
  readonly method: string;
  readonly path: string;
  backend: string | null;
  server: string | null;
}

/** A request routed to an http backend whose head is being fed to Node: Node's event takes it. */
interface Routed {
  readonly pool: BackendPool;
  readonly head: HttpHead;
  readonly framing: BodyFraming;
}

type State = 'head' | 'body' | 'closing' | 'handed-off' | 'closed';

export class HttpSession implements NodeHttpHandlers, ExchangeOwner {
  last: RequestSummary | null = null;
  queueMs = 0;
  connectMs = 0;
  private state: State = 'head';
  /** Stopping: close after the exchange in flight instead of reading the next request. */
  private draining = false;
  /** Bytes received from the client and not yet given to Node or a splice. */
  private buffer: Buffer = EMPTY;
  private readonly feedNode: (chunk: Buffer) => void;
  private body: BodyReader | null = null;
  private routed: Routed | null = null;
  private exchange: Exchange | null = null;
  private headTimer: NodeJS.Timeout | null = null;
  private clientEnded = false;
  /** Reading paused because requests queue up behind the one in flight. */
  private held = false;
  private pumping = false;
  private pumpAgain = false;
  private privateAgents: Map<ServerState, ServerAgent> | null = null;
  /** Bytes of an incomplete head already probed: it is probed again only once a new line end arrives. */
  private probed = 0;
  private readonly maxHead: number;
  private readonly group: 'all' | 'plain';

  constructor(
    private readonly client: net.Socket,
    peeked: Buffer,
    private readonly host: SessionHost,
  ) {
    const frontend = host.frontend;
    this.maxHead = frontend.config.inspect.maxBytes;
    this.group = frontend.config.tls ? 'plain' : 'all';
    // A client that sent its request and FIN during sniffing: nothing can be unshifted after 'end'.
    const ended = client.readableEnded;
    this.feedNode = attachToNodeHttp(client, this, ended ? EMPTY : peeked, this.onData);
    if (ended) {
      this.buffer = peeked;
      this.clientEnded = true;
    }
    client.on('end', this.onEnd);
    client.on('close', this.onClose);
    client.on('timeout', this.onTimeout);
    client.on('drain', this.onDrain);
    client.setTimeout(frontend.config.timeouts.client);
    client.resume();
    this.pump();
  }

  get srcIp(): string {
    return this.host.facts.srcIp;
  }

  // ---- reading and framing -----------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    if (this.state === 'closing') return; // answered: what the client still sends is read and dropped
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    this.pump();
  };

  /** Runs step() until it waits; re-entrant calls (from Node's synchronous events) just ask for one more round. */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.step();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private step(): void {
    for (;;) {
      if (this.state === 'body') {
        if (!this.feedBody()) return;
      } else if (this.state === 'head') {
        if (this.exchange) return this.holdIfQueued();
        if (!this.nextRequest()) return;
      } else {
        return;
      }
    }
  }

  /** Reads, routes and starts the next request; false while waiting for bytes (or when done). */
  private nextRequest(): boolean {
    const skip = leadingEmptyLines(this.buffer);
    if (skip > 0) this.buffer = this.buffer.subarray(skip);
    if (this.held) {
      this.held = false;
      this.client.resume();
    }
    if (this.buffer.length === 0) {
      this.clearHeadTimer();
      if (this.clientEnded) this.finish();
      return false;
    }
    // A head can only complete (or show a malformed line) at a line end: a slow client dribbling
    // bytes is not re-parsed from the start for each of them.
    const seen = this.probed;
    this.probed = this.buffer.length;
    if (seen > 0 && !this.clientEnded && this.buffer.length < this.maxHead && this.buffer.indexOf(LF, seen) < 0) return false;
    const probe = probeHttp(this.buffer, { maxBytes: this.maxHead });
    if (probe.kind === 'no-match') return this.refuse(400, 'bad-request', `not an HTTP/1.x request: ${probe.reason}`);
    const head = probe.kind === 'match' ? probe.facts?.http : undefined;
    if (head?.problem === 'too-large') return this.refuse(431, 'bad-request', head.detail ?? 'request head too large');
    if (head?.problem === 'malformed') return this.refuse(400, 'bad-request', `malformed request head: ${head.detail ?? ''}`);
    if (!head?.headComplete) {
      if (this.clientEnded) this.finish();
      else this.armHeadTimer();
      return false;
    }
    this.probed = 0;
    this.clearHeadTimer();
    this.last = { method: head.method, path: head.path, backend: null, server: null };
    const framing = bodyFraming(head);
    if (framing.kind === 'invalid') return this.refuse(400, 'bad-request', `refused request framing: ${framing.reason}`);
    const frontend = this.host.frontend;
    const decision = frontend.routes.decide(new RequestFacts(head, this.host.facts), this.group);
    const backend = decision.kind === 'rule' ? decision.rule.use : decision.kind === 'default' ? frontend.config.default : null;
    if (backend === null) return this.refuse(503, 'no-server', 'no rule matched the request and there is no default backend');
    const pool = frontend.pools.get(backend)!;
    this.last.backend = pool.name;
    if (pool.config.mode !== 'http') {
      this.handOff(pool, this.buffer, null);
      return false;
    }
    if (nodePaused(this.client)) return false; // Node waits for the last response to drain; 'drain' pumps again
    this.routed = { pool, head, framing };
    const headBytes = this.buffer.subarray(0, head.headLength);
    this.buffer = this.buffer.subarray(head.headLength);
    this.feedNode(headBytes); // Node's 'request' or 'upgrade' event runs now and takes `routed`
    if (this.state !== 'head') return false;
    if (this.routed !== null) {
      this.routed = null;
      return this.refuse(400, 'bad-request', 'the request head did not end where Node parsed it');
    }
    if (framing.kind === 'none') return this.requestComplete();
    if (framing.kind === 'tunnel') return false;
    this.body = new BodyReader(framing, this.maxHead);
    this.state = 'body';
    return true;
  }

  /** Feeds the body bytes that have arrived; true once the body is complete. */
  private feedBody(): boolean {
    if (this.buffer.length === 0) {
      if (this.clientEnded) this.abandon('client-close', 'the client ended inside a request body');
      return false;
    }
    if (nodePaused(this.client)) return false;
    const step = this.body!.take(this.buffer);
    if ('error' in step) return this.refuse(400, 'bad-request', `bad chunked body: ${step.error}`);
    const bytes = this.buffer.subarray(0, step.used);
    this.buffer = this.buffer.subarray(step.used);
    if (bytes.length > 0) this.feedNode(bytes);
    if (this.state !== 'body') return false;
    if (!step.done) return false;
    this.body = null;
    this.state = 'head';
    return this.requestComplete();
  }

  /**
   * The framing says the request ended here: Node must agree (its request is
   * complete, and no other began inside what we fed it as this one).
   */
  private requestComplete(): boolean {
    const exchange = this.exchange;
    if (exchange === null) return true; // answered with an error already
    if (!exchange.req.complete) return this.refuse(400, 'bad-request', 'the request body did not end where Node parsed it');
    exchange.requestDone = true;
    if (exchange.responseDone) this.exchangeOver();
    return true;
  }

  /** Requests queue behind the one in flight: stop reading once a head's worth is waiting. */
  private holdIfQueued(): void {
    if (!this.held && this.buffer.length >= this.maxHead) {
      this.held = true;
      this.client.pause();
    }
  }

  // ---- Node's events -------------------------------------------------------------

  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const routed = this.routed;
    this.routed = null;
    if (routed === null || routed.framing.kind === 'tunnel' || req.method !== routed.head.method || req.url !== routed.head.path) {
      this.refuse(400, 'bad-request', 'Node parsed a request the framing did not see');
      return;
    }
    res.sendDate = false; // the server's Date, or none: sniffmux adds nothing of its own
    const exchange = new Exchange(this, this.plan(routed, req), req, res);
    this.exchange = exchange;
    exchange.start();
  }

  onUpgrade(req: http.IncomingMessage, head: Buffer): void {
    const routed = this.routed;
    this.routed = null;
    if (routed === null || routed.framing.kind !== 'tunnel' || req.method !== routed.head.method) {
      this.refuse(400, 'bad-request', 'Node parsed an upgrade the framing did not see');
      return;
    }
    const settings = routed.pool.config.http;
    const sticky = settings.stickyCookie === null ? null : reserveSticky(routed.pool, findCookie(req.rawHeaders, settings.stickyCookie));
    const replay = Buffer.concat([tunnelHead(req, settings, this.forwarded(routed.pool)), head, this.buffer]);
    this.handOff(routed.pool, replay, sticky);
  }

  onClientError(error: NodeJS.ErrnoException): void {
    if (this.state === 'handed-off' || this.state === 'closed') return;
    const code = error.code ?? '';
    if (code.startsWith('HPE_')) {
      this.refuse(code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, 'bad-request', `HTTP parse error: ${code} ${error.message}`);
    } else {
      this.host.frontend.logger.debug({ frontend: this.host.frontend.name, error: error.message }, 'client socket error');
      this.client.destroy();
    }
  }

  /** What the request is sent as: rewritten path, the fields per headers.ts, the sticky cookie read. */
  private plan(routed: Routed, req: http.IncomingMessage): RequestPlan {
    const { pool, framing } = routed;
    const settings = pool.config.http;
    return {
      pool,
      target: rewriteTarget(req.url ?? '/', settings.rewrite),
      headers: requestHeaders(req.rawHeaders, {
        upgrade: false,
        chunked: framing.kind === 'chunked',
        forwarded: settings.forwardedFor ? this.forwarded(pool) : null,
        stripCookie: settings.stickyCookie,
      }),
      hasBody: framing.kind !== 'none',
      stickyCookie: settings.stickyCookie,
      stickyValue: settings.stickyCookie === null ? null : findCookie(req.rawHeaders, settings.stickyCookie),
    };
  }

  private forwarded(pool: BackendPool): Forwarded {
    const { srcIp, encrypted } = this.host.facts;
    return { ip: srcIp, proto: encrypted ? 'https' : 'http', trusted: pool.trustsForwarding(srcIp) };
  }

  // ---- ExchangeOwner ---------------------------------------------------------------

  agentFor(pool: BackendPool, server: ServerState): http.Agent {
    const version = pool.config.proxyProtocol;
    if (version === null) return sharedAgent(pool, server);
    this.privateAgents ??= new Map();
    let agent = this.privateAgents.get(server);
    if (!agent) {
      const facts = this.host.facts;
      const header = proxyHeaderFor(version, {
        source: { address: facts.srcIp, port: facts.clientPort },
        destination: { address: facts.localAddress, port: facts.localPort },
        hello: facts.hello,
      });
      agent = new ServerAgent(pool, server, header);
      this.privateAgents.set(server, agent);
    }
    return agent;
  }

  served(server: ServerState, queueMs: number, connectMs: number): void {
    if (this.last) this.last.server = server.name;
    this.queueMs += queueMs;
    this.connectMs += connectMs;
  }

  fail(exchange: Exchange, status: ErrorStatus, termination: Termination, reason: string): void {
    if (exchange === this.exchange) this.refuse(status, termination, reason);
  }

  cut(exchange: Exchange, termination: Termination, reason: string): void {
    if (exchange !== this.exchange || this.state === 'closed') return;
    this.abandon(termination, reason);
  }

  responseDone(exchange: Exchange): void {
    if (exchange !== this.exchange) return;
    if (!exchange.res.shouldKeepAlive) {
      // Node closes the connection after this response (Connection: close, HTTP/1.0): read nothing more.
      this.state = 'closing';
      this.clearHeadTimer();
      return;
    }
    if (exchange.requestDone) this.exchangeOver();
  }

  warn(fields: Record<string, unknown>, message: string): void {
    this.host.frontend.logger.warn({ frontend: this.host.frontend.name, ...fields }, message);
  }

  debug(fields: Record<string, unknown>, message: string): void {
    this.host.frontend.logger.debug({ frontend: this.host.frontend.name, ...fields }, message);
  }

  private exchangeOver(): void {
    this.exchange = null;
    if (this.draining) return this.finish();
    this.pump();
  }

  /**
   * sniffmux is stopping (SIGTERM): an idle kept-alive connection closes
   * now, a busy one once its response is out (with `Connection: close` when
   * its head has not gone yet), so the drain need not wait for `grace`.
   */
  drain(): void {
    if (this.draining || (this.state !== 'head' && this.state !== 'body')) return;
    this.draining = true;
    this.host.setTermination('shutdown');
    const exchange = this.exchange;
    if (exchange) {
      if (!exchange.responseStarted) exchange.res.shouldKeepAlive = false;
      return;
    }
    if (this.state === 'head' && this.buffer.length === 0) this.finish();
  }

  // ---- ends ------------------------------------------------------------------------

  /**
   * The rest of the connection goes to a tcp splice. Node's parser has seen
   * none of `replay`'s request bytes (a tcp route) or has let go of the socket
   * (an upgrade); its 'close', 'drain' and 'error' listeners stay until the
   * socket closes and clean up after it.
   */
  private handOff(pool: BackendPool, replay: Buffer, reserved: ServerState | null): void {
    this.state = 'handed-off';
    this.clearHeadTimer();
    const client = this.client;
    client.removeListener('data', this.onData);
    client.removeListener('end', this.onEnd);
    client.removeListener('close', this.onClose);
    client.removeListener('timeout', this.onTimeout);
    client.removeListener('drain', this.onDrain);
    client.pause();
    client.setTimeout(0);
    detachFromNodeHttp(client);
    this.buffer = EMPTY;
    this.destroyPrivateAgents();
    this.host.spliceRest(pool, replay, reserved);
  }

  /** Answers an error and closes; false, so that callers in the framing loop can `return this.refuse(...)`. */
  private refuse(status: ErrorStatus, termination: Termination, reason: string): false {
    if (this.state === 'closing' || this.state === 'closed' || this.state === 'handed-off') return false;
    const exchange = this.exchange;
    if (exchange?.responseStarted) {
      this.abandon(termination, reason);
      return false;
    }
    this.state = 'closing';
    this.clearHeadTimer();
    this.host.setTermination(termination, reason);
    this.host.frontend.logger.debug({ frontend: this.host.frontend.name, status, reason }, 'request refused');
    exchange?.abort();
    const client = this.client;
    client.setTimeout(this.host.frontend.config.timeouts.client);
    if (!client.writableEnded) client.end(ERROR_RESPONSES[status]);
    // Keep reading (and dropping) so unread bytes never turn our FIN into an RST that loses the answer.
    this.buffer = EMPTY;
    if (this.held) this.held = false;
    client.resume();
    return false;
  }

  /** Closes without an answer (one is under way, or the client cannot take one). */
  private abandon(termination: Termination, reason: string): void {
    this.host.setTermination(termination, reason);
    this.host.frontend.logger.debug({ frontend: this.host.frontend.name, reason }, 'connection cut');
    this.state = 'closing';
    this.clearHeadTimer();
    this.exchange?.abort();
    this.client.destroy();
  }

  /** The client half-closed and every request it sent was answered: close our side too. */
  private finish(): void {
    this.state = 'closing';
    this.clearHeadTimer();
    this.client.end();
  }

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    this.pump();
  };

  private readonly onDrain = (): void => {
    // Node's own 'drain' listener ran first and may have unpaused its parser.
    if (this.state === 'head' || this.state === 'body') this.pump();
  };

  /** `timeouts.client` of silence from the client. */
  private readonly onTimeout = (): void => {
    const exchange = this.exchange;
    if (exchange && exchange.requestDone && !exchange.responseStarted) return; // the server's turn: timeouts.server applies
    if (this.state === 'head' && !exchange && this.buffer.length > 0) {
      this.refuse(408, 'client-timeout', `request head not complete within timeouts.client`);
      return;
    }
    this.abandon('client-timeout', 'client silent for timeouts.client');
  };

  private armHeadTimer(): void {
    if (this.headTimer !== null) return;
    this.headTimer = setTimeout(this.onHeadTimeout, this.host.frontend.config.timeouts.httpRequest);
  }

  private clearHeadTimer(): void {
    if (this.headTimer !== null) clearTimeout(this.headTimer);
    this.headTimer = null;
  }

  private readonly onHeadTimeout = (): void => {
    this.headTimer = null;
    if (this.state === 'head' && !this.exchange) {
      this.refuse(408, 'client-timeout', `request head not complete within ${this.host.frontend.config.timeouts.httpRequest} ms`);
    }
  };

  private readonly onClose = (): void => {
    if (this.state === 'handed-off' || this.state === 'closed') return;
    this.state = 'closed';
    this.clearHeadTimer();
    this.exchange?.abort();
    this.exchange = null;
    this.destroyPrivateAgents();
    detachFromNodeHttp(this.client);
    this.host.ended();
  };

  private destroyPrivateAgents(): void {
    if (this.privateAgents === null) return;
    for (const agent of this.privateAgents.values()) agent.destroy();
    this.privateAgents = null;
  }
}
