/**
 * The schema's string formats. Each checker returns null when the value is
 * fine, or the exact message the user will read: ajv only learns yes/no, and
 * messages.ts asks the checker again for the words.
 */
import { parseDuration } from './duration.js';
import { parseAddress } from './address.js';
import { portsProblem } from './policy-document.js';
import { parseCidr } from '../route/cidr.js';
import { hostGlobProblem } from '../route/glob.js';

export type FormatCheck = (value: string) => string | null;

function regexProblem(value: string): string | null {
  try {
    new RegExp(value);
    return null;
  } catch (err) {
    // V8 says "Invalid regular expression: /<source>/<flags>: <reason>"; keep the reason.
    const message = (err as Error).message;
    const reason = /: ([^:]+)$/.exec(message)?.[1] ?? message;
    return `invalid regular expression '${value}': ${reason}`;
  }
}

export const FORMATS: { readonly [name: string]: FormatCheck } = {
  duration: (v) => {
    const ms = parseDuration(v);
    return typeof ms === 'string' ? ms : null;
  },
  'listen-address': (v) => {
    const a = parseAddress(v, false, true);
    return typeof a === 'string' ? a : null;
  },
  'server-address': (v) => {
    const a = parseAddress(v, true);
    return typeof a === 'string' ? a : null;
  },
  cidr: (v) => {
    const c = parseCidr(v);
    return typeof c === 'string' ? c : null;
  },
  regex: regexProblem,
  'host-glob': (v) => hostGlobProblem(v, false),
  'host-header-glob': (v) => hostGlobProblem(v, true),
  'policy-ports': portsProblem,
};

export function formatProblem(format: string, value: unknown): string {
  const check = Object.hasOwn(FORMATS, format) ? FORMATS[format] : undefined;
  return (check && typeof value === 'string' ? check(value) : null) ?? `must be a valid ${format}`;
}
