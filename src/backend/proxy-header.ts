import { encodeProxyV1, encodeProxyV2, type ProxyAddress } from '../sniff/proxy-protocol.js';
import type { TlsHello } from '../sniff/probe.js';

export interface ProxyHeaderFacts {
  readonly source: ProxyAddress;
  readonly destination: ProxyAddress;
  /** The client's ClientHello, when there was one: v2 passes its SNI and first ALPN on as TLVs. */
  readonly hello: TlsHello | undefined;
}

/** The PROXY header a backend with `proxyProtocol` gets before the client's bytes. */
export function proxyHeaderFor(version: 'v1' | 'v2', facts: ProxyHeaderFacts): Buffer {
  const endpoints = { source: facts.source, destination: facts.destination };
  if (version === 'v1') return encodeProxyV1(endpoints);
  return encodeProxyV2(endpoints, {
    authority: facts.hello?.sni ?? null,
    alpn: facts.hello?.alpn[0] ?? null,
  });
}
