/**
 * Time-boxed properties: whatever document parseConfig is given, it returns a
 * Config or throws SniffmuxError SMX_ERR_CONFIG whose problems are single
 * `PATH: message` lines, never anything else. Documents are built from the
 * real key names and plausible values so the search goes deep, mixed with
 * arbitrary JSON. The same holds one stage earlier, for the text of a config
 * file (the fixtures, mutated, as YAML and JSON) through loadConfigText.
 */
import t from 'tap';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigText, parseConfig } from '../../src/config/index.js';
import { SniffmuxError } from '../../src/errors.js';

const KEYS = [
  'global', 'maxconn', 'workers', 'grace', 'log', 'level', 'flashPolicy', 'allow', 'domain', 'ports', 'file', 'frontends', 'backends',
  'name', 'listen', 'address', 'proxyProtocol', 'inspect', 'delay', 'maxBytes', 'timeouts', 'client', 'tunnel', 'tls', 'certificates',
  'cert', 'key', 'minVersion', 'rules', 'if', 'use', 'passthrough', 'default', 'mode', 'balance', 'retries', 'maxqueue', 'connect', 'server', 'queue',
  'servers', 'weight', 'backup', 'protocol', 'sni', 'alpn', 'host', 'method', 'path', 'prefix', 'regex', 'header', 'websocket', 'src',
  'port', 'all', 'any', 'not', '__proto__', 'constructor', 'toString',
];
const WORDS = [
  '5s', '500ms', '1.5s', '24h', '30d', 'x', '', ':80', ':0', '127.0.0.1:8080', '[::1]:1', '::1:80', 'auto', 'http', 'tls', 'none', 'other',
  '*', '*.example.com', '10.0.0.0/8', '10.0.0.1/8', '::/0', '(', '^/a', 'a', 'b', 'tcp', 'roundrobin', 'TLSv1.3', 'info', '80,443', '90-80',
];

const scalar = fc.oneof(
  fc.constantFrom(...WORDS),
  fc.string({ maxLength: 8 }),
  fc.integer({ min: -2, max: 70000 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 6 },
    scalar,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 4 })), tie('value'), { maxKeys: 4 }),
  ),
}));
// ---- valid documents (mostly) ----
const duration = fc.oneof(fc.constantFrom('5s', '500ms', '1.5s', '2m', '24h'), fc.integer({ min: 0, max: 2 ** 31 - 1 }));
const glob = fc.constantFrom('*', '*.example.com', 'a?', 'api.example.com');
const name = fc.constantFrom('a', 'b', 'c');
const { condition } = fc.letrec((tie) => ({
  condition: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    fc.record({ protocol: fc.oneof(fc.constantFrom('tls', 'http', 'http2', 'ssh', 'flash-policy', 'other', 'none'), fc.array(fc.constantFrom('tls', 'http', 'none', 'other'), { minLength: 1, maxLength: 4 })) }),
    fc.record({ sni: fc.oneof(glob, fc.array(glob, { minLength: 1, maxLength: 2 })) }),
    fc.record({ host: glob }),
    fc.record({ alpn: fc.constantFrom('h2', 'http/1.1') }),
    fc.record({ tls: fc.boolean() }),
    fc.record({ websocket: fc.boolean() }),
    fc.record({ method: fc.constantFrom('GET', 'P*') }),
    fc.record({ path: fc.oneof(fc.record({ prefix: fc.constantFrom('/a', '/node') }), fc.record({ regex: fc.constantFrom('^/a', '[0-9]+') })) }),
    fc.record({ header: fc.record({ name: fc.constantFrom('x-a', 'Host'), regex: fc.constantFrom('^1$', '.') }) }),
    fc.record({ src: fc.oneof(fc.constantFrom('10.0.0.0/8', '0.0.0.0/0', '::/0', '2001:db8::/32'), fc.constant(['0.0.0.0/0', '::/0'])) }),
    fc.record({ port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constant([8080, 8081])) }),
    fc.record({ all: fc.array(tie('condition'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('condition'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ not: tie('condition') }),
    fc.record({ protocol: fc.constant('http'), path: fc.record({ prefix: fc.constant('/x') }) }),
  ),
}));
const listen = fc.oneof(
  fc.integer({ min: 1, max: 65535 }).map((port) => `127.0.0.1:${port}`),
  fc.record({ address: fc.integer({ min: 1, max: 65535 }).map((port) => `[::1]:${port}`), proxyProtocol: fc.boolean() }),
);
const frontend = fc.record(
  {
    name,
    listen: fc.array(listen, { minLength: 1, maxLength: 2 }),
    rules: fc.array(fc.record({ if: condition, use: name, passthrough: fc.boolean() }, { requiredKeys: ['if', 'use'] }), { maxLength: 4 }),
    default: name,
    flashPolicy: fc.boolean(),
    maxconn: fc.nat(10),
    inspect: fc.record({ delay: duration, maxBytes: fc.integer({ min: 64, max: 1_048_576 }) }, { requiredKeys: [] }),
    timeouts: fc.record({ client: duration, tunnel: duration }, { requiredKeys: [] }),
  },
  { requiredKeys: ['name', 'listen', 'default'] },
);
const server = fc.record(
  { name, address: fc.constantFrom('h:1', '127.0.0.1:9', '[::1]:2'), weight: fc.nat(256), backup: fc.boolean() },
  { requiredKeys: ['name', 'address'] },
);
const backends = fc.constantFrom('a', 'b', 'c').chain(() =>
  fc.tuple(...['a', 'b', 'c'].map((n) =>
    fc.record({
      name: fc.constant(n),
      servers: fc.uniqueArray(server, { minLength: 1, maxLength: 2, selector: (s) => s.name }),
      mode: fc.constantFrom('tcp', 'http'),
      timeouts: fc.record({ connect: duration, tunnel: fc.oneof(duration, fc.constant(null)) }, { requiredKeys: [] }),
    }, { requiredKeys: ['name', 'servers'] }),
  )),
);
const validish = fc.record(
  {
    frontends: fc.uniqueArray(frontend, { minLength: 1, maxLength: 3, selector: (f) => f.name }),
    backends,
    global: fc.record({ workers: fc.constantFrom(1, 'auto'), grace: duration, maxconn: fc.nat() }, { requiredKeys: [] }),
    log: fc.record({ level: fc.constantFrom('info', 'silent') }),
    flashPolicy: fc.oneof(fc.record({ allow: fc.array(fc.record({ domain: glob, ports: fc.constantFrom('*', '80,443', '8000-8100') }), { minLength: 1, maxLength: 2 }) }), fc.constant({ file: 'nope.xml' })),
  },
  { requiredKeys: ['frontends', 'backends'] },
);

/** Replace the n-th node (depth-first, modulo the count) with `garbage`. */
function mutate(doc: unknown, n: number, garbage: unknown): unknown {
  let count = 0;
  const nodes: unknown[] = [];
  const walk = (v: unknown): void => {
    nodes.push(v);
    count++;
    if (v !== null && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(doc);
  const target = n % count;
  let i = 0;
  const rebuild = (v: unknown): unknown => {
    if (i++ === target) return garbage;
    if (Array.isArray(v)) return v.map(rebuild);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rebuild(x)]));
    return v;
  };
  return rebuild(doc);
}

