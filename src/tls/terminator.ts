import tls from 'node:tls';
import type { FrontendTls } from '../config/types.js';
import type { CertificatePair } from './certs.js';
import { defaultCiphers } from './ciphers.js';

interface Entry {
  readonly names: readonly string[];
  readonly context: tls.SecureContext;
}

/**
 * Terminates TLS for one frontend: one SecureContext per certificate, built
 * once, and the SNI choice among them — an exact name first, then a wildcard
 * for one label ("*.example.com" serves "a.example.com", not "example.com" or
 * "a.b.example.com"), else the first certificate.
 */
export class TlsTerminator {
  private readonly entries: readonly Entry[];
  private readonly exact = new Map<string, tls.SecureContext>();
  private readonly wildcard = new Map<string, tls.SecureContext>();
  readonly options: tls.TLSSocketOptions;

  constructor(config: FrontendTls, pairs: readonly CertificatePair[]) {
    const ciphers = config.ciphers ?? defaultCiphers(config.minVersion);
    this.entries = pairs.map((pair) => ({
      names: pair.names,
      context: tls.createSecureContext({ cert: pair.cert, key: pair.key, minVersion: config.minVersion, ciphers }),
    }));
    // Earlier certificates win for a name that several serve.
    for (const { names, context } of [...this.entries].reverse()) {
      for (const name of names) {
        if (name.startsWith('*.')) this.wildcard.set(name.slice(2), context);
        else this.exact.set(name, context);
      }
    }
    const defaultContext = this.entries[0]!.context;
    this.options = {
      isServer: true,
      secureContext: defaultContext,
      SNICallback: (servername, callback) => callback(null, this.contextFor(servername)),
      ...(config.alpn ? { ALPNProtocols: [...config.alpn] } : {}),
    };
  }

  contextFor(servername: string | null | undefined): tls.SecureContext {
    if (servername) {
      const name = servername.toLowerCase();
      const exact = this.exact.get(name);
      if (exact) return exact;
      const dot = name.indexOf('.');
      const wild = dot > 0 ? this.wildcard.get(name.slice(dot + 1)) : undefined;
      if (wild) return wild;
    }
    return this.entries[0]!.context;
  }
}
