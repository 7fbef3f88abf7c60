import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeSelfSigned } from '../tls/selfsigned.js';

export interface DemoCertificate {
  readonly cert: string;
  readonly key: string;
  /** Deletes the files: the key is made for one run and must not outlive it. */
  remove(): void;
}

/**
 * The demo's TLS certificate, made at start with node-forge for the names a
 * local client uses (localhost, 127.0.0.1, ::1), in a private temp folder
 * because a frontend's certificates are files.
 */
export function makeDemoCertificate(): DemoCertificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'sniffmux-demo-'));
  const { certPath, keyPath } = writeSelfSigned(dir, { commonName: 'localhost', altNames: ['127.0.0.1', '::1'] });
  return { cert: certPath, key: keyPath, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
