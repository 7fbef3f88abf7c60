import type { RouteProtocol } from '../sniff/probe.js';
import type { Termination } from './termination.js';

/** What one connection was, as its `connection` log line says it (SPEC §3). */
export interface ConnectionRecord {
  readonly client: string;
  readonly frontend: string;
  readonly listen: string;
  readonly protocol: RouteProtocol | null;
  readonly tls: boolean;
  readonly sni: string | null;
  readonly alpn: readonly string[] | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly backend: string | null;
  readonly server: string | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly timings: { readonly sniff: number; readonly queue: number; readonly connect: number; readonly total: number };
  readonly termination: Termination;
  /** Why, when sniffmux refused or cut the connection (bad input, no server, a failed TLS handshake…); absent otherwise. */
  readonly reason?: string;
}
