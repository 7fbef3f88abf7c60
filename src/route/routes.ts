/**
 * A frontend's rules, compiled once: `decide` walks them first-match-wins in
 * three-valued logic, as HAProxy's tcp_inspect_request does:
 *
 * - a rule that FAILs is skipped;
 * - a rule that is MISS stops the walk with "wait": a later rule may not win
 *   while an earlier one could still match once more bytes arrive;
 * - the first PASS wins;
 * - when every rule FAILs, the default backend (or nothing).
 *
 * `final` facts turn every MISS into FAIL (leaves.ts), so "wait" never comes
 * back once the inspect delay or buffer limit is reached.
 *
 * Groups: on a frontend with `tls`, passthrough rules are tried on the
 * ClientHello of TLS connections ('passthrough'), and the others on the
 * decrypted or plain stream ('plain'); 'all' is every rule in order.
 * The decisions are preallocated, so `decide` allocates nothing.
 */
import type { Frontend, Rule } from '../config/types.js';
import { FAIL, MISS, PASS, type RouteFacts, type Tri } from './facts.js';
import { compileNode, type Node } from './compile.js';
import { formatCondition } from './condition.js';

export type RouteGroup = 'all' | 'passthrough' | 'plain';

export type Decision =
  | { readonly kind: 'wait' }
  | { readonly kind: 'rule'; readonly rule: Rule }
  | { readonly kind: 'default' }
  | { readonly kind: 'none' };

export interface CompiledRoutes {
  readonly frontend: Frontend;
  /**
   * The decision on these facts. In the 'passthrough' group, "no rule" is
   * always `none` (never `default`): it means "terminate TLS and decide again
   * on the plain stream", not "send the ciphertext to the default backend".
   */
  decide(f: RouteFacts, group: RouteGroup): Decision;
  /** One line per rule of the group: `rules[1] { ... }: FAIL (why)`. For `sniffmux explain`. */
  explain(f: RouteFacts, group: RouteGroup): string[];
}

const WAIT: Decision = Object.freeze({ kind: 'wait' });
const DEFAULT: Decision = Object.freeze({ kind: 'default' });
const NONE: Decision = Object.freeze({ kind: 'none' });

const TRI_NAME: Record<Tri, string> = { [FAIL]: 'FAIL', [MISS]: 'MISS', [PASS]: 'PASS' } as Record<Tri, string>;

interface CompiledRule {
  readonly rule: Rule;
  readonly node: Node;
  readonly test: Node['test'];
  readonly decision: Decision;
  readonly text: string;
}

interface Group {
  readonly rules: readonly CompiledRule[];
  readonly fallback: Decision;
}

export function compileRoutes(frontend: Frontend): CompiledRoutes {
  const compiled: CompiledRule[] = frontend.rules.map((rule) => {
    const node = compileNode(rule.if);
    return { rule, node, test: node.test, decision: Object.freeze({ kind: 'rule', rule }), text: formatCondition(rule.if) };
  });
  const fallback = frontend.default !== null ? DEFAULT : NONE;
  const groups: Record<RouteGroup, Group> = {
    all: { rules: compiled, fallback },
    passthrough: { rules: compiled.filter((c) => c.rule.passthrough), fallback: NONE },
    plain: { rules: compiled.filter((c) => !c.rule.passthrough), fallback },
  };

  function decide(f: RouteFacts, group: RouteGroup): Decision {
    const g = groups[group];
    const rules = g.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!.test(f);
      if (r === PASS) return rules[i]!.decision;
      if (r === MISS) return WAIT;
    }
    return g.fallback;
  }

  function explain(f: RouteFacts, group: RouteGroup): string[] {
    return groups[group].rules.map((c) => {
      const r = c.test(f);
      const why = c.node.why(f, r);
      return `rules[${c.rule.index}] ${c.text}: ${TRI_NAME[r]}${why ? ` (${why})` : ''} -> ${c.rule.use}`;
    });
  }

  return { frontend, decide, explain };
}
