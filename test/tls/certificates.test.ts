import t from 'tap';
import path from 'node:path';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { makeCerts, makeExpiredCert } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Certificates as an operator meets them: each bad case is one line naming
 * the file, from `check` and at start-up alike.
 */
const good = makeCerts({ 'good.test': ['good.test'], 'other.test': ['other.test'] });
const expired = makeExpiredCert('old.test');
const dir = tempDir('smx-badcerts-');
const garbage = path.join(dir, 'garbage.pem');
writeFileSync(garbage, 'this is not a certificate\n');

function configWith(cert: string, key: string, moreTls = ''): string {
  const file = path.join(mkdtempSync(path.join(dir, 'c-')), 'sniffmux.yaml');
  writeFileSync(
    file,
    `frontends:\n  - name: fe\n    listen: [127.0.0.1:0]\n    tls: { certificates: [{ cert: "${cert}", key: "${key}" }]${moreTls} }\n    default: b\nbackends:\n  - name: b\n    servers: [{ name: s, address: 127.0.0.1:1 }]\n`,
  );
  return file;
}

const cases: [string, string, string, RegExp, string?][] = [
  ['missing file', path.join(dir, 'nope.pem'), good['good.test']!.key, /^frontends\[0\]\.tls\.certificates\[0\]\.cert: cannot read \S*nope\.pem: no such file$/],
  ['unreadable PEM', garbage, good['good.test']!.key, /^frontends\[0\]\.tls\.certificates\[0\]\.cert: \S*garbage\.pem: not a PEM certificate$/],
  ['a key that is not a key', good['good.test']!.cert, good['good.test']!.cert, /^frontends\[0\]\.tls\.certificates\[0\]\.key: \S*good\.test\.pem: not a PEM private key$/],
  [
    'key does not match',
    good['good.test']!.cert,
    good['other.test']!.key,
    /^frontends\[0\]\.tls\.certificates\[0\]\.key: \S*other\.test\.key: key does not match certificate \S*good\.test\.pem$/,
  ],
  ['expired', expired.cert, expired.key, /^frontends\[0\]\.tls\.certificates\[0\]\.cert: \S*old\.test\.pem: certificate expired on \d{4}-\d\d-\d\dT/],
  [
    'a cipher string OpenSSL cannot use',
    good['good.test']!.cert,
    good['good.test']!.key,
    /^frontends\[0\]\.tls\.ciphers: OpenSSL cannot use "NO-SUCH-CIPHER" \(no cipher match\)$/,
    ', ciphers: NO-SUCH-CIPHER',
  ],
];

for (const [name, cert, key, expected, moreTls] of cases) {
  t.test(name, async (t) => {
    const file = configWith(cert, key, moreTls);
    const check = await runCli(['check', '-c', file]);
    t.equal(check.code, 1);
    t.equal(check.stdout.trim().split('\n').length, 1, 'one line');
    t.match(check.stdout.trim(), expected, 'check names the file');
    const run = await runCli(['run', '-c', file]);
    t.equal(run.code, 1);
    t.equal(run.stderr.trim().split('\n').length, 1, 'one line at start-up');
    t.match(run.stderr.trim().replace(/^sniffmux: /, ''), expected, 'start-up names the file');
  });
}

t.test('a good pair passes check', async (t) => {
  const check = await runCli(['check', '-c', configWith(good['good.test']!.cert, good['good.test']!.key)]);
  t.equal(check.stdout, 'config OK\n');
});
