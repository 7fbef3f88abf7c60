/**
 * Problem paths as users read them: `frontends[0].listen[1]`,
 * `backends[2].servers[0].address`, `(root)` for the document itself.
 * Problems are sorted into the order the keys appear in the file, so the
 * report reads top to bottom like the config.
 */

export type PathSegment = string | number;

export interface Problem {
  readonly path: readonly PathSegment[];
  readonly message: string;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export function formatPath(path: readonly PathSegment[]): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENTIFIER.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Control characters and line separators: a problem line is one line on a terminal, whatever the config holds. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `text` with those characters written as escapes (`\r`, `\u001b`): keys, values and syntax errors from a config go into problem lines. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatProblem(p: Problem): string {
  return `${formatPath(p.path)}: ${p.message}`;
}

/** A JSON pointer (ajv's instancePath) as segments, array indexes as numbers. */
export function pointerToPath(pointer: string, data: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let node: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      out.push(Number(key));
      node = node[Number(key)];
    } else {
      out.push(key);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

/** Position of each segment in the document (key order as written), for sorting. */
function documentOrder(path: readonly PathSegment[], data: unknown): number[] {
  const order: number[] = [];
  let node: unknown = data;
  for (const seg of path) {
    if (typeof seg === 'number') {
      order.push(seg);
      node = Array.isArray(node) ? node[seg] : undefined;
    } else if (node !== null && typeof node === 'object' && !Array.isArray(node)) {
      const i = Object.keys(node).indexOf(seg);
      order.push(i < 0 ? Number.MAX_SAFE_INTEGER : i);
      node = (node as Record<string, unknown>)[seg];
    } else {
      order.push(Number.MAX_SAFE_INTEGER);
      node = undefined;
    }
  }
  return order;
}

/** Sort problems into document order (stable: same place keeps discovery order) and drop exact duplicates. */
export function sortProblems(problems: readonly Problem[], data: unknown): string[] {
  const keyed = problems.map((p) => ({ p, order: documentOrder(p.path, data) }));
  keyed.sort((a, b) => {
    const n = Math.min(a.order.length, b.order.length);
    for (let i = 0; i < n; i++) if (a.order[i] !== b.order[i]) return a.order[i]! - b.order[i]!;
    return a.order.length - b.order.length;
  });
  return [...new Set(keyed.map(({ p }) => formatProblem(p)))];
}
