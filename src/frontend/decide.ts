import type { Frontend, Rule } from '../config/types.js';
import type { RouteFacts } from '../route/facts.js';
import type { RouteTable } from './frontend.js';

/** What to do with a connection, given what has arrived so far. */
export type Outcome =
  | { readonly kind: 'wait' }
  | { readonly kind: 'policy' }
  | { readonly kind: 'terminate' }
  | { readonly kind: 'backend'; readonly backend: string; readonly rule: Rule | null }
  | { readonly kind: 'reject'; readonly termination: 'bad-request' | 'no-server'; readonly reason: string };

const WAIT: Outcome = Object.freeze({ kind: 'wait' });
const POLICY: Outcome = Object.freeze({ kind: 'policy' });
const TERMINATE: Outcome = Object.freeze({ kind: 'terminate' });

/**
 * The frontend's decision, shared by live connections and `sniffmux explain`:
 *
 * 1. On a frontend with `tls`, a ClientHello is matched against the
 *    passthrough rules alone (they see only what a ClientHello carries); if
 *    none takes it, TLS is terminated once the hello is whole (or settled by
 *    a problem, the inspect delay or maxBytes) and the decrypted stream comes
 *    back here with `encrypted` set.
 * 2. A policy request is answered before any rule runs (on frontends with
 *    `flashPolicy: true`), so rules wait until the policy probe has ruled the
 *    bytes out — at the first byte that is not '<'.
 * 3. The rules (the plain ones when the frontend terminates TLS), then the
 *    default backend.
 */
export function decide(frontend: Frontend, routes: RouteTable, facts: RouteFacts): Outcome {
  if (frontend.tls && !facts.encrypted) {
    const tls = facts.probe('tls');
    if (tls === 'need-more') return WAIT;
    if (tls === 'match') {
      const passthrough = routes.decide(facts, 'passthrough');
      if (passthrough.kind === 'wait') return WAIT;
      if (passthrough.kind === 'rule') return { kind: 'backend', backend: passthrough.rule.use, rule: passthrough.rule };
      // The SNI and ALPN read from the hello stay facts of the decrypted stream,
      // so a hello still arriving in later segments is waited for.
      if (facts.hello === undefined && !facts.final) return WAIT;
      return TERMINATE;
    }
  }
  if (frontend.flashPolicy) {
    const policy = facts.probe('flash-policy');
    if (policy === 'match') return POLICY;
    if (policy === 'need-more') return WAIT;
  }
  const decision = routes.decide(facts, frontend.tls ? 'plain' : 'all');
  switch (decision.kind) {
    case 'wait':
      return WAIT;
    case 'rule':
      return { kind: 'backend', backend: decision.rule.use, rule: decision.rule };
    case 'default':
      return { kind: 'backend', backend: frontend.default!, rule: null };
    case 'none':
      return frontend.rules.length === 0 && frontend.default === null
        ? { kind: 'reject', termination: 'bad-request', reason: 'not a policy request' }
        : { kind: 'reject', termination: 'no-server', reason: 'no rule matched and there is no default backend' };
  }
}
