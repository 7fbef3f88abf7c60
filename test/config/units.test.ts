/** The config's small parts, table-driven: durations, addresses, policy documents, paths, the API's edges. */
import t from 'tap';
import { writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConfigFile, configSchema, loadConfigFile, parseConfig, parseAddress, parseDuration } from '../../src/config/index.js';
import { buildPolicyDocument, portsProblem } from '../../src/config/policy-document.js';
import { formatPath } from '../../src/config/path.js';
import { SniffmuxError } from '../../src/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

const MINIMAL = {
  frontends: [{ name: 'a', listen: ['127.0.0.1:1234'], default: 'b' }],
  backends: [{ name: 'b', servers: [{ name: 's', address: '127.0.0.1:1' }] }],
};
const opts = { baseDir: tmpdir(), source: null };

function problemsOf(raw: unknown, options: Parameters<typeof parseConfig>[1] = opts): readonly string[] {
  try {
    parseConfig(raw, options);
    return [];
  } catch (err) {
    if (!(err instanceof SniffmuxError)) throw err;
    return err.problems;
  }
}

t.test('durations', async (t) => {
  const table: [number | string, number | RegExp][] = [
    [0, 0],
    [250, 250],
    ['500ms', 500],
    ['5s', 5000],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['750', 750],
    ['0.1s', 100],
    ['5 s', /invalid duration/],
    ['5S', /invalid duration/],
    ['-1s', /invalid duration/],
    ['s', /invalid duration/],
    ['1.0005s', /whole number of milliseconds/],
    ['25d', /too long/],
    [2 ** 31, /too long/],
    [1.5, /invalid duration/],
  ];
  for (const [input, want] of table) {
    const got = parseDuration(input);
    if (typeof want === 'number') t.equal(got, want, String(input));
    else t.match(got, want, String(input));
  }
});

t.test('addresses', async (t) => {
  const ok: [string, boolean, string, number][] = [
    ['127.0.0.1:80', true, '127.0.0.1', 80],
    ['[::1]:8080', true, '::1', 8080],
    [':443', false, '', 443],
    ['*:443', false, '', 443],
    ['localhost:65535', true, 'localhost', 65535],
    ['backend-1.internal:1', true, 'backend-1.internal', 1],
  ];
  for (const [text, needHost, host, port] of ok) t.same(parseAddress(text, needHost), { host, port, text }, text);
  const bad: [string, boolean, string | RegExp][] = [
    ['127.0.0.1:0', false, 'port must be 1-65535'],
    ['127.0.0.1:65536', true, 'port must be 1-65535'],
    ['127.0.0.1:http', true, 'port must be 1-65535'],
    ['127.0.0.1', true, /use host:port/],
    ['::1:80', true, /brackets/],
    ['[::1]80', true, /\[IPv6\]:port/],
    ['[zz]:80', true, /not an IPv6 address/],
    ['999.1.1.1:80', true, /not a host name or IP address/],
    ['a b:80', true, /not a host name/],
    [':80', true, /needs a host/],
  ];
  for (const [text, needHost, want] of bad) t.match(parseAddress(text, needHost), want, text);
  t.equal((parseAddress('127.0.0.1:0', false, true) as { port: number }).port, 0, 'port 0 only on request');
});

t.test('flash policy documents', async (t) => {
  t.equal(
    buildPolicyDocument([{ domain: '*.example.com', ports: '80,443' }, { domain: 'a"b<c>&\'', ports: '*' }]),
    [
      '<?xml version="1.0"?>',
      '<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">',
      '<cross-domain-policy>',
      '<site-control permitted-cross-domain-policies="master-only"/>',
      '<allow-access-from domain="*.example.com" to-ports="80,443"/>',
      '<allow-access-from domain="a&quot;b&lt;c&gt;&amp;&apos;" to-ports="*"/>',
      '</cross-domain-policy>',
    ].join('\n'),
  );
  for (const ok of ['*', '80', '80,443,8000-8100', '1-65535']) t.equal(portsProblem(ok), null, ok);
  for (const bad of ['', '80,', '0', '70000', '90-80', '80;443', '*,80', ' 80']) t.type(portsProblem(bad), 'string', JSON.stringify(bad));
  const config = parseConfig(MINIMAL, opts);
  t.match(config.flashPolicy, '<allow-access-from domain="*" to-ports="*"/>', 'default: anyone, any port');
});

