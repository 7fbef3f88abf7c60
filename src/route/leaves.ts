/**
 * One compiled predicate per condition key: the table `LEAVES` is the only
 * list of what a rule can test. Each predicate is three-valued (facts.ts):
 * MISS while the fact it needs may still arrive, FAIL once it cannot (another
 * protocol was decided, its probe said no-match, or the facts are final).
 *
 * Everything is built here, at config load; the `test` functions only read
 * the facts and compare against prepared RegExps, arrays and CIDR sets, so
 * evaluating a connection allocates nothing. `why` is for `explain` only.
 */
import type { ProbedProtocol, RouteProtocol } from '../sniff/probe.js';
import { FAIL, MISS, PASS, type RouteFacts, type Tri } from './facts.js';
import { compileGlobs } from './glob.js';
import { cidrSetHas, compileCidrs } from './cidr.js';

export type Predicate = (f: RouteFacts) => Tri;

export interface Node {
  readonly test: Predicate;
  /** A short human reason for `result` on these facts (explain only; may allocate). */
  readonly why: (f: RouteFacts, result: Tri) => string;
}

const PROBED: readonly ProbedProtocol[] = ['tls', 'http2', 'http', 'ssh', 'flash-policy'];

function list<T>(v: T | readonly T[]): readonly T[] {
  return Array.isArray(v) ? (v as readonly T[]) : [v as T];
}

/** A fact that has not arrived: wait for it unless nothing more will come. */
function missing(f: RouteFacts): Tri {
  return f.final ? FAIL : MISS;
}

// ---- protocol ----------------------------------------------------------------

/** The decided-or-not state of "protocol is `other`": every probe has ruled itself out. */
function otherState(f: RouteFacts): Tri {
  let result: Tri = PASS;
  for (let i = 0; i < PROBED.length; i++) {
    const s = f.probe(PROBED[i]!);
    if (s === 'match') return FAIL;
    if (s === 'need-more') result = MISS;
  }
  return result;
}

/** "Nothing arrived": any probe with an opinion means a byte did arrive. */
function noneState(f: RouteFacts): Tri {
  for (let i = 0; i < PROBED.length; i++) if (f.probe(PROBED[i]!) !== 'need-more') return FAIL;
  return MISS;
}

function protocolLeaf(value: RouteProtocol | readonly RouteProtocol[]): Node {
  const wanted = list(value);
  const probed = PROBED.filter((p) => wanted.includes(p));
  const wantOther = wanted.includes('other');
  const wantNone = wanted.includes('none');
  const test: Predicate = (f) => {
    const decided = f.protocol;
    if (decided !== undefined) return wanted.includes(decided) ? PASS : FAIL;
    let result: Tri = FAIL;
    for (let i = 0; i < probed.length; i++) {
      const s = f.probe(probed[i]!);
      if (s === 'match') return PASS;
      if (s === 'need-more') result = MISS;
    }
    if (wantOther) {
      const o = otherState(f);
      if (o === PASS) return PASS;
      if (o === MISS) result = MISS;
    }
    if (wantNone && noneState(f) === MISS) result = MISS;
    return result === MISS ? missing(f) : result;
  };
  const names = wanted.join(', ');
  return {
    test,
    why: (f, r) => {
      if (f.protocol !== undefined) return `protocol is ${f.protocol}`;
      if (r === MISS) return 'protocol not decided yet';
      return r === PASS ? `probe says ${names}` : `bytes rule out ${names}`;
    },
  };
}

// ---- ClientHello: sni, alpn, tls ----------------------------------------------

/** No ClientHello yet: FAIL if one cannot come any more. */
function helloPending(f: RouteFacts): Tri {
  if (f.protocol !== undefined && f.protocol !== 'tls') return FAIL;
  if (f.probe('tls') === 'no-match') return FAIL;
  return missing(f);
}

function helloWhy(r: Tri): string {
  return r === MISS ? 'waiting for the ClientHello' : 'no TLS ClientHello';
}

