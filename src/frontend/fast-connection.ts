import { performance } from 'node:perf_hooks';
import type { Listen } from '../config/types.js';
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import { connectFailedWith, NativeConnectTimeout, nativelyConnectable, type ConnectError } from '../backend/connect.js';
import type { ConnectionRecord } from '../observe/record.js';
import type { Termination } from '../observe/termination.js';
import type { RouteFacts } from '../route/facts.js';
import type { HttpHead, ProbedProtocol, RouteProtocol, TlsHello } from '../sniff/probe.js';
import { Sniffer, type SniffView } from '../sniff/sniffer.js';
import {
  answerFront,
  closeAccepted,
  connectFront,
  peekFront,
  watchFront,
  type AcceptedClient,
  type FrontJob,
  type FrontOwner,
  type NativeSplice,
  type NativeSpliceResult,
} from '../splice/native.js';
import { formatAddress } from './client-address.js';
import { decide } from './decide.js';
import type { FrontendRuntime } from './frontend.js';

/** The raw handle Node's accept made (a TCPWrap): all a fast connection uses of it. */
export interface AcceptedHandle {
  readonly fd: number;
  close(callback?: () => void): void;
}

/** The descriptor of a client the native thread accepted (AcceptedClient): closed here, or made a net.Socket of by the host. */
export class AcceptedDescriptor implements AcceptedHandle {
  constructor(readonly fd: number) {}

  close(): void {
    closeAccepted(this.fd);
  }
}

/** Where a fast connection got to when it hands over to the JavaScript path (ClientConnection takes it from there). */
export interface FastStart {
  /** performance.now() at accept: the inspect delay and the timings count from there. */
  readonly startedAt: number;
  /** The backend it connected to, the servers of it already tried (and failed), and how the last one failed. */
  readonly backend: BackendPool | null;
  readonly tried: ReadonlySet<ServerState>;
  readonly failure: ConnectError | null;
  /** Made to decide now by the sniff budget: the JavaScript path decides on what has come, without entering the budget again (which would push out the next oldest, and so on down the line). */
  readonly budgetSpent: boolean;
}

/** Set on the net.Socket made of a fast connection's handle (fallBack): where it got to. */
export const kFastStart = Symbol('sniffmux.fastStart');

export function fastStartOf(socket: object): FastStart | undefined {
  return (socket as { [kFastStart]?: FastStart })[kFastStart];
}

/** The listener a fast connection came in on, as far as it needs to know: the host's own record of it, kept for the host. */
export interface FastListener {
  readonly listen: Listen;
  /** The port it is bound to: the connection's local port. */
  readonly port: number;
}

/** The Instance, as a fast connection sees it. */
export interface FastHost<L extends FastListener> {
  /** The JavaScript path takes the connection over: a net.Socket is made of the handle, every byte still unread. */
  fallBack(connection: FastConnection<L>, frontend: FrontendRuntime, handle: AcceptedHandle, start: FastStart): void;
  connectionDone(connection: FastConnection<L>, frontend: FrontendRuntime): void;
}

type Phase = 'sniff' | 'connect' | 'splice' | 'done';

/**
 * The common case without a net.Socket: a plain TCP client whose first
 * bytes decide a tcp-mode backend at once, spliced by the native thread.
 * Node accepted it (its raw handle). Its first bytes are peeked at without
 * being read: at once, as they have usually come with the accept
 * (peekFront), else by the native thread when they come (watchFront). The
 * rules decide, and the thread connects and splices — JavaScript never
 * reads a byte or makes a stream. Anything else (more bytes needed, a policy
 * request, TLS to terminate, http mode, a queue, a refusal, a connect that
 * fails) falls back to a ClientConnection over the same handle, which reads
 * the same bytes, so nothing differs but the cost.
 */
export class FastConnection<L extends FastListener = FastListener> implements RouteFacts, FrontOwner {
  // RouteFacts
  final = false;
  readonly encrypted = false;
  readonly srcIp: string;

  private phase: Phase = 'sniff';
  private readonly clientAddress: string;
  private readonly startedAt: number;
  private readonly sniffer: Sniffer;
  private view: SniffView | undefined;
  /** What had come by the accept (peekFront, or the thread's): decided on at start, with no thread involved until the connect. */
  private peekedAtAccept: Buffer | null;
  private peekedEof = false;
  private peekedErrno = 0;
  /** The thread's side of it: watching for the first bytes, or (made by the connect) connecting and splicing. */
  private job: FrontJob | null = null;
  private timer: NodeJS.Timeout | null = null;
  private backend: BackendPool | null = null;
  private serverState: ServerState | null = null;
  private readonly tried = new Set<ServerState>();
  private sniffMs = 0;
  private connectMs = 0;
  private connectTimeout: NativeConnectTimeout | null = null;
  private termination: Termination | null = null;
  private firstEnd: 'client' | 'server' | null = null;
  private bytes = { bytesIn: 0, bytesOut: 0 };

