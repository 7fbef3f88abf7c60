import net from 'node:net';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface TestServer {
  readonly port: number;
  readonly address: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/**
 * A loopback TCP server on port 0 that tracks its sockets so close() never
 * hangs on a lingering client.
 */
export async function tcpServer(onSocket: (socket: net.Socket) => void, options: net.ServerOpts = {}): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer(options, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A backend that says who it is: it greets with "<tag>\n" and then echoes
 * every byte back (sslh's `echosrv --prefix` idea), so a client can tell which
 * backend got the connection and that its bytes arrived intact.
 */
export function taggedEcho(tag: string): Promise<TestServer> {
  return tcpServer((socket) => {
    socket.write(`${tag}\n`);
    socket.pipe(socket);
  }, { allowHalfOpen: true });
}

/** A plain echo server with half-close: it ends its side when the client ends. */
export function echoServer(): Promise<TestServer> {
  return tcpServer((socket) => socket.pipe(socket), { allowHalfOpen: true });
}

/** A port that refuses connections (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = await tcpServer(() => {});
  await server.close();
  return server.port;
}

export interface Exchange {
  /** Everything the server side sent, until it closed. */
  readonly received: Buffer;
  /** How the connection ended from the client's point of view. */
  readonly ended: 'end' | 'error';
  /** With `send` in pieces: how many bytes had come back before the last piece was written. */
  readonly beforeLastPiece: number;
  /** The client's port: its `connection` log line says `127.0.0.1:<localPort>`. */
  readonly localPort: number;
}

/** The pause after each piece but the last: long enough for sniffmux to read the piece on its own. */
export const PIECE_GAP_MS = 25;

/**
 * Connects, writes `send` (if any; an array is written piece by piece, with
 * Nagle off and PIECE_GAP_MS between pieces, so that each arrives on its
 * own), optionally half-closes, and collects every byte until the
 * connection ends or `until` says enough (then closes).
 */
export function exchange(
  port: number,
  send: Buffer | string | readonly Buffer[] | null,
  opts: { end?: boolean; until?: (received: Buffer) => boolean; host?: string } = {},
): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    let beforeLastPiece = 0;
    let localPort = 0;
    const socket = net.connect({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true });
    const finish = (ended: 'end' | 'error'): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), ended, beforeLastPiece, localPort });
    };
    socket.on('connect', async () => {
      localPort = socket.localPort ?? 0;
      if (Array.isArray(send)) {
        socket.setNoDelay(true);
        for (const [i, piece] of send.entries()) {
          if (i > 0) await new Promise((r) => setTimeout(r, PIECE_GAP_MS));
          if (settled) return;
          if (i === send.length - 1) beforeLastPiece = Buffer.concat(chunks).length;
          socket.write(piece);
        }
      } else if (send !== null) {
        socket.write(send as Buffer | string);
      }
      if (opts.end) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (opts.until?.(Buffer.concat(chunks))) finish('end');
    });
    socket.on('end', () => finish('end'));
    socket.on('error', () => finish('error'));
    socket.on('close', () => finish('end'));
  });
}

/** `bytes` cut at the given offsets. */
export function piecesOf(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [0, ...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length];
  return points.slice(1).map((end, i) => bytes.subarray(points[i], end));
}

/** Resolves with the first `line\n` a server sends (the tag of taggedEcho). */
export function firstLine(received: Buffer): string {
  const text = received.toString('latin1');
  const nl = text.indexOf('\n');
  return nl === -1 ? text : text.slice(0, nl);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Resolves once the peer of this loopback IPv4 socket has read every byte
 * sent to it (its receive queue in /proc/net/tcp is empty): a test that cuts
 * its writes into pieces awaits this between pieces, so that each piece
 * reaches the peer's application as a read of its own instead of being
 * coalesced with the next.
 */
export async function peerHasRead(socket: net.Socket): Promise<void> {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  // The peer's row: its local address is our remote one, and the other way round.
  const row = new RegExp(`^\\s*\\d+: 0100007F:${hex(socket.remotePort!)} 0100007F:${hex(socket.localPort!)} \\w\\w [0-9A-F]{8}:([0-9A-F]{8}) `, 'm');
  for (;;) {
    const queued = row.exec(await readFile('/proc/net/tcp', 'utf8'))?.[1];
    if (queued === undefined || Number.parseInt(queued, 16) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
