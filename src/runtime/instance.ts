import cluster from 'node:cluster';
import net from 'node:net';
import v8 from 'node:v8';
import { performance } from 'node:perf_hooks';
import type { Config, Listen } from '../config/types.js';
import { AdminServer } from '../admin/server.js';
import { BackendPool } from '../backend/pool.js';
import { onDescriptorShortage } from '../backend/connect.js';
import { HealthMonitor } from '../backend/health/monitor.js';
import { ClientConnection } from '../frontend/connection.js';
import { AcceptedDescriptor, FastConnection, kFastStart, type AcceptedHandle, type FastHost, type FastStart } from '../frontend/fast-connection.js';
import { FrontendRuntime, type ProcessCounters } from '../frontend/frontend.js';
import { bindListener, boundAddress } from '../frontend/listener.js';
import { SniffBudget } from '../frontend/sniff-budget.js';
import { formatAddress, unmapIPv4 } from '../frontend/client-address.js';
import type { Logger } from '../observe/log.js';
import { Stats } from '../observe/stats.js';
import { compileRoutes } from '../route/index.js';
import { configWarnings } from './warnings.js';
import { SniffmuxError } from '../errors.js';
import { listenNatively, nativeConnectDups, nativeDescriptorReserve, nativeSpliceUnavailable, startNativeSplice, type AcceptedClient, type NativeListener } from '../splice/native.js';
import { descriptorBudget, readDescriptorUse, type DescriptorBudget } from './descriptors.js';
import { FairStart } from './fair-start.js';
import { HeapPressure, oldGenerationLimit } from './heap-pressure.js';
import { IdleCollector } from './idle-gc.js';

export interface BoundAddress {
  readonly frontend: string;
  readonly listen: string;
  readonly host: string;
  readonly port: number;
}

/** A connection the Instance holds open: a ClientConnection, or a FastConnection the native thread carries. */
type Open = ClientConnection | FastConnection<BoundListener>;

/** The raw handle Node's accept made (TCPWrap), as the accept hook gets it. */
type ClientHandle = AcceptedHandle & { getpeername(out: { address?: string; port?: number }): number; setNoDelay(on: boolean): number };

/**
 * One running sniffmux: the frontends and backends of a config, their
 * listeners and every open connection. `start` binds, `stop` drains.
 */
export class Instance implements FastHost<BoundListener> {
  /** Finished connections, added up for /status and /metrics. */
  readonly stats = new Stats();
  readonly startedAt = Date.now();
  private current: Generation;
  private readonly admin: AdminServer | null;
  private readonly counters: ProcessCounters;
  /** Bound listeners by listen key; a reload keeps those whose address stays. */
  private readonly servers = new Map<string, BoundListener>();
  private readonly connections = new Set<Open>();
  /** Accepted while a maxconn was reached: held unread, as the kernel's backlog would, until a slot frees. */
  private readonly pending: { socket: net.Socket; listener: BoundListener }[] = [];
  /** Accepted, not yet looked at: started round-robin across client addresses. */
  private readonly starting = new FairStart<BoundListener | WaitingClient>((socket, item) =>
    item instanceof WaitingClient ? this.startWaiting(item) : this.accept(socket!, item),
  );
  private drained: (() => void) | null = null;
  /** Settles once every listener refuses new clients (stopAccepting, the start of stop). */
  private refusing: Promise<void> | null = null;
  private started = false;
  private readonly heap = new HeapPressure();
  private readonly idleCollector = new IdleCollector({ busy: () => this.counters.sniffBudget.size > 0 });
  private heapCheckedAt = 0;
  /** Re-checks held connections while any wait (memory can free without a connection closing). */
  private pendingTimer: NodeJS.Timeout | null = null;
  /** Descriptor shortages since the last one logged, and when that was (logged at most once a second). */
  private shortages = 0;
  private shortageLoggedAt = 0;
  /** Connections connecting the native way now, each holding a dup of its client (takeConnectDup). */
  private connectDups = 0;
  private unsubscribeShortage: (() => void) | null = null;
  /** What the open-file limit allows (made once at start); null where it cannot be read. */
  private descriptors: DescriptorBudget | null = null;

