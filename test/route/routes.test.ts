/**
 * decide(): first PASS wins, an earlier MISS makes the connection wait, all
 * FAIL falls to the default; groups for TLS passthrough; explain lines.
 */
import t from 'tap';
import { compileRoutes, type Decision, type RouteFacts } from '../../src/route/index.js';
import { parseConfig } from '../../src/config/index.js';
import type { Frontend } from '../../src/config/types.js';
import type { TlsHello } from '../../src/sniff/probe.js';
import { NO_PROBE_MATCHES as NO, routeFacts, type FactsInit } from '../helpers/route-facts.js';
import { tmpdir } from 'node:os';

/** The facts of a connection from loopback, where these routes' `src` rules look. */
const facts = (init: FactsInit): RouteFacts => routeFacts({ srcIp: '127.0.0.1', ...init });
const HELLO: TlsHello = { sni: 'vpn.example.com', alpn: ['h2'], maxVersion: 0x0304 };
const M = {
  nothing: facts({}),
  finalNothing: facts({ final: true, protocol: 'none' }),
  byte00: facts({ probes: NO }),
  byte16: facts({ probes: { ...NO, tls: 'need-more' } }),
  hello: facts({ probes: { ...NO, tls: 'match' }, protocol: 'tls', hello: HELLO, encrypted: true }),
  byteG: facts({ probes: { ...NO, http: 'need-more' } }),
  lineNode: facts({ probes: { ...NO, http: 'match' }, protocol: 'http', http: { path: '/node/1' } }),
  lineOther: facts({ probes: { ...NO, http: 'match' }, protocol: 'http', http: { path: '/x' } }),
  headApi: facts({ probes: { ...NO, http: 'match' }, protocol: 'http', http: { path: '/x', headComplete: true, host: 'api.example.com' } }),
  headWww: facts({ probes: { ...NO, http: 'match' }, protocol: 'http', http: { path: '/x', headComplete: true, host: 'www.example.com' } }),
  lineFinal: facts({ final: true, probes: { ...NO, http: 'match' }, protocol: 'http', http: { path: '/x' } }),
};

function frontendOf(raw: Record<string, unknown>, backends: string[]): Frontend {
  const config = parseConfig(
    { frontends: [{ name: 'f', listen: [':8080'], ...raw }], backends: backends.map((name) => ({ name, servers: [{ name: 's', address: 'h:1' }] })) },
    { baseDir: tmpdir(), source: null },
  );
  return config.frontends[0]!;
}

function show(d: Decision): string {
  return d.kind === 'rule' ? `rule ${d.rule.index} -> ${d.rule.use}` : d.kind;
}

// The seed recipe: socket.io paths, silent clients, non-HTTP to raw TCP, the rest to the web app.
const seed = frontendOf(
  {
    rules: [
      { if: { protocol: 'http', path: { prefix: '/socket.io' } }, use: 'socket_io' },
      { if: { protocol: 'http', path: { prefix: '/node' } }, use: 'socket_io' },
      { if: { protocol: 'none' }, use: 'silent' },
      { if: { not: { protocol: 'http' } }, use: 'sio_tcp' },
    ],
    default: 'webapp',
  },
  ['socket_io', 'silent', 'sio_tcp', 'webapp'],
);

t.test('the seed recipe over a connection’s moments', async (t) => {
  const routes = compileRoutes(seed);
  const table: [keyof typeof M, string][] = [
    ['nothing', 'wait'],
    ['byteG', 'wait'],
    // Rules 0-2 FAIL at once on a 0x00 byte (not HTTP, and a byte did arrive), so rule 3 takes it without waiting.
    ['byte00', 'rule 3 -> sio_tcp'],
    ['byte16', 'rule 3 -> sio_tcp'],
    ['hello', 'rule 3 -> sio_tcp'],
    ['lineNode', 'rule 1 -> socket_io'],
    ['lineOther', 'default'],
    ['finalNothing', 'rule 2 -> silent'],
  ];
  for (const [moment, want] of table) t.equal(show(routes.decide(M[moment], 'all')), want, moment);
});

t.test('an earlier MISS is never skipped', async (t) => {
  const routes = compileRoutes(
    frontendOf(
      {
        rules: [
          { if: { host: 'api.example.com' }, use: 'api' },
          { if: { protocol: 'http' }, use: 'web' },
        ],
      },
      ['api', 'web'],
    ),
  );
  // Rule 1 already PASSes on the request line, but rule 0 needs the Host header: wait for the head.
  t.equal(show(routes.decide(M.lineOther, 'all')), 'wait');
  t.equal(show(routes.decide(M.headApi, 'all')), 'rule 0 -> api');
  t.equal(show(routes.decide(M.headWww, 'all')), 'rule 1 -> web');
  // Out of time with the head incomplete: decide with what is there.
  t.equal(show(routes.decide(M.lineFinal, 'all')), 'rule 1 -> web');
  // Not HTTP: nothing matches and there is no default.
  t.equal(show(routes.decide(M.byte00, 'all')), 'none');
});

