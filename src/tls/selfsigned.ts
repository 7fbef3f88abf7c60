/**
 * Self-signed server certificates for `sniffmux cert` and `sniffmux demo`
 * (SPEC §1), made with node-forge so no openssl binary is needed.
 *
 * The certificate is a leaf, not a CA: clients trust it by pinning it as
 * their `ca` (curl --cacert, openssl s_client -CAfile, tls.connect({ca})).
 * Modern clients ignore the subject CN and match only the subjectAltName, so
 * the CN is always repeated there as well.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { SniffmuxError } from '../errors.js';

export interface SelfSignedOptions {
  /** Subject and issuer CN; also added as a DNS (or IP) subjectAltName. */
  commonName: string;
  /** Extra names: IPv4/IPv6 literals become IP SANs, anything else DNS SANs. */
  altNames?: string[];
  /** Validity in days from now (default 365). */
  days?: number;
  /** RSA modulus size (default 2048). */
  bits?: number;
}

export interface SelfSigned {
  /** PEM certificate. */
  cert: string;
  /** PEM PKCS#1 RSA private key. */
  key: string;
}

/** Backdating absorbs clock skew between the machine that makes the cert and its clients. */
const BACKDATE_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** forge's SAN entry: type 2 = dNSName, type 7 = iPAddress (RFC 5280 GeneralName). */
type AltName = { type: 2; value: string } | { type: 7; ip: string };

function altName(name: string): AltName {
  // Strip brackets so "[::1]" (as written in addresses) works too.
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return isIP(bare) !== 0 ? { type: 7, ip: bare } : { type: 2, value: name };
}

/**
 * A positive, non-zero-leading serial. forge writes the hex verbatim as a DER
 * INTEGER, so a set high bit would make it negative (RFC 5280 requires
 * positive) and a zero first byte would be a non-minimal encoding.
 */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

export function makeSelfSigned(opts: SelfSignedOptions): SelfSigned {
  const commonName = opts.commonName.trim();
  const days = opts.days ?? 365;
  const bits = opts.bits ?? 2048;
  if (commonName === '') throw new SniffmuxError('SMX_ERR_USAGE', 'certificate common name must not be empty');
  if (!Number.isFinite(days) || days <= 0) {
    throw new SniffmuxError('SMX_ERR_USAGE', `certificate validity must be a positive number of days, got ${days}`);
  }
  if (!Number.isInteger(bits) || bits < 2048) {
    // Node's default OpenSSL security level rejects smaller RSA keys anyway.
    throw new SniffmuxError('SMX_ERR_USAGE', `RSA key size must be an integer of at least 2048 bits, got ${bits}`);
  }

  // Synchronous generation without a custom prng delegates to node's crypto (fast).
  const keys = forge.pki.rsa.generateKeyPair({ bits, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(now + days * DAY_MS);

  const name = [{ name: 'commonName', value: commonName }];
  cert.setSubject(name);
  cert.setIssuer(name); // self-signed: issuer is the subject

  // CN first, then the extra names; duplicates dropped (the CN may be repeated in altNames).
  const seen = new Set<string>();
  const sans: AltName[] = [];
  for (const n of [commonName, ...(opts.altNames ?? [])]) {
    const entry = altName(n.trim());
    const id = entry.type === 7 ? `ip:${entry.ip}` : `dns:${entry.value.toLowerCase()}`;
    if ((entry.type === 2 && entry.value === '') || seen.has(id)) continue;
    seen.add(id);
    sans.push(entry);
  }

  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: sans },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());

  return {
    cert: forge.pki.certificateToPem(cert),
    key: forge.pki.privateKeyToPem(keys.privateKey),
  };
}

/**
 * A file-name-safe form of the CN: "*.example.com" → "_.example.com"; a
 * leading dot becomes "_" so ".." cannot escape `dir` or hide the file.
 * Never empty, because makeSelfSigned has already rejected an empty CN.
 */
function fileStem(commonName: string): string {
  return commonName.trim().replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
}

/**
 * Makes a certificate and writes `<dir>/<cn>.pem` and `<dir>/<cn>.key`,
 * creating `dir` if needed. The key is mode 0600 even when it overwrites an
 * existing file (writeFileSync's mode applies only on creation).
 */
export function writeSelfSigned(dir: string, opts: SelfSignedOptions): { certPath: string; keyPath: string } {
  const { cert, key } = makeSelfSigned(opts);
  mkdirSync(dir, { recursive: true });
  const stem = fileStem(opts.commonName);
  const certPath = join(dir, `${stem}.pem`);
  const keyPath = join(dir, `${stem}.key`);
  writeFileSync(keyPath, key, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(certPath, cert, { mode: 0o644 });
  return { certPath, keyPath };
}
