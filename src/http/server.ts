/**
 * Node's own HTTP server, fed sockets that sniffmux accepted and sniffed.
 * It never listens: sockets come in through `emit('connection')`, the hand-off
 * that node:http documents for user-supplied sockets (STYLE.md §8).
 *
 * One server serves every http-mode connection of the process; the session a
 * socket belongs to is tagged on the socket. Node's timeouts are all off
 * (sessions keep their own), the Host header is not required (servers decide),
 * and the header size limit is above anything the sessions let through
 * (they answer 431 at `inspect.maxBytes` first).
 */
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';

/** What Node's server reports about one socket. */
export interface NodeHttpHandlers {
  /** A request whose head Node parsed ('request', 'checkContinue', 'checkExpectation'). */
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void;
  /** An upgrade or CONNECT: Node let go of the socket; `head` is what followed the head in the bytes it was given. */
  onUpgrade(req: http.IncomingMessage, head: Buffer): void;
  /** A parse error (code HPE_*) or a socket error. */
  onClientError(error: NodeJS.ErrnoException): void;
}

const kHandlers = Symbol('sniffmux.http.handlers');
type Tagged = Duplex & { [kHandlers]?: NodeHttpHandlers };

/** A head can be this large for Node; sessions stop at inspect.maxBytes (at most 1 MiB) before. */
const NODE_MAX_HEADER_SIZE = 2 * 1024 * 1024;

let shared: http.Server | null = null;

function handlersOf(socket: Duplex): NodeHttpHandlers | undefined {
  return (socket as Tagged)[kHandlers];
}

function nodeServer(): http.Server {
  if (shared) return shared;
  const server = http.createServer({
    maxHeaderSize: NODE_MAX_HEADER_SIZE,
    requireHostHeader: false,
    requestTimeout: 0,
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
  });
  server.keepAliveTimeout = 0;
  server.headersTimeout = 0;
  server.timeout = 0;
  server.maxHeadersCount = 0;
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const handlers = handlersOf(req.socket);
    if (handlers) handlers.onRequest(req, res);
    else req.socket.destroy();
  };
  server.on('request', onRequest);
  // Expect: 100-continue goes to the server, which sends its own 100 (or not).
  server.on('checkContinue', onRequest);
  server.on('checkExpectation', onRequest);
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const handlers = handlersOf(socket);
    if (handlers) handlers.onUpgrade(req, head);
    else socket.destroy();
  };
  server.on('upgrade', onUpgrade);
  server.on('connect', onUpgrade);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const handlers = handlersOf(socket);
    if (handlers) handlers.onClientError(error);
    else socket.destroy();
  });
  // Sessions own every timeout; without this listener Node would destroy the socket itself.
  server.on('timeout', () => {});
  shared = server;
  return server;
}

const WATCHED = ['data', 'end', 'timeout'] as const;

/**
 * Hands a sniffed socket to Node's HTTP server and returns the function
 * that feeds its parser.
 *
 * The peeked bytes are unshifted first, so they are the first the socket
 * delivers when it flows again. Node would normally have its parser read the
 * socket's handle directly (`parser.consume`); adding our own 'data' listener
 * makes Node undo that (its listener wrapper calls `unconsume`), so every
 * byte comes through 'data'. We then take Node's 'data' listener off the
 * socket and call it ourselves: the session decides which bytes the parser
 * sees, and when. Node's 'end' and 'timeout' listeners come off too (the
 * session decides when a half-closed or idle connection ends); its 'close',
 * 'drain' and 'error' listeners stay, so Node cleans up after itself.
 */
export function attachToNodeHttp(
  socket: net.Socket,
  handlers: NodeHttpHandlers,
  peeked: Buffer,
  onData: (chunk: Buffer) => void,
): (chunk: Buffer) => void {
  (socket as Tagged)[kHandlers] = handlers;
  if (peeked.length > 0) socket.unshift(peeked);
  const before = new Map(WATCHED.map((event) => [event, socket.listeners(event)]));
  nodeServer().emit('connection', socket);
  const added = (event: (typeof WATCHED)[number]): ((...args: unknown[]) => void)[] =>
    socket.listeners(event).filter((l) => !before.get(event)!.includes(l)) as ((...args: unknown[]) => void)[];
  const nodeListeners = new Map(WATCHED.map((event) => [event, added(event)]));
  socket.on('data', onData);
  for (const [event, listeners] of nodeListeners) for (const l of listeners) socket.removeListener(event, l);
  const feed = nodeListeners.get('data')![0];
  if (!feed) throw new Error('node:http did not attach a data listener');
  return feed as (chunk: Buffer) => void;
}

/**
 * Node's parser must not be fed while Node has paused the socket for its own
 * backpressure (a response waiting to drain when a request arrived): its
 * `socketOnData` asserts it. Node clears the flag on 'drain'.
 */
export function nodePaused(socket: net.Socket): boolean {
  return (socket as net.Socket & { _paused?: boolean })._paused === true;
}

/** Stops dispatching Node's events for this socket to its session. */
export function detachFromNodeHttp(socket: net.Socket): void {
  delete (socket as Tagged)[kHandlers];
}
