/**
 * Micro-benchmarks, no sockets: the per-connection CPU work before the first
 * byte goes to a server. Each case does what ClientConnection does for one
 * connection's first bytes: a new Sniffer, update(), and (for the routing
 * cases) decide() over the seed rules with the connection as RouteFacts.
 *
 *   node --import tsx bench/micro/sniff-and-route.ts
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../../src/config/index.js';
import { decide } from '../../src/frontend/decide.js';
import type { RouteTable } from '../../src/frontend/frontend.js';
import type { RouteFacts } from '../../src/route/facts.js';
import { compileRoutes } from '../../src/route/index.js';
import type { ProbedProtocol } from '../../src/sniff/probe.js';
import { Sniffer, type SniffView } from '../../src/sniff/sniffer.js';
import { CLIENT_HELLO, HTTP_CLOSE_REQUEST, POLICY_REQUEST, RAW_REQUEST, WS_UPGRADE_REQUEST } from '../../src/bench/protocol.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface MicroResult {
  readonly name: string;
  readonly nsPerOp: number;
  readonly opsPerSecond: number;
  readonly iterations: number;
}

/** Runs `fn` in batches for about `ms` after a warm-up; ns per call. */
function measure(name: string, fn: () => unknown, ms = 400): MicroResult {
  let sink = 0;
  const warmEnd = performance.now() + ms / 4;
  while (performance.now() < warmEnd) for (let i = 0; i < 100; i++) sink ^= fn() ? 1 : 0;
  let iterations = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 1000; i++) sink ^= fn() ? 1 : 0;
    iterations += 1000;
    now = performance.now();
  }
  if (sink === 42) process.stdout.write('');
  const ns = ((now - start) * 1e6) / iterations;
  return { name, nsPerOp: ns, opsPerSecond: 1e9 / ns, iterations };
}

class Facts implements RouteFacts {
  final = false;
  readonly encrypted = false;
  readonly srcIp = '127.0.0.1';
  readonly localPort = 8080;
  view: SniffView | undefined;
  probe(p: ProbedProtocol) {
    return this.view ? this.view.probe(p) : 'need-more';
  }
  get protocol() {
    return this.view?.protocol;
  }
  get hello() {
    return this.view?.hello;
  }
  get http() {
    return this.view?.http;
  }
}

export function runMicro(ms = 400): MicroResult[] {
  const config = loadConfigFile(path.join(ROOT, 'fixtures/configs/seed.yaml'));
  const frontend = config.frontends.find((f) => f.name === 'app')!;
  const routes = compileRoutes(frontend) as RouteTable;
  const maxBytes = frontend.inspect.maxBytes;
  const chromium = readFileSync(path.join(ROOT, 'fixtures/clienthellos/clienthello-chromium-156.bin'));
  const inputs: [string, Buffer][] = [
    ['curl ClientHello (517 B)', CLIENT_HELLO],
    ['Chromium 156 ClientHello (2,019 B)', chromium],
    ['HTTP GET head (118 B)', HTTP_CLOSE_REQUEST],
    ['WebSocket upgrade head', WS_UPGRADE_REQUEST],
    ['policy request', POLICY_REQUEST],
    ['raw bytes (0x00…)', RAW_REQUEST],
  ];
  const out: MicroResult[] = [];
  for (const [label, bytes] of inputs) {
    out.push(measure(`sniff: ${label}`, () => new Sniffer({ maxBytes }).update(bytes, false).protocol, ms));
  }
  for (const [label, bytes] of inputs) {
    out.push(
      measure(
        `sniff + seed rules: ${label}`,
        () => {
          const facts = new Facts();
          facts.view = new Sniffer({ maxBytes }).update(bytes, false);
          return decide(frontend, routes, facts).kind;
        },
        ms,
      ),
    );
  }
  // The rules alone, on facts already sniffed.
  const httpFacts = new Facts();
  httpFacts.view = new Sniffer({ maxBytes }).update(HTTP_CLOSE_REQUEST, false);
  out.push(measure('seed rules only: HTTP /socket.io/ facts', () => decide(frontend, routes, httpFacts).kind, ms));
  const tlsFacts = new Facts();
  tlsFacts.view = new Sniffer({ maxBytes }).update(CLIENT_HELLO, false);
  out.push(measure('seed rules only: TLS facts', () => decide(frontend, routes, tlsFacts).kind, ms));
  // A ClientHello arriving in two TCP segments: the probe runs twice.
  const half = CLIENT_HELLO.subarray(0, 260);
  out.push(
    measure(
      'sniff: curl ClientHello in 2 segments',
      () => {
        const s = new Sniffer({ maxBytes });
        s.update(half, false);
        return s.update(CLIENT_HELLO, false).protocol;
      },
      ms,
    ),
  );
  return out;
}

export function microTable(results: readonly MicroResult[]): string {
  const lines = ['| case | ns/op | ops/s |', '|---|---:|---:|'];
  for (const r of results) lines.push(`| ${r.name} | ${Math.round(r.nsPerOp).toLocaleString('en-US')} | ${Math.round(r.opsPerSecond).toLocaleString('en-US')} |`);
  return lines.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.stdout.write(microTable(runMicro()));
}
