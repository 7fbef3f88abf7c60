/**
 * Condition trees → predicates, once per config load. `all` is min, `any` is
 * max and `not` is 3 >> x over FAIL=0/MISS=1/PASS=3 (HAProxy acl-t.h), with
 * early exits: an `all` stops at the first FAIL, an `any` at the first PASS,
 * so a later sub-condition never makes a decided answer wait.
 */
import type { Condition } from '../config/types.js';
import { SniffmuxError } from '../errors.js';
import { FAIL, PASS, type RouteFacts, type Tri } from './facts.js';
import { CONDITION_KEYS } from './condition.js';
import { copyPlainData } from '../config/plain-data.js';
import { validateCondition } from '../config/validate.js';
import { sortProblems } from '../config/path.js';
import { normalizeCondition } from '../config/normalize.js';
import type { RawCondition } from '../config/schema.js';
import { LEAVES, type Node, type Predicate } from './leaves.js';

export type { Node, Predicate } from './leaves.js';

function allNode(children: readonly Node[]): Node {
  const tests = children.map((c) => c.test);
  return {
    test: (f) => {
      let result: Tri = PASS;
      for (let i = 0; i < tests.length; i++) {
        const r = tests[i]!(f);
        if (r === FAIL) return FAIL;
        if (r < result) result = r;
      }
      return result;
    },
    why: (f, r) => firstWith(children, f, r),
  };
}

function anyNode(children: readonly Node[]): Node {
  const tests = children.map((c) => c.test);
  return {
    test: (f) => {
      let result: Tri = FAIL;
      for (let i = 0; i < tests.length; i++) {
        const r = tests[i]!(f);
        if (r === PASS) return PASS;
        if (r > result) result = r;
      }
      return result;
    },
    why: (f, r) => firstWith(children, f, r),
  };
}

function notNode(child: Node): Node {
  return {
    test: (f) => (3 >> child.test(f)) as Tri,
    why: (f, r) => `not (${child.why(f, (3 >> r) as Tri)})`,
  };
}

/** The reason of the first child that gave the combined result: the one that decided it. */
function firstWith(children: readonly Node[], f: RouteFacts, r: Tri): string {
  for (const c of children) if (c.test(f) === r) return c.why(f, r);
  return '';
}

/**
 * Compile a condition to a node. A multi-key object is an implicit `all`
 * (normalisation already does this for configs; kept here for direct callers).
 */
export function compileNode(c: Condition): Node {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new TypeError('a condition must be an object');
  const keys = Object.keys(c);
  if (keys.length === 0) throw new TypeError('an empty condition');
  if (keys.length > 1) return allNode(keys.map((k) => compileNode({ [k]: (c as Record<string, unknown>)[k] } as Condition)));
  const key = keys[0]!;
  const value = (c as Record<string, unknown>)[key];
  if (key === 'all' || key === 'any') {
    if (!Array.isArray(value) || value.length === 0) throw new TypeError(`'${key}' needs a non-empty list of conditions`);
    const children = (value as Condition[]).map(compileNode);
    return key === 'all' ? allNode(children) : anyNode(children);
  }
  if (key === 'not') return notNode(compileNode(value as Condition));
  const leaf = Object.hasOwn(LEAVES, key) ? LEAVES[key] : undefined;
  if (leaf === undefined) throw new TypeError(`unknown condition '${key}' (known: ${CONDITION_KEYS.join(', ')})`);
  return leaf(value as never);
}

/**
 * The predicate for one condition, for callers outside a loaded Config (tests,
 * tools). The condition is checked against the schema's own definition first,
 * so anything wrong (a bad regex, an unknown key) is an SMX_ERR_CONFIG error
 * with `if.…` problem lines, never whatever the RegExp constructor threw.
 */
export function compileCondition(c: Condition): Predicate {
  const copied = copyPlainData(c);
  const checked = copied.problems.length === 0 ? validateCondition(copied.value) : { ok: false as const, problems: copied.problems };
  if (!checked.ok) {
    const problems = sortProblems(
      checked.problems.map((p) => ({ path: ['if', ...p.path], message: p.message })),
      { if: copied.value },
    );
    throw new SniffmuxError('SMX_ERR_CONFIG', `invalid condition: ${problems[0]}`, problems);
  }
  return compileNode(normalizeCondition(copied.value as RawCondition)).test;
}
