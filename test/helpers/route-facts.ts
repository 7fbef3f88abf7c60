/**
 * RouteFacts as a connection's sniffer would report them, for tests of the
 * rules without sockets: what is not given is not known yet ('need-more').
 */
import type { RouteFacts } from '../../src/route/index.js';
import type { HttpHead, ProbedProtocol, RouteProtocol, TlsHello } from '../../src/sniff/probe.js';

export type ProbeState = 'match' | 'no-match' | 'need-more';

export interface FactsInit {
  final?: boolean;
  probes?: Partial<Record<ProbedProtocol, ProbeState>>;
  protocol?: RouteProtocol;
  hello?: TlsHello;
  http?: Partial<HttpHead>;
  encrypted?: boolean;
  srcIp?: string;
  localPort?: number;
}

export function routeFacts(init: FactsInit): RouteFacts {
  const probes = init.probes ?? {};
  return {
    final: init.final ?? false,
    probe: (p) => probes[p] ?? 'need-more',
    protocol: init.protocol,
    hello: init.hello,
    http: init.http && { method: 'GET', path: '/', version: 'HTTP/1.1', headComplete: false, headers: [], host: null, websocket: false, headLength: 0, ...init.http },
    encrypted: init.encrypted ?? false,
    srcIp: init.srcIp ?? '203.0.113.9',
    localPort: init.localPort ?? 8080,
  };
}

/** Every probe has ruled its protocol out. */
export const NO_PROBE_MATCHES: Readonly<Record<ProbedProtocol, ProbeState>> = {
  tls: 'no-match',
  http2: 'no-match',
  http: 'no-match',
  ssh: 'no-match',
  'flash-policy': 'no-match',
};
