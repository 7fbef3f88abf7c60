/**
 * Where a JSON text first goes wrong, and why, in our own words. V8's
 * JSON.parse messages differ between Node versions and often omit the
 * position ("Unexpected token 'r', ... is not valid JSON"); a user needs
 * FILE:LINE:COLUMN. Only run after JSON.parse has already failed.
 */
import { MAX_NESTING, tooDeepMessage } from './nesting.js';

interface JsonError {
  readonly offset: number;
  readonly message: string;
}

class Stop {
  constructor(readonly offset: number, readonly message: string) {}
}

export function locateJsonError(text: string): JsonError | null {
  let i = 0;
  // Past MAX_NESTING the recursion below would exhaust the stack.
  let depth = 0;
  const fail = (message: string): never => {
    throw new Stop(i, i >= text.length ? `${message}, found the end of the file` : `${message}, found ${JSON.stringify(text[i])}`);
  };
  const ws = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const string = (): void => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('control character in a string (escape it)');
      if (c === 0x5c) {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape');
          i += 5;
          continue;
        }
        if (i >= text.length || !'"\\/bfnrt'.includes(text[i]!)) fail('bad escape in a string');
      }
      i++;
    }
  };
  const object = (): void => {
    i++;
    ws();
    if (text[i] === '}') {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail('expected a property name in double quotes');
      string();
      ws();
      if (text[i] !== ':') fail("expected ':'");
      i++;
      value();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return;
      }
      fail("expected ',' or '}'");
    }
  };
  const array = (): void => {
    i++;
    ws();
    if (text[i] === ']') {
      i++;
      return;
    }
    for (;;) {
      value();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === ']') {
        i++;
        return;
      }
      fail("expected ',' or ']'");
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (++depth > MAX_NESTING) throw new Stop(i, tooDeepMessage);
      if (c === '{') object();
      else array();
      depth--;
      return;
    }
    if (c === '"') return string();
    const number = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (number) {
      i += number[0].length;
      return;
    }
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length;
        return;
      }
    }
    fail('expected a value');
  };
  try {
    value();
    ws();
    if (i < text.length) fail('unexpected text after the end of the document');
    return null;
  } catch (err) {
    if (err instanceof Stop) return { offset: err.offset, message: err.message };
    throw err;
  }
}

/** 1-based line and column of an offset. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}
