/**
 * The probe contract. Every protocol sniffer is a pure function over the bytes
 * received so far (never consuming them) with one of three answers:
 *
 * - `need-more`: the bytes so far are still a prefix of something this probe
 *   could match; say it only while a match is still possible.
 * - `no-match`:  the bytes already rule this protocol out.
 * - `match`:     this is the protocol. `complete` tells whether the facts are
 *   final: an HTTP request line is enough to know it is HTTP, but the host and
 *   headers arrive later; a TLS record header is enough to know it is TLS, but
 *   the SNI needs the whole ClientHello. The sniffer keeps feeding a matched,
 *   incomplete probe until it is complete or the inspect budget runs out.
 *
 * Probes are called again with the whole (grown) buffer each time bytes
 * arrive; they hold no state, so a split at any byte gives the same answer.
 */

/** Protocols that a probe can recognise. */
export type ProbedProtocol = 'tls' | 'http2' | 'http' | 'ssh' | 'flash-policy';

/** What a connection can be routed as: a probed protocol, `other` (bytes that
 *  no probe matches) or `none` (nothing arrived within the inspect delay). */
export type RouteProtocol = ProbedProtocol | 'other' | 'none';

export const ROUTE_PROTOCOLS: readonly RouteProtocol[] = ['tls', 'http2', 'http', 'ssh', 'flash-policy', 'other', 'none'];

/** Facts read from a TLS ClientHello. */
export interface TlsHello {
  /** server_name extension (host_name), lower-cased; null when absent. */
  readonly sni: string | null;
  /** ALPN protocol names in the client's order; empty when absent. */
  readonly alpn: readonly string[];
  /** Highest version offered: 0x0301 TLS 1.0 … 0x0304 TLS 1.3 (from supported_versions when present). */
  readonly maxVersion: number;
  /**
   * Set when the bytes start like TLS but no usable ClientHello could be read:
   * `too-large` (it cannot fit in inspect.maxBytes) or `malformed` (the real
   * TLS stack will reject it). sni and alpn are then empty.
   */
  readonly problem?: 'too-large' | 'malformed';
  /** Why, for `problem` (e.g. "session id longer than 32 bytes"): for logs and `explain`. */
  readonly detail?: string;
}

/** Facts read from an HTTP/1.x request head. */
export interface HttpHead {
  readonly method: string;
  /** The request target as sent (origin-form path with query, or absolute-form URI). */
  readonly path: string;
  /** "HTTP/1.1" or "HTTP/1.0". */
  readonly version: string;
  /** True once the blank line ending the head has arrived; the fields below are final only then. */
  readonly headComplete: boolean;
  /** Header fields in arrival order, names lower-cased, values trimmed. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Host header (lower-cased, port kept) or null. */
  readonly host: string | null;
  /** An `Upgrade: websocket` request. */
  readonly websocket: boolean;
  /** Length of the head in bytes including the final CRLFCRLF (0 while incomplete). */
  readonly headLength: number;
  /**
   * Set when the request line was read but the head cannot be: `too-large`
   * (no blank line within inspect.maxBytes) or `malformed` (a bad header line).
   * headComplete is then false and headers are empty.
   */
  readonly problem?: 'too-large' | 'malformed';
  /** Why, for `problem` (e.g. "header name contains a space"): for logs and `explain`. */
  readonly detail?: string;
}

export interface ProbeFacts {
  readonly tls?: TlsHello;
  readonly http?: HttpHead;
}

export type ProbeResult =
  | { readonly kind: 'need-more' }
  /** `reason` says why, for logs and `explain` (e.g. "not an HTTP method"). */
  | { readonly kind: 'no-match'; readonly reason: string }
  | { readonly kind: 'match'; readonly complete: boolean; readonly facts?: ProbeFacts };

export interface ProbeLimits {
  /** Bytes the sniffer will buffer at most (frontend `inspect.maxBytes`). */
  readonly maxBytes: number;
}

export type Probe = (bytes: Buffer, limits: ProbeLimits) => ProbeResult;

export const NEED_MORE: ProbeResult = Object.freeze({ kind: 'need-more' });
export function noMatch(reason: string): ProbeResult {
  return { kind: 'no-match', reason };
}