const document = fc.oneof(
  { arbitrary: validish, weight: 4 },
  { arbitrary: fc.tuple(validish, fc.nat(), value).map(([d, n, v]) => mutate(d, n, v)), weight: 4 },
  { arbitrary: fc.tuple(validish, fc.nat(), fc.constantFrom(...KEYS), value).map(([d, n, k, v]) => mutate(d, n, { [k]: v })), weight: 2 },
  { arbitrary: fc.jsonValue(), weight: 1 },
  { arbitrary: fc.anything(), weight: 1 },
);

/** Problems carry keys, values and pieces of the text: no line break of any kind may come along. */
const ONE_LINE = /^[^\n\r\u2028\u2029]+: [^\n\r\u2028\u2029]+$/;

t.test('parseConfig throws only SniffmuxError with one-line problems', async (t) => {
  let accepted = 0;
  let runs = 0;
  fc.assert(
    fc.property(document, (raw) => {
      runs++;
      try {
        parseConfig(raw, { baseDir: tmpdir(), source: null });
        accepted++;
      } catch (err) {
        if (!(err instanceof SniffmuxError) || err.code !== 'SMX_ERR_CONFIG') throw err;
        if (err.problems.length === 0) throw new Error('no problems listed');
        for (const line of err.problems) if (!ONE_LINE.test(line)) throw new Error(`not a PATH: message line: ${JSON.stringify(line)}`);
      }
    }),
    { numRuns: 1_000_000, interruptAfterTimeLimit: 2000 },
  );
  t.ok(runs > 100, `${runs} documents tried, ${accepted} accepted`);
  t.ok(accepted > 0, 'some documents are valid, so normalisation and semantics ran');
});

// ---- the text stage: YAML and JSON as a file holds them ----

const CONFIGS = fileURLToPath(new URL('../../fixtures/configs/', import.meta.url));
const CONFIG_FILE = /\.(ya?ml|json)$/;

function configFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const at = path.join(dir, entry.name);
    if (entry.isDirectory()) return configFiles(at);
    return CONFIG_FILE.test(entry.name) ? [at] : [];
  });
}

