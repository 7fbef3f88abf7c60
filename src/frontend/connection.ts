import { closeSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { Address, Listen } from '../config/types.js';
import { queueFullReason, type Acquired, type BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import { ConnectError, connectFd, connectSpliced, connectTo, nativelyConnectable } from '../backend/connect.js';
import { proxyHeaderFor } from '../backend/proxy-header.js';
import { HTTP_503, HTTP_504 } from '../http/responses.js';
import { HttpSession, type SessionHost } from '../http/session.js';
import type { ConnectionRecord } from '../observe/record.js';
import type { Termination } from '../observe/termination.js';
import type { RouteFacts } from '../route/facts.js';
import type { HttpHead, ProbedProtocol, RouteProtocol, TlsHello } from '../sniff/probe.js';
import { cidrSetHas, compileCidrs, type CidrSet } from '../route/cidr.js';
import { parseProxyHeader } from '../sniff/proxy-protocol.js';
import { Sniffer, type SniffView } from '../sniff/sniffer.js';
import { formatAddress, unmapIPv4 } from './client-address.js';
import { splice as spliceSockets } from '../splice/splice.js';
import { adoptConnected, adoptSockets, socketFromDescriptor, type NativeSplice, type NativeSpliceResult } from '../splice/native.js';
import { decide } from './decide.js';
import { fastStartOf, type FastStart } from './fast-connection.js';
import type { FrontendRuntime } from './frontend.js';

const EMPTY = Buffer.alloc(0);
/** Stands in for the sockets once the native splice loop owns their descriptors, so the destroyed ones can be collected. */
const HANDED_OVER = new net.Socket();
/** The connection a socket belongs to, read by the shared event handlers at the end of ClientConnection. */
const kConnection = Symbol('sniffmux.connection');
type Owned = net.Socket & { [kConnection]?: ClientConnection };
/** A listener shared by every connection: `this` is the socket, which names its connection (kConnection). */
type SocketHandler = (this: Owned, ...args: any[]) => void; // each takes its event's own arguments

/** Told when a connection has ended and been logged (the Instance). */
export interface ConnectionOwner {
  connectionDone(connection: ClientConnection, frontend: FrontendRuntime): void;
  /** May this connection hold a third descriptor while it connects (connectSpliced)? returnConnectDup once it settles. */
  takeConnectDup(): boolean;
  returnConnectDup(): void;
}

type Phase = 'proxy-header' | 'sniff' | 'handshake' | 'http' | 'connect' | 'splice' | 'closing';

/**
 * One client connection, from accept to its log line:
 *
 *   proxy-header → sniff → [handshake → sniff] → connect → splice → (log)
 *                                              ↘ http ↗ (mode: http, src/http/session.ts)
 *
 * While sniffing it holds every byte received (at most inspect.maxBytes plus
 * one chunk) and never consumes them: the same buffer is replayed to the
 * server, or handed to the TLS stack when it terminates TLS. It is also the
 * RouteFacts the rules read, so evaluating the rules allocates nothing.
 */
export class ClientConnection implements RouteFacts {
  // RouteFacts
  final = false;
  encrypted = false;
  srcIp: string;
  readonly localPort: number;

  private phase: Phase;
  /** The stream the application bytes flow on: the socket, or the TLSSocket over it once TLS is terminated. */
  private client: net.Socket;
  private clientAddress: string;
  private clientPort: number;
  private peeked: Buffer = EMPTY;
  private proxyHeaderLength = 0;
  private sniffer: Sniffer;
  private view: SniffView | undefined;
  /** The ClientHello of a terminated connection: its SNI and ALPN stay facts for the decrypted stream. */
  private outerHello: TlsHello | undefined;
  private timer: NodeJS.Timeout | null = null;
  private clientEnded = false;
  private clientClosed = false;
  private server: net.Socket | null = null;
  private serverClosed = true;
  /** A definite outcome (timeout, error, policy served…); set once. */
  private termination: Termination | null = null;
  /** Why, when the outcome was a refusal (bad input, no server, a failed handshake): the log line's `reason`. */
  private reason: string | null = null;
  /** Which side finished sending first: names an ordinary close. */
  private firstEnd: 'client' | 'server' | null = null;
  private backend: BackendPool | null = null;
  private serverState: ServerState | null = null;
  private readonly startedAt: number;
  /** Set when a FastConnection handed the connection over: its start, and the servers it tried (used by the first connect only). */
  private fastStart: FastStart | undefined;
  private sniffMs = 0;
  private connectStartedAt = 0;
  private connectMs = 0;
  private queueMs = 0;
  private logged = false;
  /** mode: http: the session that reads, routes and answers each request (null in tcp mode). */
  private httpSession: HttpSession | null = null;
  /** A server slot the HTTP session reserved for the splice it hands over (an upgrade's sticky server). */
  private reserved: ServerState | null = null;
  /** The backend the sniff chose, which put the connection in http mode (logged if no request was routed). */
  private httpEntry: string | null = null;
  /** Once the native splice(2) loop carries the connection (src/splice/native.ts): its live and final counts. */
  private native: NativeSplice | null = null;
  private nativeFinished = false;

  constructor(
    /** The accepted socket (HANDED_OVER once the native loop owns it). */
    private socket: net.Socket,
    private readonly frontend: FrontendRuntime,
    private readonly listen: Listen,
    private readonly owner: ConnectionOwner,
    /** The listener's port, which every connection it accepts has as its own (no getsockname per connection). */
    localPort: number,
  ) {
    this.client = socket;
    this.fastStart = fastStartOf(socket);
    this.startedAt = this.fastStart?.startedAt ?? performance.now();
    this.srcIp = unmapIPv4(socket.remoteAddress ?? '');
    this.clientPort = socket.remotePort ?? 0;
    this.clientAddress = formatAddress(this.srcIp, this.clientPort);
    this.localPort = localPort;
    this.sniffer = new Sniffer({ maxBytes: frontend.config.inspect.maxBytes });
    this.phase = listen.proxyProtocol ? 'proxy-header' : 'sniff';
    socket.setNoDelay(true);
    this.attachClient(socket);
    // The inspect delay counts from the accept, also when a FastConnection had it first; one the sniff budget
    // made decide now decides on what it reads first, outside the budget (it left it already).
    const budgetSpent = this.fastStart?.budgetSpent === true;
    const delay = budgetSpent ? 0 : Math.max(0, frontend.config.inspect.delay - (performance.now() - this.startedAt));
    this.timer = setTimeout(ClientConnection.inspectDelayOver, delay, this);
    if (!budgetSpent) frontend.process.sniffBudget.enter(this, this.srcIp);
    if (listen.proxyProtocol && !trustedProxy(listen, this.srcIp)) {
      this.reject('bad-request', `a PROXY header from ${this.srcIp} is not trusted (not in trustedProxies)`);
    }
  }

  /** The sniff budget is spent: decide with what has arrived, as if the inspect delay had expired. */
  decideNow(): void {
    if (this.phase === 'proxy-header') return this.reject('client-timeout', 'sniff budget exhausted before the PROXY header');
    if (this.phase !== 'sniff') return;
    this.clearTimer();
    this.final = true;
    this.evaluate();
  }

  private attachClient(client: net.Socket): void {
    (client as Owned)[kConnection] = this;
    for (const [event, handler] of ClientConnection.clientEvents) client.on(event, handler);
  }

  private detachClient(client: net.Socket): void {
    for (const [event, handler] of ClientConnection.clientEvents) client.removeListener(event, handler);
  }

  // ---- RouteFacts ---------------------------------------------------------

  probe(protocol: ProbedProtocol): 'match' | 'no-match' | 'need-more' {
    return this.view ? this.view.probe(protocol) : 'need-more';
  }
  get protocol(): RouteProtocol | undefined {
    return this.view?.protocol;
  }
  get hello(): TlsHello | undefined {
    return this.outerHello ?? this.view?.hello;
  }
  get http(): HttpHead | undefined {
    return this.view?.http;
  }

  // ---- sniffing -----------------------------------------------------------

  private handleSniffData(chunk: Buffer): void {
    this.peeked = this.peeked.length === 0 ? chunk : Buffer.concat([this.peeked, chunk]);
    if (this.phase === 'proxy-header') return this.readProxyHeader();
    if (this.phase !== 'sniff') return;
    if (this.peeked.length >= this.frontend.config.inspect.maxBytes) this.final = true;
    this.evaluate();
  }

  /**
   * A listener with `proxyProtocol: true` expects the PROXY header first. It
   * is consumed (not replayed), and its source address replaces the socket's
   * in rules and logs.
   */
  private readProxyHeader(): void {
    const result = parseProxyHeader(this.peeked);
    if (result.kind === 'need-more') {
      if (this.clientEnded) this.reject('bad-request', 'connection ended inside the PROXY header');
      return;
    }
    if (result.kind === 'invalid') return this.reject('bad-request', `invalid PROXY header: ${result.reason}`);
    const { header, length } = result;
    this.proxyHeaderLength = length;
    if (header.command === 'PROXY' && header.source) {
      this.srcIp = unmapIPv4(header.source.address);
      this.clientPort = header.source.port;
      this.clientAddress = formatAddress(this.srcIp, this.clientPort);
    }
    this.peeked = this.peeked.subarray(length);
    this.phase = 'sniff';
    if (this.peeked.length >= this.frontend.config.inspect.maxBytes) this.final = true;
    if (this.peeked.length > 0 || this.clientEnded) this.evaluate();
  }

  private handleInspectDelay(): void {
    this.timer = null;
    if (this.phase === 'proxy-header') return this.reject('client-timeout', 'no PROXY header within the inspect delay');
    if (this.phase !== 'sniff') return;
    this.final = true;
    this.evaluate();
  }

  /** Runs the probes and the rules on what has arrived; acts as soon as they decide. */
  private evaluate(): void {
    this.view = this.sniffer.update(this.peeked, this.final);
    const outcome = decide(this.frontend.config, this.frontend.routes, this);
    switch (outcome.kind) {
      case 'wait':
        return;
      case 'policy':
        return this.servePolicy();
      case 'terminate':
        return this.terminate();
      case 'backend':
        return this.route(outcome.backend);
      case 'reject':
        return this.reject(outcome.termination, outcome.reason);
    }
  }

  /** Stops sniffing: the buffered bytes are kept for replay, the client stops being read. */
  private stopSniffing(): void {
    this.frontend.process.sniffBudget.leave(this);
    this.sniffMs = performance.now() - this.startedAt;
    this.clearTimer();
    this.client.removeListener('data', ClientConnection.onSniffData);
    this.client.pause();
    this.sniffer.done();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // ---- TLS termination --------------------------------------------------------

  /**
   * Hands the socket to the TLS stack with the peeked ClientHello bytes put
   * back in front of it: TLSSocket reads a wrapped socket's buffered bytes
   * first (nodejs/node#8752), so none is lost or doubled however the hello
   * was split. The decrypted stream is then sniffed afresh.
   */
  private terminate(): void {
    this.stopSniffing();
    this.phase = 'handshake';
    this.outerHello = this.view?.hello;
    this.detachClient(this.socket);
    this.socket.on('error', ignoreError);
    if (this.peeked.length > 0) this.socket.unshift(this.peeked);
    this.peeked = EMPTY;
    const secure = new tls.TLSSocket(this.socket, this.frontend.tls!.options);
    this.client = secure;
    (secure as Owned)[kConnection] = this;
    secure.on('error', ClientConnection.onHandshakeError);
    secure.once('end', ClientConnection.onHandshakeEnd);
    secure.once('secure', ClientConnection.onSecure);
    secure.on('close', ClientConnection.onClientClose);
    this.timer = setTimeout(ClientConnection.handshakeTimedOut, this.frontend.config.timeouts.handshake, this);
  }

  private handleSecure(): void {
    this.clearTimer();
    const secure = this.client;
    secure.removeListener('error', ClientConnection.onHandshakeError);
    secure.removeListener('end', ClientConnection.onHandshakeEnd);
    secure.removeListener('close', ClientConnection.onClientClose);
    this.encrypted = true;
    this.final = false;
    this.sniffer = new Sniffer({ maxBytes: this.frontend.config.inspect.maxBytes });
    this.view = undefined;
    this.phase = 'sniff';
    this.attachClient(secure);
    this.timer = setTimeout(ClientConnection.inspectDelayOver, this.frontend.config.inspect.delay, this);
  }

  private handleHandshakeError(error: Error & { reason?: string }): void {
    // OpenSSL's `reason` ("wrong version number") says it; its message is a line of codes and a source path.
    this.tlsFailed(`TLS handshake failed: ${error.reason ?? error.message.trim()}`);
  }

  /** The listener allows half-open sockets, so a client's FIN would not close it: without this it waits for the handshake timeout. */
  private handleHandshakeEnd(): void {
    this.firstEnd ??= 'client';
    this.tlsFailed('the client closed its side before the TLS handshake finished');
  }

  private handleHandshakeTimeout(): void {
    this.timer = null;
    this.tlsFailed(`TLS handshake not finished within ${this.frontend.config.timeouts.handshake} ms`);
  }

  private tlsFailed(reason: string): void {
    this.clearTimer();
    // The sniffer may already know what is wrong with the ClientHello (the TLS stack's words are terser).
    const detail = this.outerHello?.problem ? ` (ClientHello ${this.outerHello.problem}${this.outerHello.detail ? `: ${this.outerHello.detail}` : ''})` : '';
    this.setTermination('tls-error', reason + detail);
    this.phase = 'closing';
    this.client.destroy();
  }

  // ---- outcomes without a server --------------------------------------------

  private servePolicy(): void {
    this.stopSniffing();
    this.phase = 'closing';
    this.setTermination('policy-served');
    // Keep reading (and discarding) so that unread bytes never turn our FIN into an RST that loses the answer.
    this.client.resume();
    this.client.setTimeout(this.frontend.config.timeouts.client);
    this.client.end(this.frontend.policyResponse);
  }

  private reject(termination: Termination, reason: string): void {
    if (this.phase === 'sniff' || this.phase === 'proxy-header') this.stopSniffing();
    this.phase = 'closing';
    this.setTermination(termination, reason);
    const answer = this.view?.protocol === 'http' ? httpAnswer(termination) : null;
    if (answer) {
      this.client.setTimeout(this.frontend.config.timeouts.client);
      this.client.end(answer);
    } else {
      this.client.destroy();
    }
  }

  // ---- connect ----------------------------------------------------------------

  private route(backendName: string): void {
    this.stopSniffing();
    const pool = this.frontend.pools.get(backendName)!;
    // Only HTTP/1 can be parsed; anything else sent to an http-mode backend is spliced as in tcp mode.
    if (pool.config.mode === 'http' && this.view?.protocol === 'http') return this.startHttp(pool);
    this.phase = 'connect';
    this.backend = pool;
    void this.connect(pool);
  }

  // ---- http mode --------------------------------------------------------------

  /**
   * Hands the client stream and the peeked bytes to an HTTP session, which
   * routes every request (the first one included) by itself. It can hand the
   * rest of the connection back for a splice (a request routed to a tcp-mode
   * backend, an upgrade's tunnel), and tells when the client has gone.
   */
  private startHttp(entry: BackendPool): void {
    this.phase = 'http';
    this.httpEntry = entry.name;
    this.detachClient(this.client);
    const peeked = this.peeked;
    this.peeked = EMPTY;
    const host: SessionHost = {
      frontend: this.frontend,
      facts: {
        srcIp: this.srcIp,
        clientPort: this.clientPort,
        localAddress: unmapIPv4(this.socket.localAddress ?? ''),
        localPort: this.localPort,
        encrypted: this.encrypted,
        hello: this.hello,
      },
      spliceRest: (pool, replay, reserved) => this.spliceRest(pool, replay, reserved),
      setTermination: (termination, reason) => this.setTermination(termination, reason),
      ended: () => {
        this.clientClosed = true;
        this.phase = 'closing';
        this.maybeDone();
      },
    };
    this.httpSession = new HttpSession(this.client, peeked, host);
  }

  private spliceRest(pool: BackendPool, replay: Buffer, reserved: ServerState | null): void {
    this.phase = 'connect';
    this.backend = pool;
    this.peeked = replay;
    this.reserved = reserved;
    this.client.on('end', ClientConnection.onClientEnd);
    this.client.on('error', ClientConnection.onClientError);
    this.client.on('close', ClientConnection.onClientClose);
    this.client.on('timeout', ClientConnection.onClientTimeout);
    void this.connect(pool);
  }

  /**
   * Tries servers until one accepts, up to 1 + retries distinct servers,
   * waiting in the backend's queue while every server is at its maxconn.
   */
  private async connect(pool: BackendPool): Promise<void> {
    // A FastConnection may have tried (and failed) the first servers already.
    const prior = pool === this.fastStart?.backend ? this.fastStart : undefined;
    this.fastStart = undefined;
    const tried = new Set<ServerState>(prior?.tried);
    const started = (this.connectStartedAt = performance.now());
    let failure: ConnectError | null = prior?.failure ?? null;
    if (failure) this.serverState = [...tried].pop() ?? null;
    for (let attempt = tried.size; attempt <= pool.config.retries; attempt++) {
      let acquired: Acquired | Promise<Acquired> = this.reserved ? { kind: 'server', server: this.reserved } : pool.acquire(tried, this.srcIp);
      this.reserved = null;
      if (acquired instanceof Promise) {
        this.frontend.logger.debug({ client: this.clientAddress, backend: pool.name, queued: pool.queued }, 'connection queued');
        const queuedAt = performance.now();
        acquired = await acquired;
        this.queueMs += performance.now() - queuedAt;
      }
      if (acquired.kind !== 'server') {
        if (this.phase !== 'connect') return;
        if (acquired.kind === 'queue-timeout') return this.reject('queue-timeout', `no free server slot in backend ${pool.name} within the queue timeout`);
        if (acquired.kind === 'queue-full') return this.reject('no-server', queueFullReason(pool));
        break;
      }
      const server = acquired.server;
      tried.add(server);
      this.serverState = server;
      if (this.phase !== 'connect') return pool.release(server);
      try {
        const address = server.config.address;
        const timeout = pool.config.timeouts.connect;
        const native = this.splicesNatively(pool) && nativelyConnectable(address);
        // Connected and spliced by the native thread: spliceConnected has done the rest (a client gone meanwhile aborted it).
        if (native && (await this.connectSplicedWithin(address, timeout))) return;
        const connection = native ? await connectFd(address, timeout) : await connectTo(address, timeout, pool.tls);
        this.connectMs = performance.now() - started - this.queueMs;
        server.total++;
        if (this.phase !== 'connect') {
          // The client left while we were connecting.
          if (typeof connection === 'number') closeSync(connection);
          else connection.destroy();
          return pool.release(server);
        }
        return typeof connection === 'number' ? this.spliceDescriptor(connection) : this.splice(connection);
      } catch (error) {
        pool.release(server);
        failure = error instanceof ConnectError ? error : new ConnectError('connect-error', String(error));
        this.frontend.connectFailed(pool, server, failure);
        if (this.phase !== 'connect') return;
      }
    }
    this.connectMs = performance.now() - started - this.queueMs;
    if (this.phase !== 'connect') return;
    if (!failure) this.serverState = null;
    this.reject(failure ? failure.kind : 'no-server', failure ? failure.message : `no server available in backend ${pool.name}`);
  }

  // ---- splice -----------------------------------------------------------------

  /**
   * Sends the PROXY header (when the backend wants one), replays the peeked
   * bytes, then splices both ways with backpressure and half-close
   * (src/splice: pipe()'s behaviour without its per-connection closures).
   */
  private splice(server: net.Socket, replay: Buffer = this.takeReplay()): void {
    this.phase = 'splice';
    this.server = server;
    this.serverClosed = false;
    this.watchServer(server);
    // One idle timer, on the client side: every byte of the splice is read from or written to the client
    // stream, so it sees all activity, and a silent connection is always a client-timeout (with a timer per
    // socket the one refreshed first, usually the server's, would fire: a word that depended on who spoke last).
    const tunnel = this.tunnelTimeout();
    this.client.setTimeout(tunnel);
    if (replay.length > 0) server.write(replay);
    if (this.splicesNatively(this.backend!) && this.handOver(server, tunnel)) return;
    spliceSockets(this.client, server);
  }

  /** Plain TCP both ways and the addon loaded: the native loop can carry the connection. */
  private splicesNatively(pool: BackendPool): boolean {
    return this.client === this.socket && pool.tls === null && this.httpSession === null && this.frontend.process.spliceNatively;
  }

  /** What the server gets before the client's next byte (taken: not sent again). */
  private takeReplay(): Buffer {
    const replay = this.replay();
    this.peeked = EMPTY;
    return replay;
  }

  /** The PROXY header when the backend wants one, then the peeked bytes. */
  private replay(): Buffer {
    const peeked = this.peeked;
    const version = this.backend!.config.proxyProtocol;
    if (!version) return peeked;
    const header = proxyHeaderFor(version, {
      source: { address: this.srcIp, port: this.clientPort },
      destination: { address: unmapIPv4(this.socket.localAddress ?? ''), port: this.localPort },
      hello: this.hello,
    });
    return peeked.length > 0 ? Buffer.concat([header, peeked]) : header;
  }

  /**
   * The server connection the native thread made (connectFd): the loop
   * sends the replay and splices, and no JS socket ever exists for the
   * server side. If the loop cannot take it after all, the descriptor
   * becomes a socket and the connection is spliced as one Node connected.
   */
  private spliceDescriptor(fd: number): void {
    this.phase = 'splice';
    const replay = this.takeReplay();
    const client = this.client;
    try {
      this.native = adoptConnected(client, fd, replay, this.tunnelTimeout(), this);
    } catch (error) {
      this.nativeDeclined((error as Error).message);
      return this.splice(socketFromDescriptor(fd), replay);
    }
    this.serverClosed = false;
    this.detachClient(client);
    this.socket = this.client = HANDED_OVER;
  }

  /**
   * Plain sockets both ways: the native loop takes both descriptors (after
   * what was written here is flushed) and splices them with splice(2), and
   * the JS sockets are destroyed: nothing of this connection runs in
   * JavaScript again until it ends. False (nothing changed) when the loop
   * cannot take them, e.g. a socket destroyed a moment ago by a timeout or
   * a reset whose 'close' has not come yet: the JavaScript splice goes on.
   */
  private handOver(server: net.Socket, idleMs: number): boolean {
    const client = this.client;
    try {
      this.native = adoptSockets(client, server, idleMs, this);
    } catch (error) {
      this.nativeDeclined((error as Error).message);
      return false;
    }
    // From here the native splice reports the end, timeouts included.
    this.detachClient(client);
    this.unwatchServer(server);
    this.socket = this.client = HANDED_OVER;
    this.server = null;
    return true;
  }

  /** The loop could not take the descriptors at the hand-over (out of descriptors): the sockets come back, for the JavaScript splice. */
  spliceRefused(client: net.Socket, server: net.Socket, reason: string): void {
    this.native = null;
    this.nativeDeclined(reason);
    this.socket = this.client = client;
    this.server = server;
    // As after sniffing: everything but 'data', which the splice takes.
    this.attachClient(client);
    client.removeListener('data', ClientConnection.onSniffData);
    this.watchServer(server);
    client.setTimeout(this.tunnelTimeout());
    spliceSockets(client, server);
  }

  private nativeDeclined(reason: string): void {
    this.frontend.logger.debug({ client: this.clientAddress, reason }, 'spliced in JavaScript: the native splice did not take the connection');
  }

  private tunnelTimeout(): number {
    return this.backend!.config.timeouts.tunnel ?? this.frontend.config.timeouts.tunnel;
  }

  private watchServer(server: net.Socket): void {
    (server as Owned)[kConnection] = this;
    for (const [event, handler] of ClientConnection.serverEvents) server.on(event, handler);
  }

  private unwatchServer(server: net.Socket): void {
    for (const [event, handler] of ClientConnection.serverEvents) server.removeListener(event, handler);
  }

  /** connectSpliced, if the descriptor budget has room for the dup it holds meanwhile (false: connect with connectFd). */
  private async connectSplicedWithin(address: Address, timeoutMs: number): Promise<boolean> {
    if (!this.owner.takeConnectDup()) return false;
    try {
      return await connectSpliced(address, timeoutMs, this.client, this.replay(), this.tunnelTimeout(), this);
    } finally {
      this.owner.returnConnectDup();
    }
  }

  /** connectSpliced: the server is connected and the native thread splices (the replay sent first). */
  spliceConnected(splice: NativeSplice): void {
    this.native = splice;
    this.connectMs = performance.now() - this.connectStartedAt - this.queueMs;
    this.serverState!.total++;
    // The client went while connecting: its abort is on the way, and spliceDone frees the server.
    if (this.phase !== 'connect') return;
    this.phase = 'splice';
    this.peeked = EMPTY;
    this.serverClosed = false;
    this.detachClient(this.client);
    this.socket = this.client = HANDED_OVER;
  }

  /** connectSpliced failed: the client socket is as it was, and connect() goes on (another server, or the refusal). */
  spliceConnectFailed(): void {
    this.native = null;
  }

  spliceDone(r: NativeSpliceResult): void {
    this.nativeFinished = true;
    if (r.firstEnd) this.firstEnd ??= r.firstEnd === 'a' ? 'client' : 'server';
    // Idle past the tunnel timeout, whichever side the loop found quiet first: client-timeout, as in the JavaScript splice.
    if (r.end === 'a-timeout' || r.end === 'b-timeout') this.setTermination('client-timeout');
    this.clientClosed = true;
    this.serverClosed = true;
    if (this.serverState) this.backend!.release(this.serverState);
    this.maybeDone();
  }

  // ---- client events ------------------------------------------------------------

  private handleClientEnd(): void {
    this.clientEnded = true;
    this.firstEnd ??= 'client';
    if (this.phase === 'sniff') {
      this.final = true;
      this.evaluate();
    } else if (this.phase === 'proxy-header') {
      this.readProxyHeader();
    }
  }

  private handleClientError(error: Error): void {
    this.frontend.logger.debug({ client: this.clientAddress, error: error.message }, 'client socket error');
    this.firstEnd ??= 'client';
    this.server?.destroy();
  }

  private handleClientTimeout(): void {
    this.setTermination('client-timeout');
    this.client.destroy();
    this.server?.destroy();
  }

  private handleClientClose(): void {
    // A native connect in flight holds a dup of this client: it must not splice a connection that has gone.
    if (this.phase === 'connect' && this.native) this.native.abort();
    this.clientClosed = true;
    this.frontend.process.sniffBudget.leave(this);
    this.clearTimer();
    if (this.phase === 'sniff' || this.phase === 'proxy-header' || this.phase === 'connect' || this.phase === 'handshake') {
      this.sniffMs ||= performance.now() - this.startedAt;
      if (this.phase === 'handshake') this.setTermination('tls-error', 'the client closed during the TLS handshake');
      this.firstEnd ??= 'client';
      this.phase = 'closing';
    }
    this.server?.destroy();
    this.maybeDone();
  }

  // ---- server events -------------------------------------------------------------

  private handleServerEnd(): void {
    this.firstEnd ??= 'server';
  }

  private handleServerError(error: Error): void {
    this.frontend.logger.debug({ server: this.serverState?.name, error: error.message }, 'server socket error');
    this.firstEnd ??= 'server';
    this.client.destroy();
  }

  private handleServerClose(): void {
    this.serverClosed = true;
    if (this.serverState) this.backend!.release(this.serverState);
    // Whatever the server sent has been handed to the client socket; end it if pipe has not.
    if (!this.clientClosed && !this.client.writableEnded) this.client.end();
    this.maybeDone();
  }

  // ---- the end ---------------------------------------------------------------------

  /** sniffmux is stopping: an http-mode connection closes once idle (tcp-mode ones run until they end or grace does). */
  drain(): void {
    if (this.phase === 'http') this.httpSession?.drain();
  }

  /** Stops the connection now (shutdown after the grace period). */
  abort(termination: Termination): void {
    this.setTermination(termination);
    if (this.native && this.phase !== 'connect') return this.nativeFinished ? undefined : this.native.abort();
    this.client.destroy();
    this.server?.destroy();
  }

  private setTermination(termination: Termination, reason: string | null = null): void {
    if (this.termination !== null) return;
    this.termination = termination;
    this.reason = reason;
  }

  private maybeDone(): void {
    if (this.logged || !this.clientClosed || !this.serverClosed) return;
    this.logged = true;
    const record = this.logFields();
    this.frontend.logger.info(record, 'connection');
    this.frontend.recordDone(record);
    this.owner.connectionDone(this, this.frontend);
  }

  /** Bytes from and to the client so far, not counting a consumed PROXY header; the native loop's counts once it carries the connection. */
  private clientBytes(): { bytesIn: number; bytesOut: number } {
    if (this.native) {
      const bytes = this.native.counters();
      return { bytesIn: Math.max(0, bytes.fromA - this.proxyHeaderLength), bytesOut: bytes.toA };
    }
    const header = this.client === this.socket ? this.proxyHeaderLength : 0;
    return { bytesIn: Math.max(0, this.client.bytesRead - header), bytesOut: this.client.bytesWritten };
  }

  /**
   * The connection log line of SPEC §3. Bytes are counted on the stream the
   * application data flowed on: decrypted bytes once TLS is terminated.
   */
  logFields(): ConnectionRecord {
    const view = this.view;
    const hello = this.hello;
    // In http mode: the last request, and where it went unless the connection was handed on to a splice.
    const session = this.httpSession;
    const request = session?.last ?? null;
    const routed = this.backend === null ? (request ?? { backend: this.httpEntry, server: null }) : null;
    return {
      client: this.clientAddress,
      frontend: this.frontend.name,
      listen: this.listen.address.text,
      protocol: view?.protocol ?? (this.outerHello ? 'tls' : null),
      tls: this.encrypted || view?.protocol === 'tls' || this.outerHello !== undefined,
      sni: hello?.sni ?? null,
      alpn: hello?.alpn.length ? hello.alpn : null,
      method: request ? request.method : (view?.http?.method ?? null),
      path: request ? request.path : (view?.http?.path ?? null),
      backend: routed ? routed.backend : (this.backend?.name ?? null),
      server: routed ? routed.server : (this.serverState?.name ?? null),
      ...this.clientBytes(),
      timings: {
        sniff: Math.round(this.sniffMs),
        queue: Math.round(this.queueMs + (session?.queueMs ?? 0)),
        connect: Math.round(this.connectMs + (session?.connectMs ?? 0)),
        total: Math.round(performance.now() - this.startedAt),
      },
      termination: this.termination ?? (this.firstEnd === 'server' ? 'server-close' : 'client-close'),
      ...(this.reason === null ? {} : { reason: this.reason }),
    };
  }

  // ---- the event handlers every connection shares -----------------------------------

  // Each socket carries its connection (kConnection), so one function per event serves them all: per-connection
  // arrow functions cost an idle spliced connection about 5 KB of heap (each got a dictionary of properties).

  private static readonly onSniffData = function (this: Owned, chunk: Buffer): void {
    this[kConnection]!.handleSniffData(chunk);
  };
  private static readonly onClientEnd = function (this: Owned): void {
    this[kConnection]!.handleClientEnd();
  };
  private static readonly onClientError = function (this: Owned, error: Error): void {
    this[kConnection]!.handleClientError(error);
  };
  private static readonly onClientTimeout = function (this: Owned): void {
    this[kConnection]!.handleClientTimeout();
  };
  private static readonly onClientClose = function (this: Owned): void {
    this[kConnection]!.handleClientClose();
  };
  private static readonly onServerEnd = function (this: Owned): void {
    this[kConnection]!.handleServerEnd();
  };
  private static readonly onServerError = function (this: Owned, error: Error): void {
    this[kConnection]!.handleServerError(error);
  };
  private static readonly onServerClose = function (this: Owned): void {
    this[kConnection]!.handleServerClose();
  };
  private static readonly onHandshakeError = function (this: Owned, error: Error & { reason?: string }): void {
    this[kConnection]!.handleHandshakeError(error);
  };
  private static readonly onHandshakeEnd = function (this: Owned): void {
    this[kConnection]!.handleHandshakeEnd();
  };
  private static readonly onSecure = function (this: Owned): void {
    this[kConnection]!.handleSecure();
  };

  /** What a connection listens to on its client socket while it owns it, and on its server socket; removed as one set. */
  private static readonly clientEvents: ReadonlyArray<readonly [string, SocketHandler]> = [
    ['data', ClientConnection.onSniffData],
    ['end', ClientConnection.onClientEnd],
    ['error', ClientConnection.onClientError],
    ['close', ClientConnection.onClientClose],
    ['timeout', ClientConnection.onClientTimeout],
  ];
  private static readonly serverEvents: ReadonlyArray<readonly [string, SocketHandler]> = [
    ['end', ClientConnection.onServerEnd],
    ['error', ClientConnection.onServerError],
    ['close', ClientConnection.onServerClose],
  ];

  // The delay is over, but a stalled loop (a long collection, a starved CPU) may hold bytes that arrived in
  // time and are not read yet: timers run before the poll phase reads them, immediates after it.
  private static readonly inspectDelayOver = (connection: ClientConnection): void => {
    setImmediate(ClientConnection.inspectDelayDecide, connection, connection.timer);
  };
  private static readonly inspectDelayDecide = (connection: ClientConnection, fired: NodeJS.Timeout | null): void => {
    // Decided (or closed, or sniffing again after a handshake with a timer of its own) since this delay ran out: nothing to do.
    if (connection.timer === fired) connection.handleInspectDelay();
  };
  private static readonly handshakeTimedOut = (connection: ClientConnection): void => connection.handleHandshakeTimeout();
}

/** HTTP clients get an HTTP answer when nothing of a response was sent yet (SPEC §4). */
function httpAnswer(termination: Termination): Buffer | null {
  switch (termination) {
    case 'no-server':
    case 'connect-error':
    case 'queue-timeout':
      return HTTP_503;
    case 'connect-timeout':
      return HTTP_504;
    default:
      return null;
  }
}

const trustedSets = new WeakMap<Listen, CidrSet>();

/** May this peer send a PROXY header to this listener (its trustedProxies, compiled once)? */
function trustedProxy(listen: Listen, ip: string): boolean {
  if (!listen.trustedProxies) return true;
  let set = trustedSets.get(listen);
  if (!set) {
    set = compileCidrs(listen.trustedProxies);
    trustedSets.set(listen, set);
  }
  return cidrSetHas(set, ip);
}

function ignoreError(): void {
  // The TLSSocket over this socket reports its errors.
}