t.test('problem paths', async (t) => {
  t.equal(formatPath([]), '(root)');
  t.equal(formatPath(['frontends', 0, 'listen', 1]), 'frontends[0].listen[1]');
  t.equal(formatPath(['backends', 2, 'servers', 0, 'address']), 'backends[2].servers[0].address');
  t.equal(formatPath(['frontends', 0, 'a b']), 'frontends[0]["a b"]');
});

t.test('defaults are filled in from the schema', async (t) => {
  const config = parseConfig(MINIMAL, opts);
  t.same(config.global, { maxconn: 0, workers: 1, workerBalance: 'primary', grace: 10_000, splice: 'auto', sniffBudget: { total: 10_000, perSource: 1000 } });
  t.same(config.log, { level: 'info' });
  const f = config.frontends[0]!;
  t.same(
    { maxconn: f.maxconn, inspect: f.inspect, timeouts: f.timeouts, flashPolicy: f.flashPolicy, tls: f.tls, rules: f.rules },
    { maxconn: 0, inspect: { delay: 500, maxBytes: 16384 }, timeouts: { client: 30_000, tunnel: 3_600_000, handshake: 10_000, httpRequest: 10_000 }, flashPolicy: false, tls: null, rules: [] },
  );
  const b = config.backends[0]!;
  t.same(
    { mode: b.mode, balance: b.balance, retries: b.retries, maxqueue: b.maxqueue, timeouts: b.timeouts },
    { mode: 'tcp', balance: 'roundrobin', retries: 2, maxqueue: 10_000, timeouts: { connect: 5000, server: 30_000, tunnel: null, queue: 10_000 } },
  );
  t.same(b.servers[0], { name: 's', address: { host: '127.0.0.1', port: 1, text: '127.0.0.1:1' }, maxconn: 0, weight: 1, backup: false });
  t.equal(config.source, null);
  t.same(MINIMAL.frontends[0], { name: 'a', listen: ['127.0.0.1:1234'], default: 'b' }, "the caller's object is untouched");
});

t.test('workers: auto is the CPU count', async (t) => {
  const config = parseConfig({ ...MINIMAL, global: { workers: 'auto' } }, opts);
  t.ok(Number.isInteger(config.global.workers) && config.global.workers >= 1);
  t.same(problemsOf({ ...MINIMAL, global: { workers: 'many' } }), ['global.workers: must be a number of processes or "auto"']);
});

t.test('workerBalance: primary (the default) or kernel', async (t) => {
  t.equal(parseConfig({ ...MINIMAL, global: { workers: 2, workerBalance: 'kernel' } }, opts).global.workerBalance, 'kernel');
  t.match(problemsOf({ ...MINIMAL, global: { workerBalance: 'random' } }), [/^global\.workerBalance: .*primary.*kernel/]);
});

t.test('listen port 0 (any free port): allowed unless listenPortZero is false', async (t) => {
  const raw = { ...MINIMAL, frontends: [{ name: 'a', listen: ['127.0.0.1:0', ':0'], default: 'b' }] };
  t.same(problemsOf(raw, { ...opts, listenPortZero: false }), [
    'frontends[0].listen[0]: port must be 1-65535',
    'frontends[0].listen[1]: port must be 1-65535',
  ]);
  const config = parseConfig(raw, opts);
  t.equal(config.frontends[0]!.listen[1]!.address.port, 0, 'the default for parseConfig');
  const dir = tempDir('sniffmux-port0-');
  writeFileSync(join(dir, 'c.json'), JSON.stringify(raw));
  const checked = checkConfigFile(join(dir, 'c.json'));
  t.equal(checked.ok, true, 'a file may ask for any free port too (the listening log line names it)');
});

t.test('documents from code: plain data only', async (t) => {
  t.same(problemsOf({ ...MINIMAL, global: { grace: new Date(0) } }), [
    'global.grace: must be plain data (a string, number, boolean, list or mapping), not Date',
  ]);
  const withProto = JSON.parse('{"__proto__": {"x": 1}, "frontends": []}');
  t.same(problemsOf(withProto), ["(root): unknown key '__proto__'", 'frontends: must not be empty']);
  const cyclic: Record<string, unknown> = { ...MINIMAL };
  cyclic.global = cyclic;
  t.match(problemsOf(cyclic)[0], /nested more than 64 levels deep/);
  t.same(problemsOf(undefined), ['(root): the configuration is empty']);
  t.same(problemsOf([]), ['(root): must be a mapping with frontends and backends']);
  // A key with a carriage return or a terminal escape in it: the line stays one printable line (found by test/config/fuzz.test.ts).
  t.same(problemsOf({ ...MINIMAL, 'a\rb\u001b[2K\u2028': 1 }), ["(root): unknown key 'a\\rb\\u001b[2K\\u2028'"]);
});