/** Every fixture (valid and invalid), plus texts that are hard on a parser: an alias bomb, deep nesting, a byte-order mark. */
const SEED_TEXTS = [
  ...configFiles(CONFIGS).map((file) => ({ file, text: readFileSync(file, 'utf8') })),
  { file: path.join(CONFIGS, 'bomb.yaml'), text: `a: &a ["x","x","x","x","x","x","x","x","x"]\n${Array.from({ length: 8 }, (_, i) => `${'bcdefghi'[i]}: &${'bcdefghi'[i]} [${Array(9).fill(`*${i === 0 ? 'a' : 'bcdefghi'[i - 1]}`).join(',')}]`).join('\n')}\n` },
  { file: path.join(CONFIGS, 'deep.json'), text: `${'['.repeat(5000)}${']'.repeat(5000)}` },
  { file: path.join(CONFIGS, 'deep.yaml'), text: `${'- '.repeat(2000)}x\n` },
  { file: path.join(CONFIGS, 'bom.json'), text: '\uFEFF{"frontends": []}' },
];

/** What YAML and JSON are made of, and values their parsers treat specially. */
const SYNTAX = [
  ...':{}[],"\'-#&*!|>?%@`\\ \t\n', '\r', '\u0000', '\uFEFF', '\u2028', 'é', '\ud800',
  'true', 'null', '~', '<<', '0x1F', '0o17', '1e999', '.inf', '.nan', '---', '...', '!!binary', '!!js/function', '&a', '*a', '__proto__',
];
const syntaxText = (maxLength: number) => fc.string({ unit: fc.constantFrom(...SYNTAX), maxLength });

type Edit =
  | { kind: 'cut'; at: number; length: number }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'lines'; op: 'drop' | 'repeat' | 'swap' | 'indent'; a: number; b: number }
  | { kind: 'truncate'; at: number };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: syntaxText(12) }),
  fc.record({ kind: fc.constant('lines' as const), op: fc.constantFrom('drop' as const, 'repeat' as const, 'swap' as const, 'indent' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

function applyEdit(text: string, e: Edit): string {
  const at = (n: number) => n % (text.length + 1);
  switch (e.kind) {
    case 'cut':
      return text.slice(0, at(e.at)) + text.slice(at(e.at) + e.length);
    case 'insert':
      return text.slice(0, at(e.at)) + e.text + text.slice(at(e.at));
    case 'truncate':
      return text.slice(0, at(e.at));
    case 'lines': {
      const lines = text.split('\n');
      const a = e.a % lines.length;
      const b = e.b % lines.length;
      if (e.op === 'drop') lines.splice(a, 1);
      else if (e.op === 'repeat') lines.splice(a, 0, lines[a]!);
      else if (e.op === 'indent') lines[a] = `  ${lines[a]}`;
      else [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
  }
}

/** A text and the file name it is loaded as: its own, or the same folder with another extension (which picks the parser). */
const configText = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({ seed: fc.constantFrom(...SEED_TEXTS), edits: fc.array(edit, { minLength: 1, maxLength: 4 }), ext: fc.constantFrom('', '.yaml', '.json', '.conf') })
      .map(({ seed, edits, ext }) => ({ file: ext === '' ? seed.file : seed.file.replace(CONFIG_FILE, ext), text: edits.reduce(applyEdit, seed.text) })),
  },
  { weight: 1, arbitrary: fc.constantFrom(...SEED_TEXTS) },
  { weight: 1, arbitrary: fc.record({ file: fc.constantFrom('x.yaml', 'x.json', 'x.conf').map((f) => path.join(CONFIGS, f)), text: syntaxText(200) }) },
  { weight: 1, arbitrary: fc.record({ file: fc.constant(path.join(CONFIGS, 'x.conf')), text: fc.string({ unit: 'binary', maxLength: 200 }) }) },
);

t.test('config text (YAML, JSON, mutated fixtures): only SMX_ERR_CONFIG with one-line problems', async (t) => {
  let runs = 0;
  let accepted = 0;
  // Printed, not asserted (timings vary with the machine): a parser gone super-linear shows here.
  let slowest = 0;
  fc.assert(
    fc.property(configText, ({ file, text }) => {
      runs++;
      const started = performance.now();
      try {
        loadConfigText(text, file);
        accepted++;
      } catch (err) {
        if (!(err instanceof SniffmuxError) || err.code !== 'SMX_ERR_CONFIG') throw err;
        if (err.problems.length === 0) throw new Error('no problems listed');
        for (const line of err.problems) if (!ONE_LINE.test(line)) throw new Error(`not a PATH: message line: ${JSON.stringify(line)}`);
      }
      const took = performance.now() - started;
      slowest = Math.max(slowest, took);
    }),
    { numRuns: 1_000_000, interruptAfterTimeLimit: 2000 },
  );
  t.ok(runs > 100, `${runs} texts tried, ${accepted} loaded, slowest ${Math.round(slowest)} ms`);
  t.ok(accepted > 0, 'some texts are valid, so every stage ran');
});
