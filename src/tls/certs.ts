import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describeFsError } from '../config/files.js';

/** A certificate and its key, read and checked as an operator would want. */
export interface CertificatePair {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: string;
  readonly key: string;
  /** Names it serves, lower-cased: DNS SANs, else the CN (wildcards kept, e.g. "*.example.com"). */
  readonly names: readonly string[];
  readonly validTo: Date;
}

/** A one-line problem naming the file, for `check` and start-up. */
export interface CertificateProblem {
  readonly which: 'cert' | 'key';
  readonly message: string;
}

/**
 * Reads a certificate and key and checks that both parse, that the key
 * belongs to the certificate, and that the certificate has not expired.
 */
export function readCertificatePair(certPath: string, keyPath: string, now = new Date()): CertificatePair | CertificateProblem {
  const certText = readText(certPath);
  if (typeof certText !== 'string') return { which: 'cert', message: certText.error };
  const keyText = readText(keyPath);
  if (typeof keyText !== 'string') return { which: 'key', message: keyText.error };
  const cert = parseCertificate(certText, certPath);
  if ('message' in cert) return { which: 'cert', message: cert.message };
  const key = parseKey(keyText, keyPath);
  if ('message' in key) return { which: 'key', message: key.message };
  if (!cert.checkPrivateKey(key)) return { which: 'key', message: `${keyPath}: key does not match certificate ${certPath}` };
  const validTo = new Date(cert.validTo);
  if (validTo.getTime() < now.getTime()) {
    return { which: 'cert', message: `${certPath}: certificate expired on ${validTo.toISOString()}` };
  }
  return { certPath, keyPath, cert: certText, key: keyText, names: certificateNames(cert), validTo };
}

/** Reads a CA bundle: at least one PEM certificate, each parsable. */
export function readCaBundle(path: string): string | { readonly message: string } {
  const text = readText(path);
  if (typeof text !== 'string') return { message: text.error };
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks) return { message: `${path}: no PEM certificate found` };
  for (const block of blocks) {
    const parsed = parseCertificate(block, path);
    if ('message' in parsed) return parsed;
  }
  return text;
}

export function isCertificateProblem(value: unknown): value is CertificateProblem {
  return typeof value === 'object' && value !== null && 'message' in value && 'which' in value;
}

function readText(path: string): string | { error: string } {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    return { error: `cannot read ${path}: ${describeFsError(error)}` };
  }
}

function parseCertificate(text: string, path: string): X509Certificate | { message: string } {
  if (!text.includes('-----BEGIN CERTIFICATE-----')) return { message: `${path}: not a PEM certificate` };
  try {
    return new X509Certificate(text);
  } catch {
    return { message: `${path}: unreadable PEM certificate` };
  }
}

function parseKey(text: string, path: string): KeyObject | { message: string } {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    return { message: `${path}: the key is encrypted (passphrase-protected keys are not supported)` };
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return { message: `${path}: not a PEM private key` };
  try {
    return createPrivateKey(text);
  } catch {
    return { message: `${path}: unreadable PEM private key` };
  }
}

function certificateNames(cert: X509Certificate): string[] {
  const dns = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
  if (dns.length > 0) return dns;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}