  constructor(
    private readonly handle: AcceptedHandle,
    private readonly frontend: FrontendRuntime,
    readonly listener: L,
    private readonly host: FastHost<L>,
    srcIp: string,
    clientPort: number,
    /** accepted by the native thread, which watches it already (else Node accepted it: handle is its TCPWrap) */
    accepted?: AcceptedClient,
  ) {
    this.srcIp = srcIp;
    this.startedAt = performance.now() - (accepted?.ageMs ?? 0);
    this.clientAddress = formatAddress(srcIp, clientPort);
    const maxBytes = frontend.config.inspect.maxBytes;
    this.sniffer = new Sniffer({ maxBytes });
    if (accepted) {
      this.job = accepted.job;
      accepted.job.owner = this;
      // A reload may have lowered inspect.maxBytes since the listener was made with it.
      this.peekedAtAccept = accepted.first && accepted.first.length > maxBytes ? accepted.first.subarray(0, maxBytes) : accepted.first;
      this.peekedEof = accepted.eof;
      this.peekedErrno = accepted.errno;
    } else {
      this.peekedAtAccept = peekFront(handle.fd, maxBytes);
      if (this.peekedAtAccept === null) this.job = watchFront(handle.fd, maxBytes, this);
    }
    if (this.peekedAtAccept === null) this.watch();
  }

  /** Once the host counts it as open: decides on the bytes that came with the accept, if any (else the thread is watching). */
  start(): void {
    const first = this.peekedAtAccept;
    this.peekedAtAccept = null;
    if (first !== null) this.frontPeeked(first, this.peekedEof || first.length === 0, this.peekedErrno);
  }

  /** Nothing has come yet: the thread waits for the first bytes, within the inspect delay and the sniff budget. */
  private watch(): void {
    this.timer = setTimeout(FastConnection.inspectDelayOver, this.frontend.config.inspect.delay, this);
    this.frontend.process.sniffBudget.enter(this, this.srcIp);
  }

  // ---- RouteFacts ---------------------------------------------------------

  get localPort(): number {
    return this.listener.port;
  }

  probe(protocol: ProbedProtocol): 'match' | 'no-match' | 'need-more' {
    return this.view ? this.view.probe(protocol) : 'need-more';
  }
  get protocol(): RouteProtocol | undefined {
    return this.view?.protocol;
  }
  get hello(): TlsHello | undefined {
    return this.view?.hello;
  }
  get http(): HttpHead | undefined {
    return this.view?.http;
  }

  // ---- sniffing -----------------------------------------------------------

  frontPeeked(bytes: Buffer, eof: boolean, errno: number): void {
    if (this.phase !== 'sniff') return;
    if (errno) return this.fallBack();
    this.final = eof || bytes.length >= this.frontend.config.inspect.maxBytes;
    this.view = this.sniffer.update(bytes, this.final);
    const outcome = decide(this.frontend.config, this.frontend.routes, this);
    if (outcome.kind === 'policy') return this.answerPolicy();
    if (outcome.kind !== 'backend') return this.fallBack();
    this.route(this.frontend.pools.get(outcome.backend)!);
  }

  /** The sniff budget is spent: the JavaScript path decides it at once (as the inspect delay's end). */
  decideNow(): void {
    if (this.phase === 'sniff') this.fallBack(null, true);
  }

  private static inspectDelayOver(connection: FastConnection): void {
    connection.timer = null;
    // Bytes may be on their way: the JavaScript path reads what has come, then decides (its delay has run out too).
    if (connection.phase === 'sniff') connection.fallBack();
  }

  private stopSniffing(): void {
    this.frontend.process.sniffBudget.leave(this);
    this.sniffMs = performance.now() - this.startedAt;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.sniffer.done();
  }

  /** A Flash policy request: the thread sends the answer and a FIN, then drops what the client sends until it closes, as the JavaScript path does. */
  private answerPolicy(): void {
    this.job?.release(); // the watching job: the answer is another
    this.job = null;
    try {
      this.job = answerFront(this.handle.fd, this, this.frontend.policyResponse, this.frontend.config.timeouts.client);
    } catch {
      return this.fallBack();
    }
    this.stopSniffing();
    this.phase = 'splice';
    this.termination = 'policy-served';
  }

  // ---- connect and splice -------------------------------------------------

