/**
 * Walking and printing rule conditions. A condition object has exactly one
 * key (types.ts); a rule written with several keys (`{ protocol: http, path:
 * ... }`, as the SPEC's examples do) is normalised to an `all` and remembered
 * here, so `explain` and error paths can show it the way it was written.
 */
import type { Condition } from '../config/types.js';

export const CONDITION_KEYS = [
  'protocol', 'sni', 'alpn', 'tls', 'host', 'method', 'path', 'header', 'websocket', 'src', 'port', 'all', 'any', 'not',
] as const;
export type ConditionKey = (typeof CONDITION_KEYS)[number];

/** Conditions knowable from a ClientHello alone: what a passthrough rule may use. */
export const HELLO_KEYS: ReadonlySet<string> = new Set(['protocol', 'sni', 'alpn', 'tls', 'src', 'port', 'all', 'any', 'not']);

const implicitAll = new WeakSet<object>();

/** Record that this `all` came from a multi-key condition (display only; semantics are identical). */
export function markImplicitAll(c: Condition): Condition {
  implicitAll.add(c);
  return c;
}

export function isImplicitAll(c: Condition): boolean {
  return implicitAll.has(c);
}

/** The single key of a normalised condition. */
export function conditionKey(c: Condition): ConditionKey {
  return Object.keys(c)[0] as ConditionKey;
}

export function conditionValue(c: Condition): unknown {
  return (c as Record<string, unknown>)[conditionKey(c)];
}

/**
 * The sub-conditions of a combinator with the path segments that lead to
 * each as the user wrote them: `all[1]`, or just `path` inside an implicit all.
 */
export function conditionChildren(c: Condition): { readonly cond: Condition; readonly path: readonly (string | number)[] }[] {
  const key = conditionKey(c);
  if (key === 'not') return [{ cond: (c as { not: Condition }).not, path: ['not'] }];
  if (key !== 'all' && key !== 'any') return [];
  const list = conditionValue(c) as readonly Condition[];
  if (key === 'all' && isImplicitAll(c)) return list.map((cond) => ({ cond, path: [] }));
  return list.map((cond, i) => ({ cond, path: [key, i] }));
}

function scalar(v: unknown): string {
  if (typeof v === 'string') return /^[A-Za-z0-9_./+-][A-Za-z0-9_./+:-]*$/.test(v) ? v : JSON.stringify(v);
  return String(v);
}

function value(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(value).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    if (isImplicitAll(v as Condition)) return members((v as { all: Condition[] }).all);
    return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${value(x)}`).join(', ')} }`;
  }
  return scalar(v);
}

function members(list: readonly Condition[]): string {
  return `{ ${list.map((c) => `${conditionKey(c)}: ${value(conditionValue(c))}`).join(', ')} }`;
}

/** A condition in YAML flow style, as a user would write it: `{ protocol: http, path: { prefix: /node } }`. */
export function formatCondition(c: Condition): string {
  return value(c);
}
