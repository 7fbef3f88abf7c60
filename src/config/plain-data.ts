/**
 * A private, JSON-shaped copy of the caller's document. ajv writes defaults
 * into what it validates, so it must never be the caller's object; and a
 * config handed over from code (the demo) may hold things no file can (a Date,
 * a function, a cycle), which become problems here instead of odd failures
 * later. `__proto__` is copied as an ordinary key, so the schema reports it as
 * an unknown key instead of it changing the copy's prototype.
 */
import { MAX_NESTING, tooDeepMessage } from './nesting.js';
import type { PathSegment, Problem } from './path.js';

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function copyPlainData(value: unknown): { value: unknown; problems: Problem[] } {
  const problems: Problem[] = [];
  const copy = (v: unknown, path: PathSegment[], depth: number): unknown => {
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
    if (depth > MAX_NESTING) {
      problems.push({ path, message: tooDeepMessage });
      return null;
    }
    if (Array.isArray(v)) return v.map((x, i) => copy(x, [...path, i], depth + 1));
    if (typeof v === 'object' && isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(v)) {
        const x = (v as Record<string, unknown>)[key];
        if (x === undefined) continue; // as JSON.stringify would: an absent key
        Object.defineProperty(out, key, { value: copy(x, [...path, key], depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    const kind = typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
    problems.push({ path, message: `must be plain data (a string, number, boolean, list or mapping), not ${kind}` });
    return null;
  };
  const out = copy(value, [], 0);
  return { value: out, problems };
}