t.test('a later MISS does not delay an earlier PASS', async (t) => {
  const routes = compileRoutes(
    frontendOf(
      {
        rules: [
          { if: { src: '127.0.0.0/8' }, use: 'local' },
          { if: { host: 'x' }, use: 'web' },
        ],
        default: 'web',
      },
      ['local', 'web'],
    ),
  );
  t.equal(show(routes.decide(M.nothing, 'all')), 'rule 0 -> local', 'decided before any byte');
});

t.test('passthrough and plain groups', async (t) => {
  const dir = new URL('../../fixtures/configs/valid/certs/', import.meta.url).pathname;
  const config = parseConfig(
    {
      frontends: [
        {
          name: 'edge',
          listen: [':443'],
          tls: { certificates: [{ cert: 'example.pem', key: 'example.key' }] },
          rules: [
            { if: { sni: 'vpn.example.com' }, use: 'vpn', passthrough: true },
            { if: { path: { prefix: '/node' } }, use: 'node' },
          ],
          default: 'web',
        },
      ],
      backends: ['vpn', 'node', 'web'].map((name) => ({ name, servers: [{ name: 's', address: 'h:1' }] })),
    },
    { baseDir: dir, source: null },
  );
  const routes = compileRoutes(config.frontends[0]!);
  t.equal(show(routes.decide(M.byte16, 'passthrough')), 'wait', 'waiting for the ClientHello');
  t.equal(show(routes.decide(M.hello, 'passthrough')), 'rule 0 -> vpn');
  const other = facts({ probes: { ...NO, tls: 'match' }, protocol: 'tls', hello: { ...HELLO, sni: 'www.example.com' }, encrypted: true });
  // No passthrough rule: "none" means terminate, never the default backend with ciphertext.
  t.equal(show(routes.decide(other, 'passthrough')), 'none');
  const decrypted = facts({ probes: { ...NO, http: 'match' }, protocol: 'http', hello: HELLO, encrypted: true, http: { path: '/node/a' } });
  t.equal(show(routes.decide(decrypted, 'plain')), 'rule 1 -> node', 'plain rules only, after termination');
  t.equal(show(routes.decide(M.lineOther, 'plain')), 'default');
  t.equal(show(routes.decide(decrypted, 'all')), 'rule 0 -> vpn', "'all' is every rule in order");
});

t.test('decisions are preallocated', async (t) => {
  const routes = compileRoutes(seed);
  t.equal(routes.decide(M.byte00, 'all'), routes.decide(M.byte16, 'all'), 'same rule, same object');
  t.equal(routes.decide(M.nothing, 'all'), routes.decide(M.byteG, 'all'));
  t.ok(Object.isFrozen(routes.decide(M.lineOther, 'all')));
});

t.test('explain', async (t) => {
  const routes = compileRoutes(seed);
  t.same(routes.explain(M.lineOther, 'all'), [
    'rules[0] { protocol: http, path: { prefix: /socket.io } }: FAIL (path /x does not start with /socket.io) -> socket_io',
    'rules[1] { protocol: http, path: { prefix: /node } }: FAIL (path /x does not start with /node) -> socket_io',
    'rules[2] { protocol: none }: FAIL (protocol is http) -> silent',
    'rules[3] { not: { protocol: http } }: FAIL (not (protocol is http)) -> sio_tcp',
  ]);
  t.same(routes.explain(M.byteG, 'all').map((l) => l.replace(/ -> .*/, '')), [
    'rules[0] { protocol: http, path: { prefix: /socket.io } }: MISS (protocol not decided yet)',
    'rules[1] { protocol: http, path: { prefix: /node } }: MISS (protocol not decided yet)',
    'rules[2] { protocol: none }: FAIL (bytes rule out none)',
    'rules[3] { not: { protocol: http } }: MISS (not (protocol not decided yet))',
  ]);
  const sniRoutes = compileRoutes(frontendOf({ rules: [{ if: { sni: '*.example.com', alpn: 'h2' }, use: 'b' }] }, ['b']));
  t.same(sniRoutes.explain(M.hello, 'all'), ['rules[0] { sni: "*.example.com", alpn: h2 }: PASS (sni vpn.example.com matches *.example.com) -> b']);
  t.same(sniRoutes.explain(M.byte00, 'all'), ['rules[0] { sni: "*.example.com", alpn: h2 }: FAIL (no TLS ClientHello) -> b']);
});
