/**
 * How deeply a config text may nest, checked before a parser builds it.
 * The yaml composer and our JSON error locator recurse once per level, and
 * past roughly 800 levels the stack runs out. A stack overflow inside the
 * yaml composer is worse than an error: it can leave V8's regexp compiler
 * broken, so that the next parse aborts the whole process ("RegExpCompiler
 * Allocation failed"), and a bad config sent to `reload` would kill a
 * running proxy. No real config comes near this limit, which is also the
 * one a document handed over from code is held to (plain-data.ts).
 */
import { Parser, type CST } from 'yaml';

export const MAX_NESTING = 64;

export const tooDeepMessage = `nested more than ${MAX_NESTING} levels deep`;

/** The offset of the first bracket of valid JSON text that opens a level past MAX_NESTING, or -1. */
export function jsonTooDeepAt(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip the string: JSON.parse has accepted the text, so it ends.
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_NESTING) return i;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return -1;
}

/**
 * The offset of the first YAML collection that opens a level past
 * MAX_NESTING, or -1. The yaml CST parser keeps its own stack rather than
 * recursing, so it is safe on any depth; the walk here is iterative too.
 */
export function yamlTooDeepAt(text: string): number {
  const pending: Array<{ token: CST.Token; depth: number }> = [];
  for (const token of new Parser().parse(text)) pending.push({ token, depth: 0 });
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { token, depth } = next;
    if (token.type === 'document') {
      if (token.value) pending.push({ token: token.value, depth });
      continue;
    }
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    if (depth + 1 > MAX_NESTING) return token.offset;
    for (const item of token.items as CST.CollectionItem[]) {
      if (item.key) pending.push({ token: item.key, depth: depth + 1 });
      if (item.value) pending.push({ token: item.value, depth: depth + 1 });
    }
  }
  return -1;
}
