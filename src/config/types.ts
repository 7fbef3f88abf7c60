import type { RouteProtocol } from '../sniff/probe.js';

/**
 * The normalised configuration: every default applied, durations in
 * milliseconds, addresses parsed, relative paths resolved against the config
 * file's folder, deep-frozen. Business code never re-validates it.
 */
export interface Config {
  /** Absolute path of the file it came from, or null for an embedded config (demo). */
  readonly source: string | null;
  readonly global: GlobalSettings;
  readonly log: { readonly level: LogLevel };
  /** The admin listener (/status, /metrics…); null = none is opened. */
  readonly admin: AdminSettings | null;
  /** The policy document (XML without the trailing NUL), built from `flashPolicy.allow` or read from `flashPolicy.file`. */
  readonly flashPolicy: string;
  readonly frontends: readonly Frontend[];
  readonly backends: readonly Backend[];
}

export interface AdminSettings {
  /** As written (default 127.0.0.1:9000); beyond loopback only with auth (semantic.ts). */
  readonly listen: Address;
  /** HTTP basic auth for every endpoint but /healthz; null = open. */
  readonly auth: { readonly user: string; readonly password: string } | null;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface GlobalSettings {
  /** Client connections of the whole process; 0 = unlimited. */
  readonly maxconn: number;
  readonly workers: number;
  /**
   * With workers > 1, who hands each new connection to a worker: the cluster
   * primary, to the next in turn ('primary', Node's round-robin: even, but
   * every connection crosses from the primary to a worker over IPC), or the
   * kernel, to whichever worker accepts first ('kernel': no hand-over, and
   * about half the CPU per new connection; uneven when they are few).
   */
  readonly workerBalance: 'primary' | 'kernel';
  /** Drain time on SIGTERM/SIGINT, ms. */
  readonly grace: number;
  /**
   * How a routed tcp-mode connection with plain sockets on both sides is
   * spliced: by the native splice(2) loop (src/splice/native.ts) when it is
   * built ('auto'), only that way ('native': start-up fails without it), or
   * by JavaScript streams ('js'). TLS-terminated, TLS-to-server and http-mode
   * connections always go through JavaScript.
   */
  readonly splice: 'auto' | 'native' | 'js';
  /**
   * Connections still sniffing (no decision yet): at most `perSource` from
   * one client address (more are refused), and `total` in all (beyond it the
   * oldest is decided at once with what it has sent, as if its delay expired).
   */
  readonly sniffBudget: { readonly total: number; readonly perSource: number };
}

export interface Address {
  /** Host as written, brackets removed ("0.0.0.0", "::1", "localhost"); "" for ":port" meaning all interfaces. */
  readonly host: string;
  readonly port: number;
  /** As written in the config, for logs ("0.0.0.0:80", "[::1]:80"). */
  readonly text: string;
}

export interface Listen {
  readonly address: Address;
  /** A PROXY v1/v2 header is expected first; connections without one are closed. */
  readonly proxyProtocol: boolean;
  /**
   * With proxyProtocol: the addresses (CIDR) of the proxies allowed to send
   * that header; a connection from anywhere else is refused, since its header
   * could name any client. Absent = any peer (the listener is reachable by
   * the proxies alone).
   */
  readonly trustedProxies?: readonly string[];
}

export interface Frontend {
  readonly name: string;
  readonly listen: readonly Listen[];
  /** 0 = unlimited. */
  readonly maxconn: number;
  readonly inspect: { readonly delay: number; readonly maxBytes: number };
  readonly timeouts: {
    readonly client: number;
    readonly tunnel: number;
    /** A terminated TLS handshake must finish within this, ms. */
    readonly handshake: number;
    /** In http mode, a request head must be complete within this once it has begun (else 408), ms. */
    readonly httpRequest: number;
  };
  /** Answer `<policy-file-request/>\0` on this frontend. */
  readonly flashPolicy: boolean;
  readonly tls: FrontendTls | null;
  readonly rules: readonly Rule[];
  /** Backend for connections no rule takes; null = close them (a policy-only listener has neither rules nor default). */
  readonly default: string | null;
}

export interface FrontendTls {
  readonly certificates: readonly { readonly cert: string; readonly key: string }[];
  readonly minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  readonly ciphers: string | null;
  readonly alpn: readonly string[] | null;
}

export interface Rule {
  /** Position in the frontend's `rules`, for logs and `explain`. */
  readonly index: number;
  readonly if: Condition;
  readonly use: string;
  /** Decided on the ClientHello alone; the encrypted bytes are spliced untouched. */
  readonly passthrough: boolean;
}

/** A rule condition exactly as the schema allows it (one key per object). */
export type Condition =
  | { readonly protocol: RouteProtocol | readonly RouteProtocol[] }
  | { readonly sni: string | readonly string[] }
  | { readonly alpn: string | readonly string[] }
  | { readonly tls: boolean }
  | { readonly host: string | readonly string[] }
  | { readonly method: string | readonly string[] }
  | { readonly path: { readonly prefix: string } | { readonly regex: string } }
  | { readonly header: { readonly name: string; readonly regex: string } }
  | { readonly websocket: boolean }
  | { readonly src: readonly string[] | string }
  | { readonly port: number | readonly number[] }
  | { readonly all: readonly Condition[] }
  | { readonly any: readonly Condition[] }
  | { readonly not: Condition };

export type BalanceAlgorithm = 'roundrobin' | 'leastconn' | 'source' | 'first';

export interface Backend {
  readonly name: string;
  readonly mode: 'tcp' | 'http';
  readonly balance: BalanceAlgorithm;
  /** Other servers tried when a connect fails. */
  readonly retries: number;
  /** Connections that may wait in this backend's queue while every server is at its maxconn; more get no-server (503 for HTTP). */
  readonly maxqueue: number;
  readonly timeouts: {
    readonly connect: number;
    readonly server: number;
    /** Inactivity in both directions once spliced; supersedes client/server timeouts. null = use the frontend's. */
    readonly tunnel: number | null;
    readonly queue: number;
  };
  /** Send a PROXY header of this version to servers first; v2 carries SNI and ALPN as TLVs. */
  readonly proxyProtocol: 'v1' | 'v2' | null;
  /** Re-encrypt to the servers. */
  readonly tls: BackendTls | null;
  /** Active checks of every server; null = servers are always considered up. */
  readonly healthCheck: HealthCheck | null;
  /** What `mode: http` does to each request and response (unused in tcp mode). */
  readonly http: BackendHttp;
  readonly servers: readonly Server[];
}

export interface BackendHttp {
  /**
   * Add X-Forwarded-For, X-Real-IP and X-Forwarded-Proto. What the client
   * sent of those, X-Forwarded-Host and Forwarded is dropped, unless the
   * client is in trustForwarded: then X-Forwarded-For is appended to and the
   * others pass as sent.
   */
  readonly forwardedFor: boolean;
  /** CIDR blocks of the peers (proxies in front) whose forwarding fields are believed; empty = none. */
  readonly trustForwarded: readonly string[];
  /** Path rewrite: `pattern` (a JavaScript regex) replaced by `to` ($1, $<name>), query string kept. */
  readonly rewrite: { readonly pattern: string; readonly to: string } | null;
  /** Cookie naming the server a client sticks to; null = no cookie stickiness. */
  readonly stickyCookie: string | null;
}

export interface HealthCheck {
  readonly type: 'tcp' | 'http';
  /** Request path of an http check ("/" for tcp, where it is unused). */
  readonly path: string;
  /** Statuses an http check accepts: `200` is 200-200, `"2xx"` is 200-299. */
  readonly expect: { readonly text: string; readonly min: number; readonly max: number };
  /** Time between the end of one check and the start of the next, ms. */
  readonly interval: number;
  /** Consecutive successes that bring a down server back up. */
  readonly rise: number;
  /** Consecutive failures that take an up server down. */
  readonly fall: number;
  /** A check not finished within this (ms) has failed. */
  readonly timeout: number;
}

export interface BackendTls {
  /** SNI sent to servers (and the name verified); null = the server's host when it is a name. */
  readonly servername: string | null;
  /** CA bundle (absolute path) to verify servers against; null = Node's default CAs. */
  readonly ca: string | null;
  readonly verify: boolean;
  /** Client certificate and key (absolute paths), or null. */
  readonly cert: string | null;
  readonly key: string | null;
  readonly minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
}

export interface Server {
  readonly name: string;
  readonly address: Address;
  /** 0 = unlimited. */
  readonly maxconn: number;
  readonly weight: number;
  readonly backup: boolean;
}
