import tls from 'node:tls';
import type { FrontendTls } from '../config/types.js';

/**
 * The TLS 1.2 cipher list sniffmux uses on both sides unless a frontend's
 * `ciphers` says otherwise: ECDHE key exchange only (forward secrecy) with
 * AEAD ciphers only (Mozilla's "intermediate" profile without DHE). Node's
 * own default also offers suites such as AES128-SHA, which have neither.
 *
 * The list names no TLS 1.3 suite, so Node leaves those to OpenSSL's
 * defaults (they are all forward-secret AEAD).
 */
export const STRONG_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * TLS 1.0 and 1.1 have no AEAD suite, and OpenSSL 3 refuses their MD5-SHA1
 * handshake signatures above security level 0. Naming one of them adds only
 * that: the ECDHE suites with CBC, and level 0.
 */
const LEGACY_CIPHERS = [STRONG_CIPHERS, 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-RSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-RSA-AES256-SHA', '@SECLEVEL=0'].join(':');

export type TlsVersion = FrontendTls['minVersion'];

export function isLegacyVersion(version: TlsVersion): boolean {
  return version === 'TLSv1' || version === 'TLSv1.1';
}

/** The cipher list for a minimum version, unless the operator named one. */
export function defaultCiphers(minVersion: TlsVersion): string {
  return isLegacyVersion(minVersion) ? LEGACY_CIPHERS : STRONG_CIPHERS;
}

/**
 * Why OpenSSL cannot use an operator's cipher string, or null. Checked with
 * the config, so that `check` and start-up name the key instead of failing
 * later with OpenSSL's bare "no cipher match".
 */
export function cipherStringProblem(ciphers: string, minVersion: TlsVersion): string | null {
  try {
    tls.createSecureContext({ ciphers, minVersion });
    return null;
  } catch (error) {
    const reason = (error as { reason?: unknown }).reason;
    return `OpenSSL cannot use "${ciphers}" (${typeof reason === 'string' ? reason : (error as Error).message})`;
  }
}