t.test('the thrown error', async (t) => {
  const err = t.throws(() => parseConfig({ frontends: [], foo: 1 }, opts)) as SniffmuxError;
  t.equal(err.code, 'SMX_ERR_CONFIG');
  t.same(err.problems, ["(root): unknown key 'foo'", 'frontends: must not be empty']);
  t.equal(err.message, "invalid configuration: (root): unknown key 'foo' (and 1 more)");
});

t.test('files: unreadable, by extension, relative paths', async (t) => {
  const dir = tempDir('sniffmux-config-');
  const missing = join(dir, 'nope.yaml');
  const err = t.throws(() => loadConfigFile(missing)) as SniffmuxError;
  t.equal(err.code, 'SMX_ERR_CONFIG_READ');
  t.same(err.problems, [`${missing}: cannot read config file: no such file`]);
  t.same(checkConfigFile(missing), { ok: false, problems: [`${missing}: cannot read config file: no such file`] });
  t.same(checkConfigFile(dir), { ok: false, problems: [`${dir}: cannot read config file: is a directory`] });

  // No extension: JSON first, then YAML.
  writeFileSync(join(dir, 'config'), JSON.stringify(MINIMAL));
  t.ok(checkConfigFile(join(dir, 'config')).ok, 'JSON without extension');
  writeFileSync(join(dir, 'config2'), 'frontends:\n  - { name: a, listen: [":1234"], default: b }\nbackends:\n  - { name: b, servers: [{ name: s, address: "h:1" }] }\n');
  t.ok(checkConfigFile(join(dir, 'config2')).ok, 'YAML without extension');
  // .json is JSON only: YAML in it is a JSON syntax error.
  writeFileSync(join(dir, 'c.json'), 'frontends: []\n');
  t.same(checkConfigFile(join(dir, 'c.json')), { ok: false, problems: [`${join(dir, 'c.json')}:1:1: JSON syntax error: expected a value, found "f"`] });
  writeFileSync(join(dir, 'bom.json'), '\uFEFF' + JSON.stringify(MINIMAL));
  t.ok(checkConfigFile(join(dir, 'bom.json')).ok, 'a byte-order mark is ignored');

  // Relative paths resolve against the config's folder, not the working directory.
  writeFileSync(join(dir, 'policy.xml'), '<cross-domain-policy/>');
  writeFileSync(join(dir, 'p.yaml'), 'flashPolicy: { file: policy.xml }\nfrontends: [{ name: p, listen: [":843"], flashPolicy: true }]\n');
  const config = loadConfigFile(join(dir, 'p.yaml'));
  t.equal(config.flashPolicy, '<cross-domain-policy/>');
  t.equal(config.source, join(dir, 'p.yaml'));
});

t.test('files nested past 64 levels are refused before a parser recurses into them', async (t) => {
  const dir = tempDir('sniffmux-deep-');
  const deep: Array<[string, string]> = [
    ['flow', '['.repeat(5000)],
    ['flow, closed', `${'['.repeat(5000)}${']'.repeat(5000)}`],
    ['flow maps', '{"a": '.repeat(2000)],
    ['block sequence', `${'- '.repeat(5000)}x\n`],
    ['block maps', `${Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n')} x\n`],
  ];
  // Before the limit, the yaml parser's stack overflow on the first of these broke V8's regexp
  // compiler and the next parse aborted the process; so each is loaded again and again.
  for (let round = 0; round < 3; round++) {
    for (const [what, text] of deep) {
      for (const ext of ['.json', '.yaml', '.conf']) {
        const file = join(dir, `deep${ext}`);
        writeFileSync(file, text);
        const checked = checkConfigFile(file);
        const problems = checked.ok ? [] : checked.problems;
        const expected = ext === '.json' && !what.startsWith('flow') ? /JSON syntax error/ : /^\S+:\d+:\d+: (JSON syntax error: )?nested more than 64 levels deep$/;
        if (round === 0) t.match(problems, [expected], `${what}, ${ext}`);
      }
    }
  }
  // 64 levels are allowed: the problems are about what is there, not how deep.
  const file = join(dir, 'deep64.json');
  writeFileSync(file, JSON.stringify({ ...MINIMAL, global: JSON.parse(`${'['.repeat(63)}${']'.repeat(63)}`) }));
  const checked = checkConfigFile(file);
  t.notMatch(checked.ok ? [] : checked.problems, [/nested/], 'a 64-level document is parsed and validated');
  t.ok(checkConfigFile(join(dir, 'deep.conf')), 'still loading after all that');
  writeFileSync(join(dir, 'fine.yaml'), 'frontends:\n  - { name: a, listen: [":1234"], default: b }\nbackends:\n  - { name: b, servers: [{ name: s, address: "h:1" }] }\n');
  t.ok(checkConfigFile(join(dir, 'fine.yaml')).ok, 'a good YAML file still loads');
});

