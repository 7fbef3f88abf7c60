/**
 * `http.rewrite: { pattern, to }` (nginx `rewrite /services/myservice/(.*) /$1`):
 * the first match of `pattern` in the request path is replaced by `to`, with
 * JavaScript's replacement syntax ($1, $<name>, $&). The query string is not
 * part of the path and is kept as it was. Only origin-form targets ("/…") are
 * rewritten; "*" and absolute URIs pass unchanged.
 */
export interface Rewrite {
  readonly pattern: string;
  readonly to: string;
}

/** Compiled once per config (the schema checked the pattern at load). */
const compiled = new WeakMap<Rewrite, RegExp>();

export function rewriteTarget(target: string, rewrite: Rewrite | null): string {
  if (rewrite === null || !target.startsWith('/')) return target;
  let regex = compiled.get(rewrite);
  if (!regex) {
    regex = new RegExp(rewrite.pattern);
    compiled.set(rewrite, regex);
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  const rewritten = path.replace(regex, rewrite.to);
  return (rewritten.startsWith('/') ? rewritten : `/${rewritten}`) + query;
}