function sniLeaf(value: string | readonly string[]): Node {
  const re = compileGlobs(value, true);
  const shown = list(value).join(', ');
  return {
    test: (f) => {
      const h = f.hello;
      if (h === undefined) return helloPending(f);
      return h.sni !== null && re.test(h.sni) ? PASS : FAIL;
    },
    why: (f, r) => {
      const h = f.hello;
      if (h === undefined) return helloWhy(r);
      if (h.sni === null) return 'the ClientHello has no SNI';
      return `sni ${h.sni} ${r === PASS ? 'matches' : 'does not match'} ${shown}`;
    },
  };
}

function alpnLeaf(value: string | readonly string[]): Node {
  // ALPN identifiers are case-sensitive byte strings (RFC 7301).
  const re = compileGlobs(value, false);
  const shown = list(value).join(', ');
  return {
    test: (f) => {
      const h = f.hello;
      if (h === undefined) return helloPending(f);
      const offered = h.alpn;
      for (let i = 0; i < offered.length; i++) if (re.test(offered[i]!)) return PASS;
      return FAIL;
    },
    why: (f, r) => {
      const h = f.hello;
      if (h === undefined) return helloWhy(r);
      const offered = h.alpn.length === 0 ? '(none)' : h.alpn.join(', ');
      return `alpn ${offered} ${r === PASS ? 'matches' : 'does not match'} ${shown}`;
    },
  };
}

function encryptedState(f: RouteFacts): Tri {
  if (f.encrypted) return PASS;
  if (f.protocol !== undefined) return f.protocol === 'tls' ? PASS : FAIL;
  const s = f.probe('tls');
  if (s === 'match') return PASS;
  return s === 'no-match' ? FAIL : missing(f);
}

function tlsLeaf(value: boolean): Node {
  const test: Predicate = value ? encryptedState : (f) => (3 >> encryptedState(f)) as Tri;
  return {
    test,
    why: (f) => {
      const e = encryptedState(f);
      return e === MISS ? 'not known yet whether it is TLS' : e === PASS ? 'arrived encrypted' : 'arrived in clear';
    },
  };
}

// ---- HTTP request head: method, path, host, header, websocket -------------------

/** No request line yet: FAIL if it cannot be HTTP any more. */
function httpPending(f: RouteFacts): Tri {
  if (f.protocol !== undefined && f.protocol !== 'http') return FAIL;
  if (f.probe('http') === 'no-match') return FAIL;
  return missing(f);
}

function httpWhy(f: RouteFacts, r: Tri, what: string): string {
  if (r === MISS) return `waiting for the ${what}`;
  return f.http === undefined ? 'not HTTP' : `the ${what} is incomplete`;
}

/**
 * Host, header fields and the upgrade flag are final only once the head is
 * complete; until then MISS, and at `final` decide with what has arrived.
 */
function headLeaf(decide: (f: RouteFacts, head: NonNullable<RouteFacts['http']>) => boolean, describe: (f: RouteFacts, r: Tri) => string): Node {
  return {
    test: (f) => {
      const h = f.http;
      if (h === undefined) return httpPending(f);
      if (!h.headComplete && !f.final) return MISS;
      return decide(f, h) ? PASS : FAIL;
    },
    why: (f, r) => {
      const h = f.http;
      if (h === undefined || (r === MISS && !h.headComplete)) return httpWhy(f, r, 'request head');
      return describe(f, r);
    },
  };
}

function methodLeaf(value: string | readonly string[]): Node {
  const re = compileGlobs(value, false);
  const shown = list(value).join(', ');
  return {
    test: (f) => {
      const h = f.http;
      if (h === undefined) return httpPending(f);
      return re.test(h.method) ? PASS : FAIL;
    },
    why: (f, r) => {
      const h = f.http;
      if (h === undefined) return httpWhy(f, r, 'request line');
      return `method ${h.method} ${r === PASS ? 'matches' : 'does not match'} ${shown}`;
    },
  };
}

