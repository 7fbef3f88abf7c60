import type { RouteFacts } from '../route/facts.js';
import type { HttpHead, ProbedProtocol, TlsHello } from '../sniff/probe.js';

/** What a connection contributes to the facts of each of its requests. */
export interface ConnectionFacts {
  /** From the PROXY header when there was one. */
  readonly srcIp: string;
  readonly clientPort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** TLS that sniffmux terminated. */
  readonly encrypted: boolean;
  /** The ClientHello of a terminated connection (SNI and ALPN stay facts). */
  readonly hello: TlsHello | undefined;
}

/**
 * The facts of one request on an http-mode connection: its complete head,
 * plus the connection's address, port and TLS. The rules run on these for
 * every request, so `/a` and `/b` on one connection can go to two backends.
 */
export class RequestFacts implements RouteFacts {
  readonly final = true;
  readonly protocol = 'http' as const;

  constructor(
    readonly http: HttpHead,
    private readonly connection: ConnectionFacts,
  ) {}

  probe(protocol: ProbedProtocol): 'match' | 'no-match' {
    return protocol === 'http' ? 'match' : 'no-match';
  }
  get hello(): TlsHello | undefined {
    return this.connection.hello;
  }
  get encrypted(): boolean {
    return this.connection.encrypted;
  }
  get srcIp(): string {
    return this.connection.srcIp;
  }
  get localPort(): number {
    return this.connection.localPort;
  }
}
