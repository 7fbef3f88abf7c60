/** The admin and healthCheck keys as the runtime gets them: defaults, `expect` classes, what absence means. */
import t from 'tap';
import { tmpdir } from 'node:os';
import { parseConfig } from '../../src/config/index.js';
import type { SniffmuxError } from '../../src/errors.js';

const base = {
  frontends: [{ name: 'a', listen: ['127.0.0.1:1234'], default: 'b' }],
  backends: [{ name: 'b', servers: [{ name: 's', address: '127.0.0.1:1' }] }],
};
const opts = { baseDir: tmpdir(), source: null };

function withCheck(healthCheck: unknown) {
  return parseConfig({ ...base, backends: [{ ...base.backends[0], healthCheck }] }, opts).backends[0]!.healthCheck;
}

t.test('without the keys: no admin listener, no health check', async (t) => {
  const config = parseConfig(base, opts);
  t.equal(config.admin, null);
  t.equal(config.backends[0]!.healthCheck, null);
});

t.test('admin: the address parsed, loopback by default, auth optional on loopback', async (t) => {
  const loopback = parseConfig({ ...base, admin: {} }, opts).admin;
  t.same(loopback, { listen: { host: '127.0.0.1', port: 9000, text: '127.0.0.1:9000' }, auth: null }, 'no listen: 127.0.0.1:9000');
  const v6 = parseConfig({ ...base, admin: { listen: '[::1]:9000' } }, opts).admin;
  t.same(v6, { listen: { host: '::1', port: 9000, text: '[::1]:9000' }, auth: null });
  const auth = { user: 'ops', password: 'x' };
  const everywhere = parseConfig({ ...base, admin: { listen: ':9000', auth } }, opts).admin;
  t.same(everywhere, { listen: { host: '', port: 9000, text: ':9000' }, auth }, ':port is every interface, allowed with auth');
});

t.test('admin beyond loopback without auth: a config error naming admin.listen', async (t) => {
  const problems = (listen: string): readonly string[] => {
    try {
      parseConfig({ ...base, admin: { listen } }, opts);
      return [];
    } catch (error) {
      return (error as SniffmuxError).problems;
    }
  };
  t.same(problems(':9000'), [':9000 listens on every interface, beyond loopback, without auth: set admin.auth, or listen on 127.0.0.1 or [::1]']
    .map((m) => `admin.listen: ${m}`));
  t.match(problems('0.0.0.0:9000'), [/^admin\.listen: 0\.0\.0\.0:9000 listens on 0\.0\.0\.0, beyond loopback, without auth/]);
  t.match(problems('[::]:9000'), [/^admin\.listen: \[::\]:9000 listens on ::, beyond/]);
  t.match(problems('admin.example.com:9000'), [/^admin\.listen: .* beyond loopback/], 'a name may resolve anywhere');
  for (const listen of ['127.0.0.1:9000', '127.3.4.5:9000', 'localhost:9000', '[::1]:9000']) t.same(problems(listen), [], `${listen}: loopback`);
});

t.test('healthCheck: every default', async (t) => {
  t.same(withCheck({}), {
    type: 'tcp',
    path: '/',
    expect: { text: '200', min: 200, max: 200 },
    interval: 2000,
    rise: 2,
    fall: 3,
    timeout: 1000,
  });
});

t.test('healthCheck: expect as a status or a class', async (t) => {
  t.same(withCheck({ type: 'http', expect: 204 })!.expect, { text: '204', min: 204, max: 204 });
  t.same(withCheck({ type: 'http', expect: '2xx' })!.expect, { text: '2xx', min: 200, max: 299 });
  t.same(withCheck({ type: 'http', expect: '3xx', path: '/ping', interval: '500ms', timeout: 250 }), {
    type: 'http',
    path: '/ping',
    expect: { text: '3xx', min: 300, max: 399 },
    interval: 500,
    rise: 2,
    fall: 3,
    timeout: 250,
  });
});
