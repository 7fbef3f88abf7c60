/**
 * Header fields on their way through http mode, as flat `[name, value, …]`
 * lists (Node's rawHeaders): names keep their case and order, duplicates
 * stay separate.
 *
 * Hop-by-hop fields are for one connection only (RFC 9110 §7.6.1) and are
 * dropped in both directions: Connection and every field it names,
 * Keep-Alive, TE, Trailer, Transfer-Encoding (Node frames each side itself),
 * Upgrade, and Proxy-* (Proxy-Connection, Proxy-Authorization,
 * Proxy-Authenticate). An upgrade keeps `Upgrade` and says `Connection: Upgrade`.
 */
import { hasToken } from './framing.js';
import { withoutCookie } from './sticky.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** The field names the Connection fields list, lower-cased; null when there is none. */
function connectionListed(raw: readonly string[]): Set<string> | null {
  let listed: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    listed ??= new Set();
    for (const item of raw[i + 1]!.split(',')) {
      const name = item.trim().toLowerCase();
      if (name) listed.add(name);
    }
  }
  return listed;
}

function hopByHop(lower: string, listed: Set<string> | null): boolean {
  return HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || (listed !== null && listed.has(lower));
}

export interface Forwarded {
  /** The client's address: the PROXY header's when there was one. */
  readonly ip: string;
  /** `https` when the client's connection was TLS that sniffmux terminated. */
  readonly proto: 'http' | 'https';
  /** The client is a proxy in `trustForwarded`: its forwarding fields are believed. */
  readonly trusted: boolean;
}

/**
 * The fields that say who the client is and how it came. Anyone can write
 * them, so only a trusted peer's are kept: from any other they are dropped,
 * and sniffmux writes its own.
 */
const FORWARDING = new Set(['x-forwarded-for', 'x-real-ip', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);

export interface RequestHeaderOptions {
  /** An upgrade: Upgrade is kept and `Connection: Upgrade` sent. */
  readonly upgrade: boolean;
  /** The client sent a chunked body: Node re-frames it, so the server is told `Transfer-Encoding: chunked`. */
  readonly chunked: boolean;
  /** Add X-Forwarded-For, X-Real-IP and X-Forwarded-Proto, replacing the client's unless it is trusted; null = leave them alone. */
  readonly forwarded: Forwarded | null;
  /** Remove this cookie from the Cookie fields (the sticky cookie is sniffmux's, not the server's). */
  readonly stripCookie: string | null;
}

/** The fields a request is sent to a server with. */
export function requestHeaders(raw: readonly string[], options: RequestHeaderOptions): string[] {
  const listed = connectionListed(raw);
  const out: string[] = [];
  let forwardedFor: string | null = null;
  let sentRealIp = false;
  let sentProto = false;
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    let value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') host = true;
    if (lower === 'upgrade' && options.upgrade) {
      out.push(name, value);
      continue;
    }
    if (hopByHop(lower, listed)) continue;
    if (options.forwarded && FORWARDING.has(lower)) {
      if (!options.forwarded.trusted) continue;
      if (lower === 'x-forwarded-for') {
        forwardedFor = forwardedFor === null ? value : `${forwardedFor}, ${value}`;
        continue;
      }
      if (lower === 'x-real-ip') sentRealIp = true;
      if (lower === 'x-forwarded-proto') sentProto = true;
    }
    if (lower === 'cookie' && options.stripCookie !== null) {
      value = withoutCookie(value, options.stripCookie);
      if (value === '') continue;
    }
    out.push(name, value);
  }
  // Requests go to servers as HTTP/1.1, which must carry Host: empty when the client (HTTP/1.0) gave none (RFC 9112 §3.2).
  if (!host) out.push('Host', '');
  if (options.chunked) out.push('Transfer-Encoding', 'chunked');
  if (options.upgrade) out.push('Connection', 'Upgrade');
  if (options.forwarded) {
    // A trusted proxy's list is extended with the address it came from; its X-Real-IP and X-Forwarded-Proto know better than ours.
    const { ip, proto } = options.forwarded;
    out.push('X-Forwarded-For', forwardedFor === null ? ip : `${forwardedFor}, ${ip}`);
    if (!sentRealIp) out.push('X-Real-IP', ip);
    if (!sentProto) out.push('X-Forwarded-Proto', proto);
  }
  return out;
}

/** The fields a server's response is passed on with, plus the sticky cookie when one is to be set. */
export function responseHeaders(raw: readonly string[], setCookie: string | null): string[] {
  const listed = connectionListed(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!hopByHop(raw[i]!.toLowerCase(), listed)) out.push(raw[i]!, raw[i + 1]!);
  }
  if (setCookie !== null) out.push('Set-Cookie', setCookie);
  return out;
}

/** Is this an upgrade request as llhttp sees it (`Upgrade` plus `Connection: upgrade`)? */
export function isUpgrade(raw: readonly string[]): boolean {
  let upgrade = false;
  let connection = false;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'upgrade') upgrade = true;
    else if (lower === 'connection' && hasToken(raw[i + 1]!, 'upgrade')) connection = true;
  }
  return upgrade && connection;
}

/** A request head on the wire, for a tunnel whose bytes sniffmux writes itself (latin1, as Node read them). */
export function serializeHead(method: string, target: string, version: string, headers: readonly string[]): Buffer {
  let text = `${method} ${target} HTTP/${version}\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}