  /** Straight to a server when one is free now and the thread can carry it; anything else is the JavaScript path's. */
  private route(pool: BackendPool): void {
    const carriable =
      this.frontend.process.spliceNatively && pool.tls === null && !pool.config.proxyProtocol && (pool.config.mode !== 'http' || this.view?.protocol !== 'http');
    const server = carriable ? pool.acquireNow(this.tried, this.srcIp) : null;
    if (!server) return this.fallBack();
    if (!nativelyConnectable(server.config.address)) {
      pool.release(server);
      return this.fallBack();
    }
    this.stopSniffing();
    this.phase = 'connect';
    this.backend = pool;
    this.serverState = server;
    this.tried.add(server);
    const address = server.config.address;
    const host = address.host || '127.0.0.1';
    const idleMs = pool.config.timeouts.tunnel ?? this.frontend.config.timeouts.tunnel;
    try {
      if (this.job) this.job.connect(host, address.port, null, idleMs);
      else this.job = connectFront(this.handle.fd, this.frontend.config.inspect.maxBytes, this, host, address.port, idleMs);
    } catch (error) {
      return this.connectFailed(connectFailedWith(address, error as Error));
    }
    this.connectTimeout = new NativeConnectTimeout(address, pool.config.timeouts.connect, this.job);
  }

  spliceConnected(_splice: NativeSplice): void {
    this.connectTimeout!.connected();
    this.connectMs = performance.now() - this.startedAt - this.sniffMs;
    this.serverState!.total++;
    if (this.phase === 'connect') this.phase = 'splice';
  }

  spliceConnectFailed(error: NodeJS.ErrnoException): void {
    this.connectFailed(this.connectTimeout!.failure(error));
  }

  /** As ClientConnection counts a failed try; then the JavaScript path tries the next server, or refuses. */
  private connectFailed(failure: ConnectError): void {
    const server = this.serverState!;
    const pool = this.backend!;
    pool.release(server);
    this.serverState = null;
    if (this.phase === 'done') return this.finish(); // aborted (shutdown) while connecting
    this.frontend.connectFailed(pool, server, failure);
    this.fallBack(failure);
  }

  spliceDone(r: NativeSpliceResult): void {
    if (r.firstEnd) this.firstEnd ??= r.firstEnd === 'a' ? 'client' : 'server';
    if (r.end === 'a-timeout' || r.end === 'b-timeout') this.termination ??= 'client-timeout';
    this.bytes = { bytesIn: r.bytes.fromA, bytesOut: r.bytes.toA };
    if (this.serverState) this.backend!.release(this.serverState);
    this.finish();
  }

  // ---- the end --------------------------------------------------------------

  private fallBack(failure: ConnectError | null = null, budgetSpent = false): void {
    if (this.phase === 'sniff') this.stopSniffing();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.phase = 'done';
    this.job?.release();
    this.host.fallBack(this, this.frontend, this.handle, { startedAt: this.startedAt, backend: this.backend, tried: this.tried, failure, budgetSpent });
  }

  drain(): void {}

  /** Stops the connection now (shutdown after the grace period). */
  abort(termination: Termination): void {
    this.termination ??= termination;
    if (this.phase === 'sniff') {
      this.stopSniffing();
      this.phase = 'done';
      this.job?.release();
      return this.finish();
    }
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.job!.abort(); // its end (spliceDone or spliceConnectFailed) finishes
  }

  private finish(): void {
    this.phase = 'done';
    this.handle.close();
    const record = this.logFields();
    this.frontend.logger.info(record, 'connection');
    this.frontend.recordDone(record);
    this.host.connectionDone(this, this.frontend);
  }

  /** The connection log line of SPEC §3, as ClientConnection writes it. */
  logFields(): ConnectionRecord {
    const view = this.view;
    const hello = view?.hello;
    const live = this.phase === 'splice' ? this.job!.counters() : null;
    return {
      client: this.clientAddress,
      frontend: this.frontend.name,
      listen: this.listener.listen.address.text,
      protocol: view?.protocol ?? null,
      tls: view?.protocol === 'tls',
      sni: hello?.sni ?? null,
      alpn: hello?.alpn.length ? hello.alpn : null,
      method: view?.http?.method ?? null,
      path: view?.http?.path ?? null,
      backend: this.backend?.name ?? null,
      server: this.serverState?.name ?? null,
      ...(live ? { bytesIn: live.fromA, bytesOut: live.toA } : this.bytes),
      timings: { sniff: Math.round(this.sniffMs), queue: 0, connect: Math.round(this.connectMs), total: Math.round(performance.now() - this.startedAt) },
      termination: this.termination ?? (this.firstEnd === 'server' ? 'server-close' : 'client-close'),
    };
  }
}
