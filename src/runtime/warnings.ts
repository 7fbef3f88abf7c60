import type { Config } from '../config/types.js';
import { isLegacyVersion } from '../tls/ciphers.js';

/**
 * Settings that are allowed but weaken security: logged once at start-up
 * (and printed by `check`), so that an operator who chose them knows.
 */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  config.frontends.forEach((f, i) => {
    f.listen.forEach((l, j) => {
      if (l.trustedProxies && !l.proxyProtocol) warnings.push(`frontends[${i}].listen[${j}].trustedProxies: has no effect without proxyProtocol: true`);
      if (l.proxyProtocol && !l.trustedProxies) {
        warnings.push(
          `frontends[${i}].listen[${j}].proxyProtocol: true without trustedProxies — any peer that reaches ${l.address.text} can send a PROXY header naming any client; list the proxies in trustedProxies`,
        );
      }
    });
    const version = f.tls?.minVersion;
    if (version && isLegacyVersion(version)) {
      warnings.push(`frontends[${i}].tls.minVersion: ${version} accepts TLS versions deprecated by RFC 8996; use TLSv1.2 unless old clients need it`);
    }
    if (f.tls?.ciphers) {
      warnings.push(`frontends[${i}].tls.ciphers: replaces the default list (ECDHE key exchange with AEAD ciphers only) for TLS 1.2 and below; make sure it leaves weak suites out`);
    }
  });
  config.backends.forEach((b, i) => {
    if (b.http.trustForwarded.length > 0 && !b.http.forwardedFor) warnings.push(`backends[${i}].http.trustForwarded: has no effect without forwardedFor: true`);
    if (b.tls && !b.tls.verify) warnings.push(`backends[${i}].tls.verify: false — server certificates are not checked`);
    const version = b.tls?.minVersion;
    if (version && isLegacyVersion(version)) warnings.push(`backends[${i}].tls.minVersion: ${version} allows deprecated TLS versions`);
  });
  return warnings;
}
