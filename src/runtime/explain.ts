import type { Config, Frontend } from '../config/types.js';
import { decide, type Outcome } from '../frontend/decide.js';
import type { RouteTable } from '../frontend/frontend.js';
import type { RouteFacts } from '../route/facts.js';
import { compileRoutes } from '../route/index.js';
import type { ProbedProtocol } from '../sniff/probe.js';
import { PROBES } from '../sniff/registry.js';
import { sniffOnce, type SniffView } from '../sniff/sniffer.js';

export interface ExplainContext {
  readonly srcIp: string;
  readonly localPort: number;
}

/**
 * The dry run behind `sniffmux explain`: what the sniffer makes of some first
 * bytes, after how many bytes a live connection would be routed, and which
 * rule and backend it would take, with each rule's verdict.
 */
export function explainBytes(config: Config, frontend: Frontend, bytes: Buffer, context: ExplainContext): string[] {
  const routes = compileRoutes(frontend);
  const view = sniffOnce(bytes, frontend.inspect.maxBytes, true);
  const facts = factsOf(view, context);
  const lines = [`frontend ${frontend.name}: ${bytes.length} bytes from ${context.srcIp} on port ${context.localPort}`];
  lines.push(`  protocol: ${view.protocol}`);
  lines.push(`  probes:   ${PROBES.map(({ protocol }) => `${protocol}=${view.probe(protocol)}`).join(' ')}`);
  if (view.hello) {
    lines.push(`  sni:      ${view.hello.sni ?? '(none)'}`);
    lines.push(`  alpn:     ${view.hello.alpn.length ? view.hello.alpn.join(', ') : '(none)'}`);
  }
  if (view.http) {
    lines.push(`  method:   ${view.http.method}`);
    lines.push(`  path:     ${view.http.path}`);
    lines.push(`  host:     ${view.http.host ?? '(none)'}`);
    if (view.http.websocket) lines.push('  upgrade:  websocket');
  }
  lines.push('rules:');
  for (const line of routes.explain(facts, 'all')) lines.push(`  ${line}`);
  const outcome = decide(frontend, routes, facts);
  lines.push(`decision: ${describe(outcome, frontend, config)}`);
  const early = earliestDecision(frontend, routes, bytes, context);
  lines.push(
    early === null
      ? `timing:   undecided until the inspect delay (${frontend.inspect.delay} ms) or the end of the bytes`
      : `timing:   decided after ${early} of ${bytes.length} bytes, without waiting for the inspect delay`,
  );
  return lines;
}

/** The fewest leading bytes on which a live connection would already be routed. */
function earliestDecision(frontend: Frontend, routes: RouteTable, bytes: Buffer, context: ExplainContext): number | null {
  for (let n = 1; n <= bytes.length; n++) {
    const facts = factsOf(sniffOnce(bytes.subarray(0, n), frontend.inspect.maxBytes, n >= frontend.inspect.maxBytes), context);
    if (decide(frontend, routes, facts).kind !== 'wait') return n;
  }
  return null;
}

function factsOf(view: SniffView, context: ExplainContext): RouteFacts {
  return {
    final: view.final,
    probe: (p: ProbedProtocol) => view.probe(p),
    protocol: view.protocol,
    hello: view.hello,
    http: view.http,
    encrypted: false,
    srcIp: context.srcIp,
    localPort: context.localPort,
  };
}

function describe(outcome: Outcome, frontend: Frontend, config: Config): string {
  switch (outcome.kind) {
    case 'wait':
      return 'waiting for more bytes';
    case 'terminate':
      return `terminate TLS (no passthrough rule takes this ClientHello), then sniff the decrypted stream`;
    case 'policy':
      return `answer the Flash policy request (${Buffer.byteLength(config.flashPolicy) + 1} bytes) and close`;
    case 'backend': {
      const backend = config.backends.find((b) => b.name === outcome.backend)!;
      const servers = backend.servers.map((s) => `${s.name} ${s.address.text}`).join(', ');
      const why = outcome.rule ? `rules[${outcome.rule.index}] matched` : `no rule matched; default of frontend ${frontend.name}`;
      return `backend ${backend.name} (${backend.mode} mode; servers: ${servers}) — ${why}`;
    }
    case 'reject':
      return `close the connection (${outcome.termination}: ${outcome.reason})`;
  }
}