function pathLeaf(value: { readonly prefix: string } | { readonly regex: string }): Node {
  const prefix = 'prefix' in value ? value.prefix : null;
  const re = 'regex' in value ? new RegExp(value.regex) : null;
  return {
    test: (f) => {
      const h = f.http;
      if (h === undefined) return httpPending(f);
      // The path as sent, query included: no decoding, so a rule cannot be bypassed by an encoding the backend would not apply.
      if (prefix !== null) return h.path.startsWith(prefix) ? PASS : FAIL;
      return re!.test(h.path) ? PASS : FAIL;
    },
    why: (f, r) => {
      const h = f.http;
      if (h === undefined) return httpWhy(f, r, 'request line');
      const ok = r === PASS;
      return prefix !== null
        ? `path ${h.path} ${ok ? 'starts' : 'does not start'} with ${prefix}`
        : `path ${h.path} ${ok ? 'matches' : 'does not match'} /${re!.source}/`;
    },
  };
}

/** Host globs without a port also match `host:port`; a glob naming a port must match it exactly. */
function compileHostGlobs(value: string | readonly string[]): RegExp {
  const parts = list(value).map((g) => {
    const body = compileGlobs(g, true).source.slice(4, -2); // strip ^(?: and )$
    return g.includes(':') ? body : `${body}(?::\\d+)?`;
  });
  return new RegExp(`^(?:${parts.join('|')})$`, 'is');
}

function hostLeaf(value: string | readonly string[]): Node {
  const re = compileHostGlobs(value);
  const shown = list(value).join(', ');
  return headLeaf(
    (_f, h) => h.host !== null && re.test(h.host),
    (f, r) => (f.http?.host == null ? 'no Host header' : `host ${f.http.host} ${r === PASS ? 'matches' : 'does not match'} ${shown}`),
  );
}

function headerLeaf(value: { readonly name: string; readonly regex: string }): Node {
  const name = value.name.toLowerCase();
  const re = new RegExp(value.regex);
  return headLeaf(
    (_f, h) => {
      const hs = h.headers;
      for (let i = 0; i < hs.length; i++) if (hs[i]![0] === name && re.test(hs[i]![1])) return true;
      return false;
    },
    (_f, r) => `header ${name} ${r === PASS ? 'matches' : 'absent or does not match'} /${re.source}/`,
  );
}

function websocketLeaf(value: boolean): Node {
  // websocket: true implies HTTP; false is its negation, so a non-HTTP connection passes it.
  const yes = headLeaf(
    (_f, h) => h.websocket,
    (f) => (f.http?.websocket ? 'an Upgrade: websocket request' : 'not a WebSocket upgrade'),
  );
  if (value) return yes;
  return { test: (f) => (3 >> yes.test(f)) as Tri, why: (f, r) => yes.why(f, (3 >> r) as Tri) };
}

// ---- connection: src, port ------------------------------------------------------

function srcLeaf(value: string | readonly string[]): Node {
  const set = compileCidrs(value);
  const shown = list(value).join(', ');
  return {
    test: (f) => (cidrSetHas(set, f.srcIp) ? PASS : FAIL),
    why: (f, r) => `client ${f.srcIp} ${r === PASS ? 'is' : 'is not'} in ${shown}`,
  };
}

function portLeaf(value: number | readonly number[]): Node {
  const ports = list(value);
  return {
    test: (f) => (ports.includes(f.localPort) ? PASS : FAIL),
    why: (f, r) => `local port ${f.localPort} ${r === PASS ? 'is' : 'is not'} ${ports.join(', ')}`,
  };
}

/** The leaf compilers, one row per condition key (combinators live in compile.ts). */
export const LEAVES: { readonly [key: string]: (value: never) => Node } = {
  protocol: protocolLeaf,
  sni: sniLeaf,
  alpn: alpnLeaf,
  tls: tlsLeaf,
  host: hostLeaf,
  method: methodLeaf,
  path: pathLeaf,
  header: headerLeaf,
  websocket: websocketLeaf,
  src: srcLeaf,
  port: portLeaf,
};