  constructor(
    config: Config,
    readonly logger: Logger,
  ) {
    this.counters = {
      active: 0,
      maxconn: config.global.maxconn,
      spliceNatively: spliceNatively(config),
      descriptorCeiling: 0,
      sniffBudget: new SniffBudget(config.global.sniffBudget),
    };
    this.current = this.build(config, null);
    this.admin = config.admin ? new AdminServer(config.admin, this, logger) : null;
  }

  get config(): Config {
    return this.current.config;
  }
  get frontends(): readonly FrontendRuntime[] {
    return this.current.frontends;
  }
  get pools(): ReadonlyMap<string, BackendPool> {
    return this.current.pools;
  }
  get health(): HealthMonitor {
    return this.current.health;
  }

  /**
   * Everything a config gives at run time. Built completely before it is
   * used, so a config whose certificates cannot be loaded changes nothing.
   */
  private build(config: Config, previous: Generation | null): Generation {
    const pools = new Map(config.backends.map((b) => [b.name, new BackendPool(b, previous?.pools.get(b.name))]));
    const frontends = config.frontends.map((fe) => {
      const runtime = new FrontendRuntime(fe, compileRoutes(fe), config.flashPolicy, pools, this.logger, this.counters, this.stats);
      const before = previous?.frontends.find((f) => f.name === fe.name);
      if (before) {
        runtime.active = before.active;
        runtime.total = before.total;
      }
      return runtime;
    });
    return { config, pools, frontends, health: new HealthMonitor(pools.values(), this.logger) };
  }

  /** Binds every listen address; on any failure closes what was bound and throws a one-line SniffmuxError. */
  async start(): Promise<void> {
    for (const warning of configWarnings(this.config)) this.logger.warn(warning);
    try {
      const bound = await this.bindAll(this.current.frontends, this.config.global.splice);
      for (const [key, listener] of bound) this.servers.set(key, listener);
      await this.admin?.start();
    } catch (error) {
      await Promise.all([this.closeListeners(), this.admin?.stop()]);
      throw error;
    }
    this.budgetDescriptors();
    this.health.start();
    this.unsubscribeShortage = onDescriptorShortage(this.descriptorShortage);
    this.started = true;
  }

  /**
   * Once, at start (listeners bound, nothing served yet): the connections the
   * open-file limit allows, served and held (descriptors.ts), which then act
   * as a global maxconn. Said at start, as a warning when fewer than maxconn.
   */
  private budgetDescriptors(): void {
    const use = readDescriptorUse();
    if (use === null) return;
    const checked = this.config.backends.reduce((n, b) => n + (b.healthCheck ? b.servers.length : 0), 0);
    // Reserved whenever the thread may accept, since a reload can add its first such listener after this budget is made.
    const native = nativeDescriptorReserve(use.limit, nativeAcceptPossible());
    const budget = descriptorBudget(use, checked + native, MAX_PENDING);
    this.descriptors = budget;
    this.counters.descriptorCeiling = budget.connections;
    this.counters.sniffBudget.setLimits(this.sniffLimits(this.config));
    const maxconn = this.config.global.maxconn;
    if (maxconn > 0 && budget.connections >= maxconn) return;
    const fields = { openFileLimit: budget.limit, inUse: budget.inUse, connections: budget.connections, held: budget.held, maxconn };
    const text =
      `the open-file limit (${budget.limit}) allows ${budget.connections} connections at once (2 descriptors each)` +
      `${maxconn > 0 ? `, fewer than global.maxconn ${maxconn}` : ''}: beyond that new ones are held (up to ${budget.held}), then refused; raise ulimit -n for more`;
    if (maxconn > 0) this.logger.warn(fields, text);
    else this.logger.info(fields, text);
  }

  /**
   * global.sniffBudget, its total at most half the connections the
   * open-file limit allows: past it the oldest sniffing connection is
   * decided at once, so silent clients cannot take every slot and leave real
   * ones held behind them.
   */
  private sniffLimits(config: Config): { total: number; perSource: number } {
    const { total, perSource } = config.global.sniffBudget;
    const ceiling = this.counters.descriptorCeiling;
    return { total: ceiling > 0 ? Math.min(total, Math.max(1, Math.floor(ceiling / 2))) : total, perSource };
  }

