/**
 * Checks the schema cannot express, run on the normalised config: names that
 * must resolve or be unique, listen addresses that would collide, rules that
 * can never be reached, passthrough rules that look at what a ClientHello
 * cannot show, and frontends with nothing to do.
 */
import type { Condition, Config, Frontend, Rule } from './types.js';
import type { PathSegment, Problem } from './path.js';
import { formatPath } from './path.js';
import { suggest } from './messages.js';
import { isLoopbackHost, PORT_PROBLEM } from './address.js';
import { conditionChildren, conditionKey, HELLO_KEYS } from '../route/condition.js';
import { matchesEverything, type ReachContext } from '../route/reach.js';

function duplicates<T>(items: readonly T[], name: (t: T) => string, at: (i: number) => PathSegment[], what: string): Problem[] {
  const seen = new Map<string, number>();
  const out: Problem[] = [];
  items.forEach((item, i) => {
    const n = name(item);
    const first = seen.get(n);
    if (first === undefined) seen.set(n, i);
    else out.push({ path: [...at(i), 'name'], message: `duplicate ${what} name '${n}' (also ${formatPath(at(first))})` });
  });
  return out;
}

/** Two binds collide on the same port when the hosts are equal or either is a wildcard (Node listens dual-stack). */
function listenCollisions(config: Config): Problem[] {
  const wildcard = (h: string): boolean => h === '' || h === '0.0.0.0' || h === '::';
  const seen: { host: string; port: number; text: string; path: PathSegment[]; frontend: number }[] = [];
  const out: Problem[] = [];
  config.frontends.forEach((f, fi) =>
    f.listen.forEach((l, li) => {
      const path: PathSegment[] = ['frontends', fi, 'listen', li];
      const host = l.address.host.toLowerCase();
      // Port 0: the OS picks a free port for each bind, so only the same address written twice in one
      // frontend clashes (Instance keeps those listeners by frontend and address, listenKey, and would lose one of the two).
      const clash =
        l.address.port === 0
          ? seen.find((s) => s.port === 0 && s.host === host && s.frontend === fi)
          : seen.find((s) => s.port === l.address.port && (s.host === host || wildcard(s.host) || wildcard(host)));
      if (clash) {
        const how = clash.host === host ? 'is already used by' : `overlaps ${clash.text} of`;
        out.push({ path, message: `address ${l.address.text} ${how} ${formatPath(clash.path)}` });
      }
      seen.push({ host, port: l.address.port, text: l.address.text, path, frontend: fi });
    }),
  );
  return out;
}

/** Every condition in a passthrough rule must be knowable from the ClientHello. */
function helloOnly(c: Condition, path: PathSegment[], out: Problem[]): void {
  const key = conditionKey(c);
  if (!HELLO_KEYS.has(key)) {
    out.push({
      path: [...path, key],
      message: `a passthrough rule is decided on the ClientHello and cannot use '${key}' (only protocol, sni, alpn, tls, src, port)`,
    });
    return;
  }
  for (const child of conditionChildren(c)) helloOnly(child.cond, [...path, ...child.path], out);
}

/**
 * Which rules are tried together. With `tls`, passthrough rules see the
 * ClientHello before termination and plain rules the stream after it, so each
 * group is its own first-match list; without `tls` every rule is one list.
 */
function ruleGroups(f: Frontend): { rules: readonly Rule[]; onlyTls: boolean }[] {
  if (f.tls === null) return [{ rules: f.rules, onlyTls: false }];
  return [
    { rules: f.rules.filter((r) => r.passthrough), onlyTls: true },
    { rules: f.rules.filter((r) => !r.passthrough), onlyTls: false },
  ];
}