t.test('the schema', async (t) => {
  const text = JSON.stringify(configSchema);
  // One precise error per problem depends on this: see the note in schema.ts.
  t.notMatch(text, /"(anyOf|oneOf)"/, 'no anyOf/oneOf');
  t.equal(JSON.parse(text).title, 'sniffmux configuration', 'serialisable');
});

t.test('conditions: multiple keys are an implicit all; messages name the path', async (t) => {
  const rules = (list: unknown[]) => ({ ...MINIMAL, frontends: [{ name: 'a', listen: [':1234'], rules: list, default: 'b' }] });
  const config = parseConfig(rules([{ if: { protocol: 'http', host: 'a.*', not: { method: 'GET' } }, use: 'b' }]), opts);
  t.same(config.frontends[0]!.rules[0]!.if, { all: [{ protocol: 'http' }, { host: 'a.*' }, { not: { method: 'GET' } }] });
  t.same(problemsOf(rules([{ if: { path: { prefix: '/a', regex: 'x' } }, use: 'b' }])), ['frontends[0].rules[0].if.path: must have only one of: prefix, regex']);
  t.same(problemsOf(rules([{ if: { sni: 'a b' }, use: 'b' }])), [
    "frontends[0].rules[0].if.sni: invalid host name pattern 'a b': use letters, digits, '.', '-', '*' and '?'",
  ]);
  t.same(problemsOf(rules([{ if: { hots: 1 }, use: 'b' }])), ["frontends[0].rules[0].if: unknown key 'hots' (did you mean 'host'?)"]);
  t.same(problemsOf(rules([{ if: { cookie: 'x' }, use: 'b' }])), ["frontends[0].rules[0].if: unknown key 'cookie'"]);
  t.same(problemsOf(rules([{ if: { prot: 'http' }, use: 'b' }])), ["frontends[0].rules[0].if: unknown key 'prot' (did you mean 'port'?)"]);
  t.same(problemsOf(rules([{ if: { all: [] }, use: 'b' }])), ['frontends[0].rules[0].if.all: must not be empty']);
  t.same(problemsOf(rules([{ if: { port: [80, 'x'] }, use: 'b' }])), ['frontends[0].rules[0].if.port[1]: must be a whole number']);
  t.same(problemsOf(rules([{ if: { method: 7 }, use: 'b' }])), ['frontends[0].rules[0].if.method: must be a string or a list of them']);
  t.same(problemsOf(rules([{ if: { protocol: 'http' }, use: 'b', passthrough: 'yes' }])), ['frontends[0].rules[0].passthrough: must be true or false']);
});

t.test('the passthrough group and the plain group are checked apart', async (t) => {
  const dir = tempDir('sniffmux-tls-');
  // Real certificates: the loader checks that they parse and belong together.
  const certs = join(import.meta.dirname, '../../fixtures/configs/valid/certs');
  writeFileSync(join(dir, 'c.pem'), readFileSync(join(certs, 'example.pem')));
  writeFileSync(join(dir, 'k.pem'), readFileSync(join(certs, 'example.key')));
  const frontend = (rules: unknown[], tls: boolean) => ({
    ...MINIMAL,
    frontends: [{ name: 'a', listen: [':1234'], rules, default: 'b', ...(tls ? { tls: { certificates: [{ cert: 'c.pem', key: 'k.pem' }] } } : {}) }],
  });
  const rules = [
    { if: { tls: true }, use: 'b', passthrough: true },
    { if: { protocol: 'http' }, use: 'b' },
    { if: { sni: 'x.example' }, use: 'b', passthrough: true },
  ];
  t.same(problemsOf(frontend(rules, true), { baseDir: dir, source: null }), ['frontends[0].rules[2]: unreachable: rules[0] matches every connection']);
  // Without tls it is one list, and `tls: true` is not a catch-all there.
  t.same(problemsOf(frontend(rules, false), { baseDir: dir, source: null }), []);
});
