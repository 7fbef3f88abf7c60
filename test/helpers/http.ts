/**
 * Peers for the http-mode tests: HTTP servers that report what they saw, and
 * a raw keep-alive client that writes exact bytes and reads whole responses.
 */
import http from 'node:http';
import net from 'node:net';

export interface Seen {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: Buffer;
  /** Which of the server's connections it came on (1, 2, …). */
  readonly connection: number;
}

export interface HttpPeer {
  readonly tag: string;
  readonly port: number;
  readonly address: string;
  readonly server: http.Server;
  /** Every request so far. */
  readonly seen: Seen[];
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

export type Responder = (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => void;

/** By default: 200 with `{ tag, method, url, headers }` as JSON, Content-Length framed. */
export function reportAsJson(tag: string): Responder {
  return (_req, res, seen) => {
    const body = JSON.stringify({ tag, method: seen.method, url: seen.url, headers: seen.headers, rawHeaders: seen.rawHeaders, body: seen.body.toString('latin1') });
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Served-By': tag });
    res.end(body);
  };
}

export async function httpPeer(tag: string, respond: Responder = reportAsJson(tag)): Promise<HttpPeer> {
  const seen: Seen[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = {
        method: req.method!,
        url: req.url!,
        httpVersion: req.httpVersion,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
        connection: (req.socket as net.Socket & { peerIndex?: number }).peerIndex ?? 0,
      };
      seen.push(s);
      respond(req, res, s);
    });
  });
  server.on('connection', (socket: net.Socket & { peerIndex?: number }) => {
    socket.peerIndex = ++connections;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    tag,
    port,
    address: `127.0.0.1:${port}`,
    server,
    seen,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * An HTTP peer that keeps every request waiting until release() (to hold a
 * server's maxconn slot): `held` resolves when its first request arrives;
 * once released, each request is answered `served <url>`.
 */
export async function holdingPeer(tag: string): Promise<HttpPeer & { readonly held: Promise<void>; release(): void }> {
  let holding: () => void = () => {};
  const held = new Promise<void>((resolve) => (holding = resolve));
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const peer = await httpPeer(tag, (req, res) => {
    holding();
    void released.then(() => res.end(`served ${req.url}`));
  });
  return Object.assign(peer, { held, release });
}

export interface RawResponse {
  readonly status: number;
  readonly head: string;
  /** Header fields, names lower-cased (the last of duplicates). */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/**
 * A client on one TCP connection: writes exact bytes, reads whole responses
 * (Content-Length or chunked framed, or up to the close), in order.
 */
export class RawClient {
  readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  private ended = false;
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, socket?: net.Socket): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      if (socket) return resolve(new RawClient(socket));
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Everything received and not yet read as a response. */
  get pending(): Buffer {
    return this.buffer;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Resolves once `test` holds on the bytes received so far (or the connection ended). */
  async until(test: (received: Buffer) => boolean): Promise<Buffer> {
    while (!test(this.buffer) && !this.ended) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.buffer;
  }

  /** The next whole response; a HEAD request's has no body (pass `head: true`). */
  async response(opts: { head?: boolean } = {}): Promise<RawResponse> {
    for (;;) {
      const parsed = parseResponse(this.buffer, this.ended, opts.head ?? false);
      if (parsed) {
        this.buffer = this.buffer.subarray(parsed.length);
        return parsed.response;
      }
      if (this.ended) throw new Error(`connection ended before a whole response: ${JSON.stringify(this.buffer.toString('latin1'))}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

function parseResponse(buffer: Buffer, ended: boolean, head: boolean): { response: RawResponse; length: number } | null {
  const end = buffer.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const headText = buffer.toString('latin1', 0, end);
  const lines = headText.split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const start = end + 4;
  if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { response: { status, head: headText, headers, body: Buffer.alloc(0) }, length: start };
  }
  if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length']);
    if (buffer.length < start + length) return null;
    return { response: { status, head: headText, headers, body: buffer.subarray(start, start + length) }, length: start + length };
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const chunks: Buffer[] = [];
    let pos = start;
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', pos);
      if (lineEnd < 0) return null;
      const size = parseInt(buffer.toString('latin1', pos, lineEnd), 16);
      if (size === 0) {
        const trailerEnd = buffer.indexOf('\r\n\r\n', lineEnd);
        if (trailerEnd < 0 && buffer.length < lineEnd + 4) return null;
        const done = buffer.indexOf('\r\n', lineEnd + 2);
        if (done < 0) return null;
        return { response: { status, head: headText, headers, body: Buffer.concat(chunks) }, length: done + 2 };
      }
      if (buffer.length < lineEnd + 2 + size + 2) return null;
      chunks.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
      pos = lineEnd + 2 + size + 2;
    }
  }
  if (!ended) return null;
  return { response: { status, head: headText, headers, body: buffer.subarray(start) }, length: buffer.length };
}

/** A plain GET with a Host field. */
export function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: mux.test\r\n${extra}\r\n`;
}
