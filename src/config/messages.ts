/**
 * ajv's errors → one human line each. ajv says "must NOT have additional
 * properties" and "must be integer,string"; a user wants "unknown key 'foo'"
 * and "must be a duration: ...". The schema can word any error itself with
 * `x-messages: { <keyword>: "..." }`; the rest get the generic wording here.
 */
import type { ErrorObject } from 'ajv';
import { formatProblem } from './formats.js';
import { pointerToPath, type Problem } from './path.js';

type Params = Record<string, unknown>;

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'null',
};

function typePhrase(types: unknown): string {
  const list = String(types).split(',');
  return list.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
}

/** Edit distance counting a swap of neighbours as one edit (wbe → web), for "did you mean". */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => [i, ...new Array<number>(y.length).fill(0)]);
  for (let j = 1; j <= y.length; j++) d[0]![j] = j;
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[x.length]![y.length]!;
}

/** The closest candidate when it is close enough to be a typo. */
export function suggest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.min(2, Math.floor(word.length / 2)) ? best : null;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function generic(e: ErrorObject): string | null {
  const p = e.params as Params;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const known = Object.keys(((e.parentSchema as Params | undefined)?.properties as Params | undefined) ?? {});
      const close = suggest(key, known);
      return `unknown key '${key}'${close ? ` (did you mean '${close}'?)` : ''}`;
    }
    case 'required':
      return `missing required key '${String(p.missingProperty)}'`;
    case 'type':
      return `must be ${typePhrase(p.type)}`;
    case 'enum':
      return `must be one of: ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'format':
      return formatProblem(String(p.format), e.data);
    case 'minimum':
      return `must be at least ${String(p.limit)}`;
    case 'maximum':
      return `must be at most ${String(p.limit)}`;
    case 'minItems':
      return p.limit === 1 ? 'must not be empty' : `must have at least ${plural(Number(p.limit), 'item')}`;
    case 'maxItems':
      return `must have at most ${plural(Number(p.limit), 'item')}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${plural(Number(p.limit), 'character')}`;
    case 'maxLength':
      return `must be at most ${plural(Number(p.limit), 'character')}`;
    case 'pattern':
      return `must match ${String(p.pattern)}`;
    case 'uniqueItems':
      return `lists the same value twice (items ${String(p.j)} and ${String(p.i)})`;
    case 'minProperties':
      return `must have at least ${plural(Number(p.limit), 'key')}`;
    case 'maxProperties':
      return `must have at most ${plural(Number(p.limit), 'key')}`;
    // An `if` failure only says "the `then` failed", which is reported on its own.
    case 'if':
      return null;
    default:
      return e.message ?? e.keyword;
  }
}

/** One problem for one ajv error, or null for errors that only repeat another. */
export function describeAjvError(e: ErrorObject, data: unknown): Problem | null {
  const custom = ((e.parentSchema as Params | undefined)?.['x-messages'] as Params | undefined)?.[e.keyword];
  const message = typeof custom === 'string' ? custom : generic(e);
  if (message === null) return null;
  return { path: pointerToPath(e.instancePath, data), message };
}
