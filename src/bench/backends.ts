/**
 * The bench backend: one TCP server that plays every role the scenarios
 * need (sink, source, echo/reply, idle holder, HTTP server, WebSocket echo,
 * TLS-ish responder, Flash policy server), chosen by the client's first
 * bytes (see protocol.ts). It runs in its own process (backend-process.ts)
 * so that neither the load generator nor the proxy shares its event loop.
 */
import net from 'node:net';
import {
  CHUNK,
  HTTP_CLOSE_RESPONSE,
  HTTP_KEEPALIVE_RESPONSE,
  POLICY_RESPONSE,
  RAW,
  RAW_HEADER_SIZE,
  RAW_RESPONSE,
  RAW_SIZE,
  SINK_ACK_BYTES,
  TLS_REPLY,
  WS_CLOSE_REPLY,
  WS_UPGRADE_RESPONSE,
} from './protocol.js';

export interface BenchBackend {
  readonly port: number;
  /** Connections currently open. */
  readonly open: number;
  close(): Promise<void>;
}

const FORWARDED_YES = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyes', 'latin1');
const FORWARDED_NO = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno', 'latin1');
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const MAX_HEAD = 64 * 1024;

export async function startBenchBackend(port = 0): Promise<BenchBackend> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => dispatch(socket, first));
  });
  server.on('error', () => {
    // accept errors (EMFILE) are transient
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function dispatch(socket: net.Socket, first: Buffer): void {
  switch (first[0]) {
    case 0x00:
      return raw(socket, first);
    case 0x16:
      return tls(socket, first);
    case 0x3c: // '<'
      return policy(socket, first);
    default:
      return http(socket, first);
  }
}

/** Accumulates until `enough(buffer)` says so, then calls `done(buffer)`. */
function collect(socket: net.Socket, first: Buffer, enough: (b: Buffer) => boolean, done: (b: Buffer) => void): void {
  if (enough(first)) return done(first);
  let buffer = first;
  const onData = (chunk: Buffer): void => {
    buffer = Buffer.concat([buffer, chunk]);
    if (enough(buffer)) {
      socket.removeListener('data', onData);
      done(buffer);
    } else if (buffer.length > MAX_HEAD) socket.destroy();
  };
  socket.on('data', onData);
}

function raw(socket: net.Socket, first: Buffer): void {
  collect(
    socket,
    first,
    (b) => b.length >= RAW_HEADER_SIZE,
    (b) => {
      switch (b[1]) {
        case RAW.sink:
          return sink(socket, b.length - RAW_HEADER_SIZE);
        case RAW.source:
          return source(socket);
        case RAW.reply:
          return collect(
            socket,
            b,
            (all) => all.length >= RAW_SIZE,
            () => {
              socket.end(RAW_RESPONSE);
              socket.resume();
            },
          );
        case RAW.hold:
          socket.write('h');
          socket.once('data', () => socket.end());
          return;
        default:
          socket.destroy();
      }
    },
  );
}

/** Counts what arrives and acknowledges the running count (8 bytes) every SINK_ACK_BYTES. */
function sink(socket: net.Socket, already: number): void {
  let count = already;
  let next = SINK_ACK_BYTES;
  socket.on('data', (chunk: Buffer) => {
    count += chunk.length;
    if (count >= next) {
      next = count + SINK_ACK_BYTES;
      const ack = Buffer.allocUnsafe(8);
      ack.writeBigUInt64BE(BigInt(count));
      socket.write(ack);
    }
  });
  socket.on('end', () => socket.end());
}

function source(socket: net.Socket): void {
  const pump = (): void => {
    while (!socket.destroyed && socket.writable) {
      if (!socket.write(CHUNK)) return;
    }
  };
  socket.on('drain', pump);
  socket.on('end', () => socket.destroy());
  socket.resume();
  pump();
}

function tls(socket: net.Socket, first: Buffer): void {
  collect(
    socket,
    first,
    (b) => b.length >= 5 && b.length >= 5 + b.readUInt16BE(3),
    () => {
      socket.end(TLS_REPLY);
      socket.resume();
    },
  );
}

function policy(socket: net.Socket, first: Buffer): void {
  collect(
    socket,
    first,
    (b) => b.includes(0),
    () => {
      socket.end(POLICY_RESPONSE);
      socket.resume();
    },
  );
}

/** HTTP/1.1 without bodies: keep-alive requests answered in order; Connection: close and WebSocket upgrades honoured. */
function http(socket: net.Socket, first: Buffer): void {
  let buffer = first;
  const onData = (chunk: Buffer): void => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    serve();
  };
  const serve = (): void => {
    for (;;) {
      const end = buffer.indexOf(CRLFCRLF);
      if (end < 0) {
        if (buffer.length > MAX_HEAD) socket.destroy();
        return;
      }
      const head = buffer.toString('latin1', 0, end).toLowerCase();
      buffer = buffer.subarray(end + 4);
      if (head.includes('\r\nupgrade: websocket')) {
        socket.removeListener('data', onData);
        socket.write(WS_UPGRADE_RESPONSE);
        return websocketEcho(socket, buffer);
      }
      if (head.startsWith('get /__bench/forwarded ')) {
        // Tells a capability probe whether a proxy in between added X-Forwarded-For (http mode at work).
        socket.removeListener('data', onData);
        socket.end(head.includes('\r\nx-forwarded-for:') ? FORWARDED_YES : FORWARDED_NO);
        socket.resume();
        return;
      }
      if (head.includes('\r\nconnection: close')) {
        socket.removeListener('data', onData);
        socket.end(HTTP_CLOSE_RESPONSE);
        socket.resume();
        return;
      }
      socket.write(HTTP_KEEPALIVE_RESPONSE);
      if (buffer.length === 0) return;
    }
  };
  socket.on('data', onData);
  serve();
}

/** Echoes frames back as they come; a close frame is answered and the connection closed. */
function websocketEcho(socket: net.Socket, rest: Buffer): void {
  const onData = (chunk: Buffer): void => {
    if (chunk[0] === 0x88) {
      socket.removeListener('data', onData);
      socket.end(WS_CLOSE_REPLY);
      socket.resume();
      return;
    }
    socket.write(chunk);
  };
  socket.on('data', onData);
  if (rest.length > 0) onData(rest);
}
