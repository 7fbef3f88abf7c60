/**
 * Files a config names (certificates, keys, the policy file): resolved
 * against the config file's folder, and checked to exist and be readable at
 * load so a typo is a config error, not a failure on the first connection.
 * Whether a key matches its certificate is the TLS module's check.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

export function resolveConfigPath(baseDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/** Null when the file can be read, else a message naming it. */
export function fileProblem(absolute: string): string | null {
  try {
    if (!statSync(absolute).isFile()) return `cannot read ${absolute}: not a regular file`;
    accessSync(absolute, constants.R_OK);
    return null;
  } catch (err) {
    return `cannot read ${absolute}: ${describeFsError(err)}`;
  }
}

/** "no such file" rather than "ENOENT: no such file or directory, open '/x'". */
export function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a parent is not a directory';
    default:
      return code ?? (err instanceof Error ? err.message : String(err));
  }
}
