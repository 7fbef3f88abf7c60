/**
 * Validated document → Config: durations to milliseconds, addresses parsed,
 * paths made absolute, multi-key conditions turned into `all`, "auto" workers
 * counted. Runs only on a document the schema accepted, so every parse here
 * succeeds; a failure would be a schema bug and throws.
 */
import { availableParallelism } from 'node:os';
import type { AdminSettings, Address, Backend, Condition, Config, Frontend, HealthCheck, Listen, Rule } from './types.js';
import type { RawBackend, RawCondition, RawDocument, RawDuration, RawFrontend, RawHealthCheck } from './schema.js';
import { parseDuration } from './duration.js';
import { parseAddress } from './address.js';
import { resolveConfigPath } from './files.js';
import { markImplicitAll } from '../route/condition.js';

export interface NormalizeOptions {
  readonly source: string | null;
  readonly baseDir: string;
  /** The policy document, already built or read (policy-document.ts). */
  readonly flashPolicy: string;
}

function ms(value: RawDuration): number {
  const r = parseDuration(value);
  if (typeof r === 'string') throw new Error(`schema let through a bad duration: ${r}`);
  return r;
}

function address(text: string, needHost: boolean): Address {
  const a = parseAddress(text, needHost, !needHost);
  if (typeof a === 'string') throw new Error(`schema let through a bad address: ${a}`);
  return a;
}

/** One key per condition object: `{ a, b }` means `all: [{ a }, { b }]`, in the order written. */
export function normalizeCondition(raw: RawCondition): Condition {
  const keys = Object.keys(raw);
  if (keys.length > 1) {
    return markImplicitAll({ all: keys.map((k) => normalizeCondition({ [k]: raw[k] })) });
  }
  const key = keys[0]!;
  const value = raw[key];
  if (key === 'all' || key === 'any') return { [key]: (value as RawCondition[]).map(normalizeCondition) } as unknown as Condition;
  if (key === 'not') return { not: normalizeCondition(value as RawCondition) };
  return { [key]: value } as Condition;
}

function frontend(raw: RawFrontend, baseDir: string): Frontend {
  const listen: Listen[] = raw.listen.map((l) =>
    typeof l === 'string'
      ? { address: address(l, false), proxyProtocol: false }
      : { address: address(l.address, false), proxyProtocol: l.proxyProtocol, ...(l.trustedProxies ? { trustedProxies: [...l.trustedProxies] } : {}) },
  );
  const rules: Rule[] = raw.rules.map((r, index) => ({
    index,
    if: normalizeCondition(r.if),
    use: r.use,
    passthrough: r.passthrough,
  }));
  return {
    name: raw.name,
    listen,
    maxconn: raw.maxconn,
    inspect: { delay: ms(raw.inspect.delay), maxBytes: raw.inspect.maxBytes },
    timeouts: {
      client: ms(raw.timeouts.client),
      tunnel: ms(raw.timeouts.tunnel),
      handshake: ms(raw.timeouts.handshake),
      httpRequest: ms(raw.timeouts.httpRequest),
    },
    flashPolicy: raw.flashPolicy,
    tls: raw.tls
      ? {
          certificates: raw.tls.certificates.map((c) => ({
            cert: resolveConfigPath(baseDir, c.cert),
            key: resolveConfigPath(baseDir, c.key),
          })),
          minVersion: raw.tls.minVersion,
          ciphers: raw.tls.ciphers ?? null,
          alpn: raw.tls.alpn ?? null,
        }
      : null,
    rules,
    default: raw.default ?? null,
  };
}

function backend(raw: RawBackend, baseDir: string): Backend {
  const file = (path: string | undefined): string | null => (path === undefined ? null : resolveConfigPath(baseDir, path));
  return {
    name: raw.name,
    mode: raw.mode,
    balance: raw.balance,
    retries: raw.retries,
    maxqueue: raw.maxqueue,
    timeouts: {
      connect: ms(raw.timeouts.connect),
      server: ms(raw.timeouts.server),
      tunnel: raw.timeouts.tunnel === null ? null : ms(raw.timeouts.tunnel),
      queue: ms(raw.timeouts.queue),
    },
    healthCheck: raw.healthCheck ? healthCheck(raw.healthCheck) : null,
    http: {
      forwardedFor: raw.http.forwardedFor,
      trustForwarded: [...raw.http.trustForwarded],
      rewrite: raw.http.rewrite ? { pattern: raw.http.rewrite.pattern, to: raw.http.rewrite.to } : null,
      stickyCookie: raw.http.stickyCookie ?? null,
    },
    proxyProtocol: raw.proxyProtocol ?? null,
    tls: raw.tls
      ? {
          servername: raw.tls.servername ?? null,
          ca: file(raw.tls.ca),
          verify: raw.tls.verify,
          cert: file(raw.tls.cert),
          key: file(raw.tls.key),
          minVersion: raw.tls.minVersion,
        }
      : null,
    servers: raw.servers.map((s) => ({
      name: s.name,
      address: address(s.address, true),
      maxconn: s.maxconn,
      weight: s.weight,
      backup: s.backup,
    })),
  };
}

/** `expect: 200` accepts exactly 200; `expect: "2xx"` any 2xx. */
function healthCheck(raw: RawHealthCheck): HealthCheck {
  const expect = raw.expect ?? 200;
  const min = typeof expect === 'number' ? expect : Number(expect[0]) * 100;
  const max = typeof expect === 'number' ? expect : min + 99;
  return {
    type: raw.type,
    path: raw.path ?? '/',
    expect: { text: String(expect), min, max },
    interval: ms(raw.interval),
    rise: raw.rise,
    fall: raw.fall,
    timeout: ms(raw.timeout),
  };
}

function admin(raw: NonNullable<RawDocument['admin']>): AdminSettings {
  return { listen: address(raw.listen, false), auth: raw.auth ? { user: raw.auth.user, password: raw.auth.password } : null };
}

export function normalize(doc: RawDocument, opts: NormalizeOptions): Config {
  const workers = doc.global.workers === 'auto' ? availableParallelism() : doc.global.workers;
  return {
    source: opts.source,
    global: { maxconn: doc.global.maxconn, workers, workerBalance: doc.global.workerBalance, grace: ms(doc.global.grace), splice: doc.global.splice, sniffBudget: { ...doc.global.sniffBudget } },
    log: { level: doc.log.level },
    admin: doc.admin ? admin(doc.admin) : null,
    flashPolicy: opts.flashPolicy,
    frontends: doc.frontends.map((f) => frontend(f, opts.baseDir)),
    backends: doc.backends.map((b) => backend(b, opts.baseDir)),
  };
}