  /** Binds the listen addresses of these frontends that are not bound yet; all or none. */
  private async bindAll(frontends: readonly FrontendRuntime[], splice: Config['global']['splice']): Promise<Map<string, BoundListener>> {
    const bound = new Map<string, BoundListener>();
    try {
      for (const frontend of frontends) {
        for (const listen of frontend.config.listen) {
          const key = listenKey(listen, frontend.name);
          const existing = this.servers.get(key);
          if (existing) {
            bound.set(key, existing);
            continue;
          }
          const listener: BoundListener = { server: null!, native: null, frontend: frontend.name, listen, host: '', port: 0 };
          listener.server = await bindListener(
            listen,
            (socket) => this.arrive(socket, listener),
            (error) => this.acceptFailed(listener, error),
          );
          bound.set(key, listener);
          const { host, port } = boundAddress(listener.server);
          listener.host = host;
          listener.port = port;
          if (!this.acceptNatively(listener, frontend, splice)) this.hookAccept(listener);
          // accept: who accepts its clients, the native thread or Node (a PROXY-header listener, a cluster worker, global.splice js)
          const accept = listener.native ? 'native' : 'node';
          this.logger.info({ frontend: frontend.name, listen: listen.address.text, accept, host, port }, 'listening');
        }
      }
    } catch (error) {
      for (const [key, listener] of bound) if (!this.servers.has(key)) void closeListener(listener);
      throw error;
    }
    return bound;
  }

  /**
   * Swaps in a new config for new connections (SIGHUP): routes, backends,
   * certificates and listeners. Open connections keep the config they
   * started with and are never cut; servers that did not change keep their
   * state (health, open connections). If anything of the new config cannot be
   * set up (a certificate, an address), nothing changes and the error is thrown.
   */
  async reload(config: Config): Promise<void> {
    const previous = this.current;
    const native = spliceNatively(config);
    const next = this.build(config, previous);
    const bound = await this.bindAll(next.frontends, config.global.splice);
    const removed = [...this.servers].filter(([key]) => !bound.has(key)).map(([, listener]) => listener);
    this.servers.clear();
    for (const [key, listener] of bound) {
      const frontend = next.frontends.find((f) => f.config.listen.some((l) => listenKey(l, f.name) === key))!;
      listener.frontend = frontend.name;
      listener.listen = frontend.config.listen.find((l) => listenKey(l, frontend.name) === key)!;
      this.servers.set(key, listener);
    }
    // "stopped listening" is logged once the port refuses: the native thread closes its listening socket asynchronously
    await Promise.all(
      removed.map(async (listener) => {
        await stopAcceptingOn(listener);
        this.logger.info({ frontend: listener.frontend, listen: listener.listen.address.text }, 'stopped listening');
      }),
    );
    previous.health.stop();
    this.current = next;
    this.counters.maxconn = config.global.maxconn;
    this.counters.spliceNatively = native;
    this.counters.sniffBudget.setLimits(this.sniffLimits(config));
    if (this.started) next.health.start();
    for (const warning of configWarnings(config)) this.logger.warn(warning);
    this.servePending();
  }

  /** Where the admin listener is, or null without `admin`. */
  adminAddress(): { host: string; port: number } | null {
    return this.admin?.address() ?? null;
  }

  /** The connections open now (the status page adds their bytes so far). */
  openConnections(): Iterable<Open> {
    return this.connections;
  }

  /** Where each listener actually is (tests listen on port 0). */
  addresses(): BoundAddress[] {
    return [...this.servers.values()].map(({ frontend, listen, host, port }) => ({ frontend, listen: listen.address.text, host, port }));
  }

  /** The first bound port of a frontend. */
  port(frontend: string, index = 0): number {
    const found = this.addresses().filter((a) => a.frontend === frontend)[index];
    if (!found) throw new Error(`no listener ${index} for frontend ${frontend}`);
    return found.port;
  }

