import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { BackendTls } from '../config/types.js';
import { defaultCiphers } from './ciphers.js';

/** What every TLS connection to a backend's servers shares, prepared once at load. */
export interface BackendTlsOptions {
  readonly secureContext: tls.SecureContext;
  readonly servername: string | null;
  readonly rejectUnauthorized: boolean;
}

export function backendTlsOptions(config: BackendTls): BackendTlsOptions {
  const secureContext = tls.createSecureContext({
    minVersion: config.minVersion,
    ciphers: defaultCiphers(config.minVersion),
    ...(config.ca ? { ca: readFileSync(config.ca, 'utf8') } : {}),
    ...(config.cert && config.key ? { cert: readFileSync(config.cert, 'utf8'), key: readFileSync(config.key, 'utf8') } : {}),
  });
  return { secureContext, servername: config.servername, rejectUnauthorized: config.verify };
}
