/**
 * Globs as rules write them: `*` is any run of characters (dots included, so
 * `*.example.com` also takes `a.b.example.com`), `?` is exactly one character,
 * everything else is literal. A list of globs becomes one anchored RegExp, built
 * once at config load, so matching a connection is a single `test()` with no
 * allocation.
 */

const REGEX_SPECIALS = /[\\^$.|+()[\]{}]/g;

function globBody(glob: string): string {
  return glob.replace(REGEX_SPECIALS, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
}

/** One RegExp matching any of the globs. Case-insensitive for host names (SNI, Host). */
export function compileGlobs(globs: string | readonly string[], caseInsensitive: boolean): RegExp {
  const list = typeof globs === 'string' ? [globs] : globs;
  // `s` so that `*` and `?` also cross a stray newline instead of silently failing.
  return new RegExp(`^(?:${list.map(globBody).join('|')})$`, caseInsensitive ? 'is' : 's');
}

/** Characters allowed in a host-name glob (SNI, Host, Flash policy domain). */
const HOST_GLOB = /^[A-Za-z0-9*?._-]+$/;
/** A Host header glob may also carry a port or a bracketed IPv6 literal. */
const HOST_HEADER_GLOB = /^[A-Za-z0-9*?._:[\]-]+$/;

/** Why `glob` is not a valid host-name glob, or null. */
export function hostGlobProblem(glob: string, allowPort: boolean): string | null {
  if (glob === '') return 'must not be empty';
  const ok = allowPort ? HOST_HEADER_GLOB : HOST_GLOB;
  if (!ok.test(glob)) {
    return `invalid host name pattern '${glob}': use letters, digits, '.', '-', '*' and '?'${allowPort ? " (and ':port')" : ''}`;
  }
  return null;
}