  /** Connections open and served, counting those accepted and waiting their start (fair-start.ts): they were served at once before it. */
  get activeConnections(): number {
    return this.connections.size + this.starting.size;
  }

  /**
   * Puts the fast path in front of Node's own: each accepted connection's raw
   * handle is offered to fastArrive first, and only what it declines becomes
   * a net.Socket (Node's onconnection, then arrive). In a cluster worker the
   * handle is the one the primary sent. Not for a listener that expects a
   * PROXY header (the JavaScript path reads it).
   */
  private hookAccept(listener: BoundListener): void {
    const handle = (listener.server as unknown as { _handle?: { onconnection?: (err: number, client: ClientHandle) => void } })._handle;
    const nodeOwn = handle?.onconnection;
    if (!handle || !nodeOwn || listener.listen.proxyProtocol) return;
    handle.onconnection = (err, client) => {
      if (err || !this.fastArrive(client, listener)) nodeOwn.call(handle, err, client);
    };
  }

  /**
   * The native thread accepts this listener's clients (NativeListener): the
   * Node server, bound, gives the thread its socket and closes its own
   * descriptor, so that libuv accepts nothing more. Not for a listener that
   * expects a PROXY header, not in a cluster worker (the primary holds the
   * socket), not with global.splice js, nor with SNIFFMUX_NATIVE_ACCEPT=0.
   */
  private acceptNatively(listener: BoundListener, frontend: FrontendRuntime, splice: Config['global']['splice']): boolean {
    const fd = (listener.server as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (listener.listen.proxyProtocol || typeof fd !== 'number' || fd < 0 || splice === 'js' || !nativeAcceptPossible()) return false;
    if (startNativeSplice() !== null) return false;
    // Every client of it would be handed back to Node: accepting in the thread would only add a hop.
    if (!mayGoFast(frontend)) return false;
    try {
      listener.native = listenNatively(fd, frontend.config.inspect.maxBytes, {
        accepted: (client) => this.nativeArrive(client, listener),
        acceptFailed: (error) => this.acceptFailed(listener, error),
      });
    } catch {
      return false;
    }
    listener.server.close();
    return true;
  }

  /** A new client served the fast way (FastConnection) when it starts at once and the native thread can take it; false: Node's way. */
  private fastArrive(client: ClientHandle, listener: BoundListener): boolean {
    if (typeof client.fd !== 'number' || client.fd < 0) return false;
    const frontend = this.fastFrontend(listener);
    const peer: { address?: string; port?: number } = {};
    if (!frontend || client.getpeername(peer) !== 0) return false;
    const source = unmapIPv4(peer.address ?? '');
    if (!this.startsFast(frontend, source)) return false;
    // As Node's own accept does for a server made with noDelay (bindListener): small spliced writes are not held back.
    client.setNoDelay(true);
    let connection: FastConnection<BoundListener>;
    try {
      connection = new FastConnection(client, frontend, listener, this, source, peer.port ?? 0);
    } catch {
      return false; // the native thread cannot take it: Node's way
    }
    this.opened(connection, frontend);
    connection.start();
    return true;
  }

  /** A client the native thread accepted: served the fast way if it may be (as fastArrive), else taken back as a net.Socket, Node's way. */
  private nativeArrive(client: AcceptedClient, listener: BoundListener): void {
    const frontend = this.fastFrontend(listener);
    const source = unmapIPv4(client.address);
    if (frontend && !this.waitingFull()) {
      if (this.starting.startsNow(source)) {
        if (this.admitsFast(frontend, source)) return this.startFast(client, frontend, listener, source);
      } else if (client.first !== null) {
        // Its turn comes round-robin, as a net.Socket's would (fair-start.ts), but it waits as it is: the thread holds it, its first bytes told. Made a net.Socket to wait, it went Node's way, at twice the CPU, and while clients come from several addresses every one waits.
        return this.starting.push(source, null, new WaitingClient(client, listener, source));
      }
    }
    client.job.release();
    this.arrive(descriptorSocket(client.fd), listener);
  }

  /** A waiting client's turn: the fast way if it may still go so, else a net.Socket from here, served, held or refused as accept decides. */
  private startWaiting(waiting: WaitingClient): void {
    const { client, listener, source } = waiting;
    const frontend = this.fastFrontend(listener);
    if (frontend && this.admitsFast(frontend, source)) {
      // Its wait counts towards the inspect delay and the timings, as the hold in the thread does.
      return this.startFast({ ...client, ageMs: client.ageMs + performance.now() - waiting.since }, frontend, listener, source);
    }
    client.job.release();
    this.accept(descriptorSocket(client.fd), listener);
  }

  private startFast(client: AcceptedClient, frontend: FrontendRuntime, listener: BoundListener, source: string): void {
    const connection = new FastConnection(new AcceptedDescriptor(client.fd), frontend, listener, this, source, client.port, client);
    this.opened(connection, frontend);
    connection.start();
  }

  /** The frontend of a listener when new clients may go the fast way at all. */
  private fastFrontend(listener: BoundListener): FrontendRuntime | undefined {
    return this.counters.spliceNatively && this.started ? this.frontendOf(listener) : undefined;
  }

  /** May a new client from source start at once, the fast way (nothing held, nothing refused)? Admitted to the sniff budget if so. */
  private startsFast(frontend: FrontendRuntime, source: string): boolean {
    return !this.waitingFull() && this.starting.startsNow(source) && this.admitsFast(frontend, source);
  }

  /** Starting now, may it go the fast way: its frontend below maxconn, memory not tight, and the sniff budget admits its address? */
  private admitsFast(frontend: FrontendRuntime, source: string): boolean {
    return !frontend.full && !this.memoryTight() && this.counters.sniffBudget.admit(source);
  }

  /** A FastConnection hands over (FastHost): the handle becomes a net.Socket, counted and served as any other from here. */
  fallBack(connection: FastConnection<BoundListener>, frontend: FrontendRuntime, handle: AcceptedHandle, start: FastStart): void {
    const listener = connection.listener;
    this.forget(connection, frontend);
    frontend.total--; // counted again when served
    const socket =
      handle instanceof AcceptedDescriptor
        ? descriptorSocket(handle.fd)
        : new net.Socket({ handle: handle as never, allowHalfOpen: true, pauseOnCreate: true, readable: true, writable: true } as net.SocketConstructorOpts);
    (socket as unknown as { [kFastStart]: FastStart })[kFastStart] = start;
    this.arrive(socket, listener);
  }

  /** A new client on one of our listeners: it waits its turn to be started (fair-start.ts), unless too many already wait. */
  private arrive(socket: net.Socket, listener: BoundListener): void {
    if (this.waitingFull()) return this.refuse(socket, listener, this.fullReason());
    const source = unmapIPv4(socket.remoteAddress ?? '');
    if (this.starting.startsNow(source)) return this.accept(socket, listener);
    this.starting.push(source, socket, listener);
  }

  /** Its turn: served now, or held until below maxconn. */
  private accept(socket: net.Socket, listener: BoundListener): void {
    const frontend = this.frontendOf(listener);
    if (!frontend) return void socket.destroy();
    if (!this.counters.sniffBudget.admit(unmapIPv4(socket.remoteAddress ?? ''))) {
      return this.refuse(socket, listener, 'too many connections still sniffing from this address (sniffBudget.perSource)');
    }
    // Short of memory, even holding a connection costs too much: refused, as beyond a full hold queue.
    if (this.memoryTight()) return this.refuse(socket, listener, 'memory is tight');
    if (frontend.full) {
      if (this.waitingFull()) return this.refuse(socket, listener, this.fullReason());
      socket.pause();
      socket.on('error', ignoreError);
      this.pending.push({ socket, listener });
      // Memory can free without a connection closing (a collection): look again now and then while some wait.
      this.pendingTimer ??= setInterval(() => this.servePending(), 200).unref();
      return;
    }
    this.serve(socket, frontend, listener);
  }

  /**
   * The JavaScript heap is nearly at V8's limit (HeapPressure): new
   * connections are refused and held ones wait. Measured at most every 100 ms.
   */
  private memoryTight(): boolean {
    const now = performance.now();
    if (now - this.heapCheckedAt < 100) return this.heap.tight;
    this.heapCheckedAt = now;
    const { used_heap_size: used, heap_size_limit: sizeLimit } = v8.getHeapStatistics();
    const limit = oldGenerationLimit(sizeLimit);
    const active = this.connections.size;
    const change = this.heap.update(used, limit, active);
    if (change !== null) {
      const fields = { heapUsedMB: Math.round(used / 1048576), heapLimitMB: Math.round(limit / 1048576), active };
      if (change === 'tight') this.logger.warn(fields, 'memory is tight: refusing new connections until it frees');
      else this.logger.info(fields, 'memory freed: accepting again');
    }
    return this.heap.tight;
  }

  private serve(socket: net.Socket, frontend: FrontendRuntime, listener: BoundListener): void {
    this.opened(new ClientConnection(socket, frontend, listener.listen, this, listener.port), frontend);
    // Accepted paused (pauseOnConnect): reading starts now that the connection listens.
    socket.resume();
  }

  /**
   * May a connection connect the native way (connectSpliced), holding a
   * third descriptor, the thread's dup of its client, until the connect
   * settles? At most nativeConnectDups at once under a descriptor budget; the
   * others connect with two (connectFd), which costs a round trip to JS.
   */
  takeConnectDup(): boolean {
    if (this.descriptors !== null && this.connectDups >= nativeConnectDups) return false;
    this.connectDups++;
    return true;
  }

  returnConnectDup(): void {
    this.connectDups--;
  }

  /** A connection ended and was logged (ClientConnection calls it: one owner object instead of a closure per connection). */
  connectionDone(done: Open, frontend: FrontendRuntime): void {
    this.forget(done, frontend);
    this.servePending();
    if (this.connections.size === 0) this.drained?.();
  }

  /** A connection is served: counted on its frontend and the process. */
  private opened(connection: Open, frontend: FrontendRuntime): void {
    frontend.active++;
    frontend.total++;
    this.counters.active++;
    this.idleCollector.accepted();
    this.connections.add(connection);
  }

  /** A connection leaves the counts (done, or handed from the fast path to the JavaScript one). */
  private forget(done: Open, frontend: FrontendRuntime): void {
    // The frontend of that name now, which a reload may have replaced.
    const now = this.current.frontends.find((f) => f.name === frontend.name) ?? frontend;
    now.active--;
    this.counters.active--;
    this.connections.delete(done);
  }

  /** Serves held connections, oldest first, while their frontend is below its maxconn (and memory allows). */
  private servePending(): void {
    if (this.pending.length === 0 && this.pendingTimer) {
      clearInterval(this.pendingTimer);
      this.pendingTimer = null;
    }
    for (let i = 0; i < this.pending.length; ) {
      const { socket, listener } = this.pending[i]!;
      const frontend = this.frontendOf(listener);
      if (socket.destroyed || !frontend) {
        this.pending.splice(i, 1);
        socket.destroy();
        continue;
      }
      if (frontend.full || this.memoryTight()) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      socket.removeListener('error', ignoreError);
      socket.resume();
      this.serve(socket, frontend, listener);
    }
  }

  private frontendOf(listener: BoundListener): FrontendRuntime | undefined {
    return this.current.frontends.find((f) => f.name === listener.frontend);
  }

  /**
   * An accept failed (Node keeps listening). Out of file descriptors, libuv
   * mostly closes the clients it cannot accept without telling Node; then
   * the shortage shows when connecting to servers (descriptorShortage).
   */
  private acceptFailed(listener: BoundListener, error: NodeJS.ErrnoException): void {
    if (error.code === 'EMFILE' || error.code === 'ENFILE') return this.descriptorShortage(error, `accept on ${listener.listen.address.text}`);
    this.logger.warn({ frontend: listener.frontend, listen: listener.listen.address.text, error: error.code ?? error.message }, 'accept failed');
  }

  /**
   * This process is out of file descriptors: connects to servers wait for
   * one (within their connect timeout), health checks skip a beat, new
   * clients wait in the kernel's backlog or are closed by libuv. Logged at
   * most once a second, with how many times it happened since the last line.
   */
  private readonly descriptorShortage = (error: NodeJS.ErrnoException, where: string): void => {
    this.shortages++;
    const now = Date.now();
    if (now - this.shortageLoggedAt < 1000) return;
    this.shortageLoggedAt = now;
    this.logger.warn(
      { error: error.code, where, times: this.shortages, active: this.connections.size },
      'out of file descriptors: waiting for connections to close (raise ulimit -n or lower maxconn)',
    );
    this.shortages = 0;
  };

  /**
   * Would one more connection waiting unread (its start, or beyond a
   * maxconn) be one too many? A waiting one takes one descriptor now and
   * two once it is served, which it may be as soon as its turn comes: so
   * served and waiting together stay within the budget's served plus held,
   * which keeps both sides of every served one and each held one within the
   * open-file limit whatever order they are started in. (Counting a waiting
   * one as the single descriptor it holds today let a burst waiting to start
   * outgrow the limit as it was served: EMFILE under load.)
   */
  private waitingFull(): boolean {
    const waiting = this.starting.size + this.pending.length;
    const budget = this.descriptors;
    if (budget === null) return waiting >= MAX_PENDING;
    return this.connections.size + waiting >= budget.connections + budget.held;
  }

  /** Why a connection is refused when as many wait as may (held beyond maxconn, or not started yet). */
  private fullReason(): string {
    const budget = this.descriptors;
    const waiting = this.pending.length + this.starting.size;
    const held = budget?.held ?? MAX_PENDING;
    // The open-file limit is the cause when it set how many may wait, or how many may be served.
    if (budget !== null && (budget.held < MAX_PENDING || this.counters.active >= budget.connections)) {
      return `out of file descriptors: ${this.counters.active} connections served and ${waiting} waiting (open-file limit ${budget.limit})`;
    }
    return `maxconn reached and ${held} connections already waiting`;
  }

  /** Beyond maxconn and a full hold queue (or short of memory): closed at once, and logged with why. */
  private refuse(socket: net.Socket, listener: BoundListener, reason: string): void {
    this.logger.info(
      {
        client: formatAddress(unmapIPv4(socket.remoteAddress ?? ''), socket.remotePort ?? 0),
        frontend: listener.frontend,
        listen: listener.listen.address.text,
        termination: 'maxconn',
        reason,
      },
      'connection',
    );
    socket.destroy();
  }

  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then
   * closes the rest (logged with termination `shutdown`).
   */
  async stop(graceMs = this.config.global.grace): Promise<void> {
    void this.stopAccepting();
    this.health.stop();
    this.idleCollector.stop();
    this.unsubscribeShortage?.();
    const listenersClosed = this.closeListeners();
    // Accepted before the listeners closed: they are served, and drain, like the others.
    this.starting.flush();
    for (const connection of this.connections) connection.drain();
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const { socket } of this.pending.splice(0)) socket.destroy();

    if (this.pendingTimer) clearInterval(this.pendingTimer);
    this.pendingTimer = null;
    for (const connection of [...this.connections]) connection.abort('shutdown');
    if (this.connections.size > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await listenersClosed;
    // Last, so the status page can be watched while connections drain.
    await this.admin?.stop();
  }

  /**
   * Stops every listener accepting (stop() starts with it); settles once each
   * port refuses new clients: the native thread closes its listening sockets
   * a moment later than this call.
   */
  stopAccepting(): Promise<void> {
    this.refusing ??= Promise.all([...this.servers.values()].map(stopAcceptingOn)).then(() => undefined);
    return this.refusing;
  }

  /** Stops accepting at once; the promise settles when the listeners' last connections are gone. */
  private closeListeners(): Promise<void> {
    const closing = [...this.servers.values()].map(closeListener);
    this.servers.clear();
    return Promise.all(closing).then(() => undefined);
  }
}

interface Generation {
  readonly config: Config;
  readonly pools: ReadonlyMap<string, BackendPool>;
  readonly frontends: readonly FrontendRuntime[];
  readonly health: HealthMonitor;
}

/** A client the native thread accepted, waiting its turn (fair-start.ts) in the thread, its first bytes told. */
class WaitingClient {
  readonly since = performance.now();

