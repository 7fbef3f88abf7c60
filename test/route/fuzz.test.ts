/**
 * Time-boxed properties of the rules engine: compileCondition accepts a
 * condition or throws SniffmuxError, nothing else; a compiled condition
 * always answers FAIL, MISS or PASS, never MISS on final facts; and a
 * frontend never says "wait" once the facts are final.
 */
import t from 'tap';
import fc from 'fast-check';
import { tmpdir } from 'node:os';
import { compileCondition, compileRoutes, FAIL, MISS, PASS, type RouteFacts } from '../../src/route/index.js';
import { parseConfig } from '../../src/config/index.js';
import type { Condition } from '../../src/config/types.js';
import type { ProbedProtocol } from '../../src/sniff/probe.js';
import { SniffmuxError } from '../../src/errors.js';

const glob = fc.constantFrom('*', '*.example.com', 'a?', 'API.example.com', 'h2');
const { condition } = fc.letrec((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    fc.record({ protocol: fc.oneof(fc.constantFrom('tls', 'http', 'http2', 'ssh', 'flash-policy', 'other', 'none'), fc.array(fc.constantFrom('tls', 'http', 'none', 'other'), { minLength: 1, maxLength: 4 })) }),
    fc.record({ sni: fc.oneof(glob, fc.array(glob, { minLength: 1, maxLength: 2 })) }),
    fc.record({ alpn: glob }),
    fc.record({ host: glob }),
    fc.record({ tls: fc.boolean() }),
    fc.record({ websocket: fc.boolean() }),
    fc.record({ method: fc.constantFrom('GET', 'P*') }),
    fc.record({ path: fc.oneof(fc.record({ prefix: fc.constantFrom('/a', '/') }), fc.record({ regex: fc.constantFrom('^/a', '[0-9]+', '(') })) }),
    fc.record({ header: fc.record({ name: fc.constantFrom('x-a', 'host'), regex: fc.constantFrom('^1$', '.') }) }),
    fc.record({ src: fc.oneof(fc.constantFrom('10.0.0.0/8', '0.0.0.0/0', '::/0', '2001:db8::/32', '1.2.3.4/40'), fc.constant(['0.0.0.0/0', '::/0'])) }),
    fc.record({ port: fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.constant([8080, 443])) }),
    fc.record({ all: fc.array(tie('condition'), { maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('condition'), { maxLength: 3 }) }),
    fc.record({ not: tie('condition') }),
    fc.anything(),
  ),
}));

const probeState = fc.constantFrom('match' as const, 'no-match' as const, 'need-more' as const);
const facts: fc.Arbitrary<RouteFacts> = fc
  .record({
    final: fc.boolean(),
    probes: fc.record({ tls: probeState, http2: probeState, http: probeState, ssh: probeState, 'flash-policy': probeState }),
    protocol: fc.option(fc.constantFrom('tls', 'http2', 'http', 'ssh', 'flash-policy', 'other', 'none' as const), { nil: undefined }),
    hello: fc.option(fc.record({ sni: fc.option(fc.constantFrom('api.example.com', 'x.example.com', 'h2')), alpn: fc.array(fc.constantFrom('h2', 'http/1.1')), maxVersion: fc.constant(0x0304) }), { nil: undefined }),
    http: fc.option(
      fc.record({
        method: fc.constantFrom('GET', 'POST'),
        path: fc.constantFrom('/', '/a/1', 'http://x/a'),
        version: fc.constant('HTTP/1.1'),
        headComplete: fc.boolean(),
        headers: fc.array(fc.tuple(fc.constantFrom('host', 'x-a'), fc.constantFrom('1', 'api.example.com:80'))),
        host: fc.option(fc.constantFrom('api.example.com', 'api.example.com:8080')),
        websocket: fc.boolean(),
        headLength: fc.nat(),
      }),
      { nil: undefined },
    ),
    encrypted: fc.boolean(),
    srcIp: fc.constantFrom('10.1.2.3', '::1', '2001:db8::5', '::ffff:10.0.0.1', '', 'garbage', '1.2.3.4'),
    localPort: fc.constantFrom(8080, 443, 1),
  })
  .map(({ probes, ...rest }) => ({ ...rest, probe: (p: ProbedProtocol) => probes[p] }));

const OPTIONS = { numRuns: 1_000_000, interruptAfterTimeLimit: 1000 };

t.test('compileCondition: a predicate or SniffmuxError; answers are three-valued', async (t) => {
  let compiled = 0;
  fc.assert(
    fc.property(condition, fc.array(facts, { minLength: 1, maxLength: 4 }), (cond, moments) => {
      let test;
      try {
        test = compileCondition(cond as Condition);
      } catch (err) {
        if (err instanceof SniffmuxError && err.code === 'SMX_ERR_CONFIG') return;
        throw err;
      }
      compiled++;
      for (const f of moments) {
        const r = test(f);
        if (r !== FAIL && r !== MISS && r !== PASS) throw new Error(`not three-valued: ${String(r)}`);
        if (f.final && r === MISS) throw new Error('MISS on final facts');
      }
    }),
    OPTIONS,
  );
  t.ok(compiled > 0, `${compiled} conditions compiled`);
});

t.test('final facts always decide', async (t) => {
  let frontends = 0;
  fc.assert(
    fc.property(fc.array(fc.tuple(condition, fc.boolean()), { maxLength: 4 }), fc.boolean(), facts, (rules, withDefault, f) => {
      let config;
      try {
        config = parseConfig(
          {
            frontends: [{ name: 'f', listen: [':8080'], rules: rules.map(([c, passthrough]) => ({ if: c, use: 'b', passthrough })), ...(withDefault ? { default: 'b' } : {}) }],
            backends: [{ name: 'b', servers: [{ name: 's', address: 'h:1' }] }],
          },
          { baseDir: tmpdir(), source: null },
        );
      } catch (err) {
        if (err instanceof SniffmuxError) return;
        throw err;
      }
      frontends++;
      const routes = compileRoutes(config.frontends[0]!);
      const final = { ...f, final: true };
      for (const group of ['all', 'passthrough', 'plain'] as const) {
        if (routes.decide(final, group).kind === 'wait') throw new Error(`wait on final facts (${group})`);
      }
      if (routes.explain(f, 'all').length !== rules.length) throw new Error('explain: one line per rule');
      if (routes.explain(f, 'passthrough').length + routes.explain(f, 'plain').length !== rules.length) throw new Error('explain: groups split the rules');
    }),
    OPTIONS,
  );
  t.ok(frontends > 0, `${frontends} frontends compiled`);
});
