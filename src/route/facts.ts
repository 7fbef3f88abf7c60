import type { HttpHead, ProbedProtocol, RouteProtocol, TlsHello } from '../sniff/probe.js';

/**
 * Everything a rule can look at, as known at one moment of a connection's
 * sniffing. Facts that have not arrived yet are undefined; once `final` is
 * true (inspect delay expired, buffer full or client finished sending), a rule
 * must decide with what is there.
 */
export interface RouteFacts {
  /** No more bytes will be considered: a missing fact now means "does not match". */
  readonly final: boolean;
  /** What each probe says of the bytes so far. */
  probe(protocol: ProbedProtocol): 'match' | 'no-match' | 'need-more';
  /** The decided protocol, or undefined while undecided (never undefined when final). */
  readonly protocol: RouteProtocol | undefined;
  /** The ClientHello, once complete. Kept after TLS termination. */
  readonly hello: TlsHello | undefined;
  /** The HTTP request head (request line at least), once it has arrived. */
  readonly http: HttpHead | undefined;
  /** The connection arrived encrypted (true after TLS termination, or for a TLS ClientHello seen in passthrough). */
  readonly encrypted: boolean;
  /** Client IP address (from the PROXY header when there was one), without IPv4-mapped prefix. */
  readonly srcIp: string;
  /** The local port the connection was accepted on. */
  readonly localPort: number;
}

/**
 * Three-valued rule results, as HAProxy's acl-t.h: FAIL=0, MISS=1, PASS=3, so
 * that `and` is min, `or` is max and `not` is `3 >> x`.
 */
export const FAIL = 0;
export const MISS = 1;
export const PASS = 3;
export type Tri = typeof FAIL | typeof MISS | typeof PASS;
