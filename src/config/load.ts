/**
 * Reading a config file: YAML for .yaml/.yml, JSON for .json, otherwise JSON
 * first and then YAML. A syntax error is one line, `FILE:LINE:COLUMN: ...`,
 * the shape editors and terminals make clickable.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { describeFsError } from './files.js';
import { lineAndColumn, locateJsonError } from './json-error.js';
import { jsonTooDeepAt, tooDeepMessage, yamlTooDeepAt } from './nesting.js';

export type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly problem: string };

export function readConfigText(path: string): { text: string } | { error: string } {
  try {
    // A byte-order mark is invisible in editors and fatal to JSON.parse.
    return { text: readFileSync(path, 'utf8').replace(/^\uFEFF/, '') };
  } catch (err) {
    return { error: `${path}: cannot read config file: ${describeFsError(err)}` };
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

function tooDeep(text: string, file: string, offset: number): Parsed {
  const { line, column } = lineAndColumn(text, offset);
  return { ok: false, problem: `${file}:${line}:${column}: ${tooDeepMessage}` };
}

function parseYaml(text: string, file: string): Parsed {
  const deepAt = yamlTooDeepAt(text);
  if (deepAt >= 0) return tooDeep(text, file, deepAt);
  const lineCounter = new LineCounter();
  // uniqueKeys: a key written twice is an error, not "the last one wins".
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const error = doc.errors[0];
  if (error !== undefined) {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    return { ok: false, problem: `${file}:${line}:${col}: YAML syntax error: ${firstLine(error.message)}` };
  }
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: 100 }) };
  } catch (err) {
    // e.g. an alias bomb, refused by maxAliasCount
    return { ok: false, problem: `${file}: YAML error: ${firstLine((err as Error).message)}` };
  }
}

function parseJson(text: string, file: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const located = locateJsonError(text);
    if (located === null) return { ok: false, problem: `${file}: JSON syntax error: ${firstLine((err as Error).message)}` };
    const { line, column } = lineAndColumn(text, located.offset);
    return { ok: false, problem: `${file}:${line}:${column}: JSON syntax error: ${located.message}` };
  }
  const deepAt = jsonTooDeepAt(text);
  return deepAt >= 0 ? tooDeep(text, file, deepAt) : { ok: true, value };
}

/** Parse config text; `file` names it in a syntax error. */
export function parseConfigText(text: string, file: string): Parsed {
  const ext = extname(file).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return parseYaml(text, file);
  if (ext === '.json') return parseJson(text, file);
  const json = parseJson(text, file);
  return json.ok ? json : parseYaml(text, file);
}
