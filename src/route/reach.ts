/**
 * Static answers to "does this condition match every connection?" and "can
 * it match any?", for the unreachable-rule check. Conservative: `true` only
 * when certain; anything that depends on the traffic is `false`. Note that
 * "matches every connection" is about the final answer: a rule that may
 * first say MISS still takes every connection in the end, so nothing after
 * it is ever chosen.
 */
import { ROUTE_PROTOCOLS, type RouteProtocol } from '../sniff/probe.js';
import type { Condition } from '../config/types.js';
import { conditionKey, conditionValue } from './condition.js';
import { parseCidr } from './cidr.js';

export interface ReachContext {
  /**
   * Only TLS ClientHellos reach these rules: the passthrough group of a
   * frontend with `tls`, which is consulted for TLS connections only.
   */
  readonly onlyTls: boolean;
  /** The frontend's listening ports: `port` covering all of them matches everything. */
  readonly listenPorts: readonly number[];
}

function list<T>(v: unknown): readonly T[] {
  return Array.isArray(v) ? (v as T[]) : [v as T];
}

function protocolsAlways(set: readonly RouteProtocol[], ctx: ReachContext): boolean {
  return ctx.onlyTls ? set.includes('tls') : ROUTE_PROTOCOLS.every((p) => set.includes(p));
}

/** Both address families covered by a /0 (families are separate, see cidr.ts). */
function srcAlways(cidrs: readonly string[]): boolean {
  let v4 = false;
  let v6 = false;
  for (const text of cidrs) {
    const c = parseCidr(text);
    if (typeof c === 'string' || c.prefix !== 0) continue;
    if (c.family === 4) v4 = true;
    else v6 = true;
  }
  return v4 && v6;
}

/** A key for comparing conditions structurally (values as written, key order as normalised). */
function shape(c: Condition): string {
  return JSON.stringify(c);
}

/**
 * Siblings that contradict each other: `X` and `not: X`, or the two values
 * of a boolean test (`tls: true` and `tls: false`). In an `any` they cover
 * every connection; in an `all` they exclude every connection.
 */
function hasComplementaryPair(children: readonly Condition[]): boolean {
  const shapes = new Set(children.map(shape));
  for (const c of children) {
    const key = conditionKey(c);
    if (key === 'not' && shapes.has(shape(conditionValue(c) as Condition))) return true;
    if ((key === 'tls' || key === 'websocket') && shapes.has(shape({ [key]: !conditionValue(c) } as Condition))) return true;
  }
  return false;
}

export function matchesEverything(c: Condition, ctx: ReachContext): boolean {
  const value = conditionValue(c);
  switch (conditionKey(c)) {
    case 'protocol':
      return protocolsAlways(list<RouteProtocol>(value), ctx);
    case 'tls':
      return ctx.onlyTls && value === true;
    case 'src':
      return srcAlways(list<string>(value));
    case 'port': {
      const ports = list<number>(value);
      return ctx.listenPorts.length > 0 && ctx.listenPorts.every((p) => ports.includes(p));
    }
    case 'all':
      return (value as Condition[]).every((x) => matchesEverything(x, ctx));
    case 'any': {
      const children = value as Condition[];
      return children.some((x) => matchesEverything(x, ctx)) || hasComplementaryPair(children);
    }
    case 'not':
      return matchesNothing(value as Condition, ctx);
    default:
      return false;
  }
}

export function matchesNothing(c: Condition, ctx: ReachContext): boolean {
  const value = conditionValue(c);
  switch (conditionKey(c)) {
    case 'protocol':
      return ctx.onlyTls && !list<RouteProtocol>(value).includes('tls');
    case 'tls':
      return ctx.onlyTls && value === false;
    case 'port': {
      const ports = list<number>(value);
      return ctx.listenPorts.length > 0 && !ctx.listenPorts.some((p) => ports.includes(p));
    }
    case 'all': {
      const children = value as Condition[];
      // `tls: true` together with `tls: false` can never pass.
      return children.some((x) => matchesNothing(x, ctx)) || hasComplementaryPair(children);
    }
    case 'any':
      return (value as Condition[]).every((x) => matchesNothing(x, ctx));
    case 'not':
      return matchesEverything(value as Condition, ctx);
    default:
      return false;
  }
}
