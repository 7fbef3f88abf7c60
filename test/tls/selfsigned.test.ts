import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { makeSelfSigned, writeSelfSigned } from '../../src/tls/selfsigned.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('a real TLS server with the cert is trusted by a client pinning it', async (t) => {
  const { cert, key } = makeSelfSigned({ commonName: 'localhost', altNames: ['127.0.0.1', 'example.test'] });
  t.match(cert, /^-----BEGIN CERTIFICATE-----/);
  t.match(key, /^-----BEGIN RSA PRIVATE KEY-----/);

  const server = tls.createServer({ key, cert }, (s) => s.end('hi'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;

  const sock = tls.connect({ host: '127.0.0.1', port, ca: cert, servername: 'localhost' });
  await once(sock, 'secureConnect');
  t.equal(sock.authorized, true, `authorized (${String(sock.authorizationError)})`);
  const peer = sock.getPeerCertificate();
  const san = peer.subjectaltname ?? '';
  t.match(san, 'DNS:localhost');
  t.match(san, 'IP Address:127.0.0.1');
  t.match(san, 'DNS:example.test');
  t.equal(peer.subject.CN, 'localhost');
  t.equal(peer.issuer.CN, 'localhost');
  let body = '';
  for await (const chunk of sock) body += String(chunk);
  t.equal(body, 'hi');
});

t.test('certificate fields', async (t) => {
  const { cert, key } = makeSelfSigned({ commonName: 'demo.local', altNames: ['::1', '[::1]', 'demo.local'], days: 10 });
  const x = new X509Certificate(cert);
  t.equal(x.subject, 'CN=demo.local');
  t.equal(x.issuer, 'CN=demo.local');
  t.equal(x.ca, false);
  // Not checkIssued(x): OpenSSL's issuer check wants keyCertSign, which a leaf must not have.
  t.equal(x.verify(x.publicKey), true, 'signature verifies with its own key');
  t.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.equal(x.checkPrivateKey(await import('node:crypto').then((c) => c.createPrivateKey(key))), true);
  // Duplicates of the CN and of ::1 are dropped; IPv6 is an IP SAN.
  t.equal(x.subjectAltName, 'DNS:demo.local, IP Address:0:0:0:0:0:0:0:1');
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extKeyUsage serverAuth');
  const from = Date.parse(x.validFrom);
  const to = Date.parse(x.validTo);
  t.ok(from < Date.now() - 30 * 60_000, 'backdated');
  t.ok(Math.abs(to - (Date.now() + 10 * 86_400_000)) < 120_000, 'valid for 10 days');
  t.ok(/^[0-7]/.test(x.serialNumber) && !/^00/.test(x.serialNumber), `positive minimal serial ${x.serialNumber}`);
  t.not(makeSelfSigned({ commonName: 'demo.local' }).cert, cert, 'fresh key and serial each time');
});

t.test('an IP common name becomes an IP SAN only', async (t) => {
  const x = new X509Certificate(makeSelfSigned({ commonName: '127.0.0.1' }).cert);
  t.equal(x.subjectAltName, 'IP Address:127.0.0.1');
});

t.test('bad options are usage errors', async (t) => {
  t.throws(() => makeSelfSigned({ commonName: ' ' }), { code: 'SMX_ERR_USAGE' });
  t.throws(() => makeSelfSigned({ commonName: 'x', days: 0 }), { code: 'SMX_ERR_USAGE' });
  t.throws(() => makeSelfSigned({ commonName: 'x', bits: 1024 }), { code: 'SMX_ERR_USAGE' });
});

t.test('writeSelfSigned writes <cn>.pem and a 0600 <cn>.key', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'sniffmux-cert-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const dir = join(base, 'a', 'b');
  const { certPath, keyPath } = writeSelfSigned(dir, { commonName: '*.example.com', altNames: ['127.0.0.1'] });
  t.equal(certPath, join(dir, '_.example.com.pem'));
  t.equal(keyPath, join(dir, '_.example.com.key'));
  t.equal(statSync(keyPath).mode & 0o777, 0o600);
  const x = new X509Certificate(readFileSync(certPath));
  t.equal(x.subjectAltName, 'DNS:*.example.com, IP Address:127.0.0.1');

  // Overwriting keeps the key private.
  writeSelfSigned(dir, { commonName: '*.example.com' });
  t.equal(statSync(keyPath).mode & 0o777, 0o600);

  t.test('openssl reads the written files', { skip: !hasOpenssl() && 'no openssl on PATH' }, async (t) => {
    const { certPath, keyPath } = writeSelfSigned(base, { commonName: 'localhost', altNames: ['127.0.0.1', 'example.test'] });
    const out = execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-subject', '-ext', 'subjectAltName'], {
      encoding: 'utf8',
    });
    t.match(out, /subject=\s*CN\s*=\s*localhost/);
    t.match(out, 'DNS:localhost');
    t.match(out, 'IP Address:127.0.0.1');
    t.match(out, 'DNS:example.test');
    const certMod = execFileSync('openssl', ['x509', '-in', certPath, '-noout', '-modulus'], { encoding: 'utf8' });
    const keyMod = execFileSync('openssl', ['rsa', '-in', keyPath, '-noout', '-modulus'], { encoding: 'utf8' });
    t.equal(certMod, keyMod, 'key matches certificate');
  });
});
