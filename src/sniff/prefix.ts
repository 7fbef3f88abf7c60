/** How the bytes at an offset stand against a fixed prefix (a signature, a method, a banner). */
export type PrefixMatch = 'whole' | 'partial' | 'differs';

/**
 * 'whole' when `prefix` is there at `at`, 'partial' when the bytes end inside
 * it (a match is still possible), 'differs' otherwise. A plain byte loop:
 * Buffer.compare costs a trip into C++ per call, and a connection's first
 * bytes are checked against dozens of prefixes, most of them ruled out by
 * the first byte.
 */
export function matchPrefix(bytes: Uint8Array, prefix: Uint8Array, at = 0): PrefixMatch {
  const n = Math.min(bytes.length - at, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[at + i] !== prefix[i]) return 'differs';
  return n === prefix.length ? 'whole' : 'partial';
}
