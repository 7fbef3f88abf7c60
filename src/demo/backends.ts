/**
 * The built-in backends of `sniffmux demo` (SPEC §1): an HTTP page, a
 * WebSocket echo and a raw TCP echo, each on its own ephemeral port so the
 * demo never collides with anything the user runs. sniffmux sits in front
 * and splits one public port between them.
 */
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { DEMO_PAGE } from './page.js';

export interface DemoBackends {
  /** Port of the HTTP page backend (GET /, GET /health). */
  http: number;
  /** Port of the WebSocket echo backend. */
  ws: number;
  /** Port of the raw TCP echo backend. */
  echo: number;
  /** Closes all three servers and destroys their open connections. */
  close(): Promise<void>;
}

export const WS_GREETING = 'hello from the sniffmux demo WebSocket echo';

/** A demo should not buffer 100 MiB (ws's default) for one message. */
const WS_MAX_PAYLOAD = 1024 * 1024;
const ECHO_PREFIX = Buffer.from('echo: ');

/**
 * Every socket a server accepted, so close() can end keep-alive HTTP
 * connections, upgraded WebSockets and idle TCP clients alike; server.close()
 * alone waits for them forever.
 */
function trackSockets(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

async function listen(server: net.Server, host: string): Promise<number> {
  server.listen(0, host);
  await once(server, 'listening'); // rejects on 'error' (e.g. EADDRNOTAVAIL for a bad host)
  return (server.address() as AddressInfo).port;
}

function send(res: http.ServerResponse, status: number, type: string, body: string, head: boolean): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Served-By': 'demo-http',
  });
  res.end(head ? undefined : body);
}

function httpBackend(): http.Server {
  return http.createServer((req, res) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', false);
      return;
    }
    // Only the path matters; the Host may be anything sniffmux was reached by.
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/') send(res, 200, 'text/html; charset=utf-8', DEMO_PAGE, head);
    else if (path === '/health') send(res, 200, 'text/plain; charset=utf-8', 'ok', head);
    else send(res, 404, 'text/plain; charset=utf-8', 'not found\n', head);
  });
}

function wsBackend(): { server: http.Server; wss: WebSocketServer } {
  // A plain HTTP request that reached the WS backend gets a 426 saying so,
  // which makes a routing mistake in a config obvious from curl.
  const server = http.createServer((_req, res) => {
    const body = 'this is the sniffmux demo WebSocket echo; send an Upgrade: websocket request\n';
    res.writeHead(426, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'X-Served-By': 'demo-ws',
    });
    res.end(body);
  });
  // No `path` option: the page asks for /ws, but the mux rules decide what
  // reaches this backend, so any path is accepted.
  const wss = new WebSocketServer({ server, maxPayload: WS_MAX_PAYLOAD });
  // ws re-emits the underlying server's 'error' (e.g. a failed listen) on wss;
  // listen() already reports it, so this only keeps it from being uncaught.
  wss.on('error', () => {});
  wss.on('headers', (headers) => headers.push('X-Served-By: demo-ws'));
  wss.on('connection', (ws) => {
    ws.on('error', () => {}); // a client vanishing mid-frame is not the demo's problem
    ws.send(WS_GREETING);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      // binaryType is the default 'nodebuffer', so ws always hands over one Buffer.
      const buf = data as Buffer;
      // Binary stays binary so a binary client gets its exact bytes back after the prefix.
      if (isBinary) ws.send(Buffer.concat([ECHO_PREFIX, buf]), { binary: true });
      else ws.send(`echo: ${buf.toString('utf8')}`);
    });
  });
  return { server, wss };
}

function echoBackend(): net.Server {
  // Byte-for-byte echo, no greeting: a raw TCP client through the mux sees its
  // own bytes back, which also proves the peeked bytes were replayed intact.
  return net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket); // pipe handles backpressure and ends our side on EOF
  });
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  return new Promise((resolve) => {
    // close() stops accepting; destroying the tracked sockets lets it finish.
    // A server that never listened reports ERR_SERVER_NOT_RUNNING: still closed.
    server.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
}

export async function startDemoBackends(opts: { host?: string } = {}): Promise<DemoBackends> {
  const host = opts.host ?? '127.0.0.1';
  const httpServer = httpBackend();
  const { server: wsServer, wss } = wsBackend();
  const echoServer = echoBackend();
  const tracked = [httpServer, wsServer, echoServer].map((s) => ({ server: s, sockets: trackSockets(s) }));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    // Idempotent: demo shutdown may be triggered by both a signal and an error.
    closing ??= (async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await Promise.all(tracked.map(({ server, sockets }) => closeServer(server, sockets)));
    })();
    return closing;
  };

  try {
    const [httpPort, wsPort, echoPort] = await Promise.all([
      listen(httpServer, host),
      listen(wsServer, host),
      listen(echoServer, host),
    ]);
    return { http: httpPort, ws: wsPort, echo: echoPort, close };
  } catch (err) {
    await close(); // don't leave the servers that did start holding the process open
    throw err;
  }
}
