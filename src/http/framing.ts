import type { HttpHead } from '../sniff/probe.js';

/**
 * Request framing on the raw bytes of a client connection, ahead of Node's
 * parser (RFC 9112 §6): how long a request's body is, so the session knows
 * where the next request begins before anything parses it. That is what lets
 * each request be routed on its own, and a later request be spliced to a
 * tcp-mode backend with its raw bytes.
 *
 * Two parsers then see every message: this one and llhttp. The session feeds
 * llhttp exactly one framed message at a time and checks that it saw exactly
 * one request ending where this framing says, so a disagreement between the
 * two (the root of request smuggling) closes the connection instead of
 * letting bytes through. This side is therefore strict: anything ambiguous is
 * refused here, and what it accepts llhttp may still refuse.
 */
export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** An upgrade or CONNECT: everything after the head belongs to the tunnel. */
  | { readonly kind: 'tunnel' };

export type Framing = BodyFraming | { readonly kind: 'invalid'; readonly reason: string };

const NONE: BodyFraming = Object.freeze({ kind: 'none' });
const CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
const TUNNEL: BodyFraming = Object.freeze({ kind: 'tunnel' });
const DIGITS = /^[0-9]{1,15}$/;

function invalid(reason: string): Framing {
  return { kind: 'invalid', reason };
}

/**
 * The body framing of a complete request head:
 *
 * - an upgrade (`Upgrade` plus `Connection: upgrade`, as llhttp decides it)
 *   or CONNECT is a tunnel, whatever Content-Length says (Node does the same);
 * - Transfer-Encoding must end in `chunked`, name it once, not come with a
 *   Content-Length, and not appear in HTTP/1.0 (RFC 9112 §6.1);
 * - one Content-Length, digits only.
 */
export function bodyFraming(head: HttpHead): Framing {
  let upgrade = false;
  let connectionUpgrade = false;
  const te: string[] = [];
  const cl: string[] = [];
  for (const [name, value] of head.headers) {
    if (name === 'transfer-encoding') te.push(value);
    else if (name === 'content-length') cl.push(value);
    else if (name === 'upgrade') upgrade = true;
    else if (name === 'connection' && hasToken(value, 'upgrade')) connectionUpgrade = true;
  }
  if (head.method === 'CONNECT' || (upgrade && connectionUpgrade)) return TUNNEL;
  if (te.length > 0) {
    if (cl.length > 0) return invalid('both Content-Length and Transfer-Encoding');
    if (head.version === 'HTTP/1.0') return invalid('Transfer-Encoding in an HTTP/1.0 request');
    const codings = te.join(',').split(',').map((c) => c.trim().toLowerCase());
    const chunked = codings.filter((c) => c === 'chunked').length;
    if (codings[codings.length - 1] !== 'chunked' || chunked !== 1) return invalid(`Transfer-Encoding "${te.join(', ')}" does not end in a single chunked`);
    if (codings.some((c) => c === '')) return invalid('empty coding in Transfer-Encoding');
    return CHUNKED;
  }
  if (cl.length > 1) return invalid('more than one Content-Length');
  if (cl.length === 1) {
    if (!DIGITS.test(cl[0]!)) return invalid(`invalid Content-Length "${cl[0]}"`);
    const length = Number(cl[0]);
    return length === 0 ? NONE : { kind: 'length', length };
  }
  return NONE;
}

/** Does a comma-separated list (`Connection: keep-alive, Upgrade`) contain `token`, ignoring case? */
export function hasToken(list: string, token: string): boolean {
  return list.split(',').some((item) => item.trim().toLowerCase() === token);
}

export type BodyStep = { readonly used: number; readonly done: boolean } | { readonly error: string };

const CR = 0x0d;
const LF = 0x0a;
const SEMICOLON = 0x3b;
/** Hex digits in a chunk size: 15 keeps it below 2^60, well inside a safe integer. */
const MAX_SIZE_DIGITS = 15;