function unreachable(f: Frontend, fi: number): Problem[] {
  const out: Problem[] = [];
  // With a port-0 listener the real ports are unknown, so `port` proves nothing.
  const ports = f.listen.map((l) => l.address.port);
  const listenPorts = ports.includes(0) ? [] : ports;
  for (const group of ruleGroups(f)) {
    const ctx: ReachContext = { onlyTls: group.onlyTls, listenPorts };
    let catchAll: Rule | null = null;
    for (const rule of group.rules) {
      if (catchAll !== null) {
        out.push({ path: ['frontends', fi, 'rules', rule.index], message: `unreachable: rules[${catchAll.index}] matches every connection` });
      } else if (matchesEverything(rule.if, ctx)) {
        catchAll = rule;
      }
    }
  }
  return out;
}

function backendReference(name: string, backends: ReadonlySet<string>, path: PathSegment[]): Problem | null {
  if (backends.has(name)) return null;
  const close = suggest(name, backends);
  return { path, message: `unknown backend '${name}'${close ? ` (did you mean '${close}'?)` : ''}` };
}

/** Listen port 0 ("any free port") is for tests and the demo only. */
function portZero(config: Config): Problem[] {
  const out: Problem[] = [];
  config.frontends.forEach((f, fi) =>
    f.listen.forEach((l, li) => {
      if (l.address.port === 0) out.push({ path: ['frontends', fi, 'listen', li], message: PORT_PROBLEM });
    }),
  );
  return out;
}

/** A zero interval would check in a busy loop, a zero timeout would fail every check. */
function healthCheckProblems(config: Config): Problem[] {
  const out: Problem[] = [];
  config.backends.forEach((b, bi) => {
    for (const key of ['interval', 'timeout'] as const) {
      if (b.healthCheck !== null && b.healthCheck[key] === 0) {
        out.push({ path: ['backends', bi, 'healthCheck', key], message: 'must be at least 1ms' });
      }
    }
  });
  return out;
}

/**
 * The admin endpoints show every backend, server and address: beyond
 * loopback (`:port` included, which is every interface) they need `auth`.
 */
function adminExposure(config: Config): Problem[] {
  const admin = config.admin;
  if (admin === null || admin.auth !== null || isLoopbackHost(admin.listen.host)) return [];
  const where = admin.listen.host === '' ? 'every interface' : admin.listen.host;
  return [
    {
      path: ['admin', 'listen'],
      message: `${admin.listen.text} listens on ${where}, beyond loopback, without auth: set admin.auth, or listen on 127.0.0.1 or [::1]`,
    },
  ];
}

export interface SemanticOptions {
  /** Accept listen port 0 (the OS picks a free port). */
  readonly listenPortZero: boolean;
}

export function checkSemantics(config: Config, opts: SemanticOptions): Problem[] {
  const out: Problem[] = [];
  if (!opts.listenPortZero) out.push(...portZero(config));
  const backendNames = new Set(config.backends.map((b) => b.name));
  out.push(...duplicates(config.frontends, (f) => f.name, (i) => ['frontends', i], 'frontend'));
  out.push(...duplicates(config.backends, (b) => b.name, (i) => ['backends', i], 'backend'));
  out.push(...listenCollisions(config));
  config.frontends.forEach((f, fi) => {
    for (const rule of f.rules) {
      const at: PathSegment[] = ['frontends', fi, 'rules', rule.index];
      const ref = backendReference(rule.use, backendNames, [...at, 'use']);
      if (ref) out.push(ref);
      if (rule.passthrough) helloOnly(rule.if, [...at, 'if'], out);
    }
    if (f.default !== null) {
      const ref = backendReference(f.default, backendNames, ['frontends', fi, 'default']);
      if (ref) out.push(ref);
    }
    out.push(...unreachable(f, fi));
    if (f.rules.length === 0 && f.default === null && !f.flashPolicy) {
      out.push({
        path: ['frontends', fi],
        message: 'nothing to do: give it rules, a default backend, or flashPolicy: true (a policy-only listener)',
      });
    }
  });
  out.push(...healthCheckProblems(config));
  out.push(...adminExposure(config));
  config.backends.forEach((b, bi) => {
    out.push(...duplicates(b.servers, (s) => s.name, (i) => ['backends', bi, 'servers', i], 'server'));
  });
  return out;
}
