/**
 * Golden configs: every file in fixtures/configs/valid (and the seed) loads;
 * every fixtures/configs/invalid/<name>.(yaml|yml|json) fails with exactly
 * the lines in <name>.expected, where {file} is the config's absolute path
 * and {dir} its folder. To add a case, add the pair of files.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkConfigFile, loadConfigFile } from '../../src/config/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/configs');
const CONFIG = /\.(ya?ml|json)$/;

t.test('valid configs load', async (t) => {
  const files = [join(root, 'seed.yaml'), ...readdirSync(join(root, 'valid')).filter((f) => CONFIG.test(f)).map((f) => join(root, 'valid', f))];
  t.ok(files.length >= 5, 'has fixtures');
  for (const file of files) {
    const result = checkConfigFile(file);
    t.same(result.ok ? [] : result.problems, [], file.slice(root.length + 1));
  }
});

t.test('invalid configs fail with the expected lines', async (t) => {
  const dir = join(root, 'invalid');
  const files = readdirSync(dir).filter((f) => CONFIG.test(f));
  t.ok(files.length >= 12, 'has fixtures');
  for (const name of files) {
    const file = join(dir, name);
    const expected = readFileSync(file.replace(CONFIG, '.expected'), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.replaceAll('{file}', file).replaceAll('{dir}', dir));
    const result = checkConfigFile(file);
    t.same(result.ok ? ['(loaded without problems)'] : result.problems, expected, name);
  }
});

t.test('the seed config normalises as documented', async (t) => {
  const config = loadConfigFile(join(root, 'seed.yaml'));
  t.equal(config.source, join(root, 'seed.yaml'));
  t.same(config.global, { maxconn: 200000, workers: 1, workerBalance: 'primary', grace: 10000, splice: 'auto', sniffBudget: { total: 10000, perSource: 1000 } });
  const app = config.frontends[0]!;
  t.same(app.inspect, { delay: 500, maxBytes: 16384 });
  t.same(app.timeouts, { client: 86_400_000, tunnel: 86_400_000, handshake: 10_000, httpRequest: 10_000 });
  t.same(app.listen, [{ address: { host: '127.0.0.1', port: 8080, text: '127.0.0.1:8080' }, proxyProtocol: false }]);
  // `{ protocol: http, path: ... }` is an implicit `all`, one key per object.
  t.same(app.rules[0]!.if, { all: [{ protocol: 'http' }, { path: { prefix: '/socket.io' } }] });
  t.equal(app.default, 'webapp');
  const policy = config.frontends[1]!;
  t.same([policy.rules, policy.default, policy.flashPolicy], [[], null, true]);
  t.match(config.flashPolicy, /<allow-access-from domain="\*" to-ports="80,443,843,8080"\/>/);
  t.ok(Object.isFrozen(config) && Object.isFrozen(app.rules[0]!.if) && Object.isFrozen(config.backends[0]!.servers[0]!.address));
});