const enum Chunk {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

/**
 * Reads one request body off the front of successive buffers and says how
 * many of their bytes belong to it. Chunked bodies are walked byte by byte
 * in the metadata and skipped over in the data, so a split at any byte gives
 * the same answer (the tests split at every one).
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *
 * Line ends must be CRLF (llhttp insists too); chunk extensions and trailer
 * lines may hold anything but CR and LF, and together at most `maxMeta` bytes.
 */
export class BodyReader {
  private remaining: number;
  private state = Chunk.Size;
  private size = 0;
  private digits = 0;
  private meta = 0;

  constructor(
    private readonly framing: Exclude<BodyFraming, { kind: 'tunnel' }>,
    private readonly maxMeta: number,
  ) {
    this.remaining = framing.kind === 'length' ? framing.length : 0;
  }

  get done(): boolean {
    return this.framing.kind === 'chunked' ? this.state === Chunk.Done : this.remaining === 0;
  }

  take(bytes: Buffer): BodyStep {
    if (this.framing.kind !== 'chunked') {
      const used = Math.min(this.remaining, bytes.length);
      this.remaining -= used;
      return { used, done: this.remaining === 0 };
    }
    return this.chunked(bytes);
  }

  private chunked(bytes: Buffer): BodyStep {
    let pos = 0;
    while (pos < bytes.length && this.state !== Chunk.Done) {
      if (this.state === Chunk.Data) {
        const n = Math.min(this.remaining, bytes.length - pos);
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = Chunk.DataCr;
        continue;
      }
      const byte = bytes[pos++]!;
      if (this.state !== Chunk.Size && byte !== CR && byte !== LF && ++this.meta > this.maxMeta) {
        return { error: `chunk extensions and trailers longer than ${this.maxMeta} bytes` };
      }
      switch (this.state) {
        case Chunk.Size: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return { error: 'chunk size too large' };
            this.size = this.size * 16 + digit;
          } else if (this.digits === 0) {
            return { error: 'chunk size expected' };
          } else if (byte === SEMICOLON) {
            this.state = Chunk.Extension;
          } else if (byte === CR) {
            this.state = Chunk.SizeLf;
          } else {
            return { error: 'invalid byte after the chunk size' };
          }
          break;
        }
        case Chunk.Extension:
          if (byte === CR) this.state = Chunk.SizeLf;
          else if (byte === LF) return { error: 'bare LF in a chunk extension' };
          break;
        case Chunk.SizeLf:
          if (byte !== LF) return { error: 'CR not followed by LF after the chunk size' };
          if (this.size === 0) {
            this.state = Chunk.TrailerStart;
          } else {
            this.remaining = this.size;
            this.state = Chunk.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case Chunk.DataCr:
          if (byte !== CR) return { error: 'chunk data longer than its size' };
          this.state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (byte !== LF) return { error: 'CR not followed by LF after chunk data' };
          this.state = Chunk.Size;
          break;
        case Chunk.TrailerStart:
          if (byte === CR) this.state = Chunk.EndLf;
          else if (byte === LF) return { error: 'bare LF in the trailers' };
          else this.state = Chunk.Trailer;
          break;
        case Chunk.Trailer:
          if (byte === CR) this.state = Chunk.TrailerLf;
          else if (byte === LF) return { error: 'bare LF in the trailers' };
          break;
        case Chunk.TrailerLf:
          if (byte !== LF) return { error: 'CR not followed by LF in the trailers' };
          this.state = Chunk.TrailerStart;
          break;
        case Chunk.EndLf:
          if (byte !== LF) return { error: 'CR not followed by LF at the end of the body' };
          this.state = Chunk.Done;
          break;
      }
    }
    return { used: pos, done: this.state === Chunk.Done };
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  return -1;
}

/** Empty lines before a request line are ignored (RFC 9112 §2.2): how many bytes of them lead `bytes`. */
export function leadingEmptyLines(bytes: Buffer): number {
  let pos = 0;
  while (pos < bytes.length && (bytes[pos] === CR || bytes[pos] === LF)) pos++;
  return pos;
}
