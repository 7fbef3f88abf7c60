import { writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { tempDir } from './temp-dir.js';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Self-signed certificates written to a temp folder, one per common name. */
export function makeCerts(names: Record<string, string[]>): Record<string, CertFiles> {
  const dir = tempDir('smx-certs-');
  const out: Record<string, CertFiles> = {};
  for (const [cn, altNames] of Object.entries(names)) {
    const { cert, key } = makeSelfSigned({ commonName: cn, altNames });
    out[cn] = writePair(dir, cn, cert, key);
  }
  return out;
}

/** A certificate whose validity ended yesterday (node-forge, so any dates can be set). */
export function makeExpiredCert(cn: string): CertFiles {
  return makeBareCert(cn, 'smx-expired-', { from: -10 * 86400_000, to: -86400_000 });
}

/**
 * A certificate with a subject CN and no extensions at all: no
 * subjectAltName (as old certificates have), no key usage, so it also serves
 * as a TLS client certificate that trusts itself as its CA.
 */
export function makeCnOnlyCert(cn: string): CertFiles {
  return makeBareCert(cn, 'smx-cn-only-', { from: -86400_000, to: 30 * 86400_000 });
}

/** A self-signed certificate with only a CN, valid between the offsets from now (ms). */
function makeBareCert(cn: string, prefix: string, valid: { from: number; to: number }): CertFiles {
  const dir = tempDir(prefix);
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() + valid.from);
  cert.validity.notAfter = new Date(Date.now() + valid.to);
  const attrs = [{ name: 'commonName', value: cn }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return writePair(dir, cn, forge.pki.certificateToPem(cert), forge.pki.privateKeyToPem(keys.privateKey));
}

function writePair(dir: string, cn: string, certPem: string, keyPem: string): CertFiles {
  const cert = path.join(dir, `${cn}.pem`);
  const key = path.join(dir, `${cn}.key`);
  writeFileSync(cert, certPem);
  writeFileSync(key, keyPem);
  return { cert, key, certPem, keyPem };
}