  constructor(
    readonly client: AcceptedClient,
    readonly listener: BoundListener,
    readonly source: string,
  ) {}
}

interface BoundListener {
  /** Bound by Node; closed at once when the native thread accepts (native) */
  server: net.Server;
  native: NativeListener | null;
  /** The frontend it serves now (a reload may move an address to another frontend). */
  frontend: string;
  listen: Listen;
  host: string;
  /** The port it is bound to (the one chosen when 0 was asked): every accepted connection's local port. */
  port: number;
}

/**
 * Can any client of this frontend be carried by the native thread alone
 * (FastConnection): a policy answer, or a backend it may route to that is
 * plain TCP (no TLS to the server, no PROXY header, tcp mode)?
 */
function mayGoFast(frontend: FrontendRuntime): boolean {
  if (frontend.config.flashPolicy) return true;
  const names = [...frontend.config.rules.map((r) => r.use), ...(frontend.config.default ? [frontend.config.default] : [])];
  return names.some((name) => {
    const pool = frontend.pools.get(name);
    return pool !== undefined && pool.tls === null && !pool.config.proxyProtocol && pool.config.mode === 'tcp';
  });
}

/** Stops a listener accepting; settles once it has (its open connections go on). */
function closeListener(listener: BoundListener): Promise<void> {
  if (listener.native) return listener.native.close();
  return new Promise<void>((resolve) => listener.server.close(() => resolve()));
}

/** The native thread may accept in this process: not a cluster worker (the primary holds the socket), the addon built, not turned off. */
function nativeAcceptPossible(): boolean {
  return !cluster.isWorker && process.env.SNIFFMUX_NATIVE_ACCEPT !== '0' && nativeSpliceUnavailable === null;
}

/**
 * Stops a listener accepting; settles once its port refuses new clients
 * (Node's server.close() closes the descriptor at once, though its callback
 * waits for the open connections; the native thread closes its dup later).
 */
function stopAcceptingOn(listener: BoundListener): Promise<void> {
  if (listener.native) return listener.native.close();
  listener.server.close();
  return Promise.resolve();
}

/** A net.Socket of a client's descriptor the native thread accepted, paused as Node's accept makes it (pauseOnConnect). */
function descriptorSocket(fd: number): net.Socket {
  return new net.Socket({ fd, allowHalfOpen: true, pauseOnCreate: true, readable: true, writable: true } as net.SocketConstructorOpts);
}

/**
 * global.splice resolved on this machine, the native thread started if it
 * is used: 'native' without it is a start-up (or reload) error, 'auto' then
 * splices in JavaScript.
 */
function spliceNatively(config: Config): boolean {
  const wanted = config.global.splice;
  if (wanted === 'js') return false;
  const unavailable = startNativeSplice();
  if (unavailable === null) return true;
  if (wanted === 'native') {
    throw new SniffmuxError('SMX_ERR_CONFIG', `global.splice: native splice(2) is not available here (${unavailable}); use auto or js`);
  }
  return false;
}

/** Connections held unread beyond maxconn before new ones are refused (as a listen backlog). */
const MAX_PENDING = 4096;

/**
 * An address with the same PROXY-protocol expectation is the same listener
 * across reloads. Port 0 ("any free port") is never shared: each such listen
 * is its own, kept while its frontend keeps it; the config check
 * (listenCollisions in config/semantic.ts) refuses the one key that would clash.
 */
function listenKey(listen: Listen, frontend: string): string {
  const { host, port } = listen.address;
  return port === 0 ? `${host}|0|${listen.proxyProtocol}|${frontend}|${listen.address.text}` : `${host}|${port}|${listen.proxyProtocol}`;
}

function ignoreError(): void {
  // A held connection that fails is dropped when its turn comes.
}
