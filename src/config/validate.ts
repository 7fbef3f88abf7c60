/**
 * Schema validation with ajv: all errors at once, unknown keys refused
 * everywhere, defaults filled in. The validator is compiled once, on first
 * use, and shared by start-up, `check` and reload.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { configSchema, type RawDocument } from './schema.js';
import { FORMATS } from './formats.js';
import { describeAjvError } from './messages.js';
import type { Problem } from './path.js';

let ajv: Ajv | null = null;
let documentValidator: ValidateFunction | null = null;
let conditionValidator: ValidateFunction | null = null;

function instance(): Ajv {
  if (ajv !== null) return ajv;
  ajv = new Ajv({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    useDefaults: true,
    // parentSchema on each error, where `x-messages` lives.
    verbose: true,
  });
  ajv.addKeyword({ keyword: 'x-messages', schemaType: 'object' });
  for (const [name, check] of Object.entries(FORMATS)) {
    ajv.addFormat(name, { type: 'string', validate: (v: string) => check(v) === null });
  }
  ajv.addSchema(configSchema);
  return ajv;
}

function problemsOf(errors: readonly ErrorObject[] | null | undefined, data: unknown): Problem[] {
  const out: Problem[] = [];
  for (const e of errors ?? []) {
    const p = describeAjvError(e, data);
    if (p !== null) out.push(p);
  }
  return out;
}

export type Validated<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problems: Problem[] };

/** Validate a document in place (defaults are written into it). */
export function validateDocument(data: unknown): Validated<RawDocument> {
  documentValidator ??= instance().getSchema(configSchema.$id)!;
  if (documentValidator(data)) return { ok: true, value: data as RawDocument };
  return { ok: false, problems: problemsOf(documentValidator.errors, data) };
}

/** Validate one rule condition on its own (for conditions that did not come through a config). */
export function validateCondition(data: unknown): Validated<unknown> {
  conditionValidator ??= instance().getSchema(`${configSchema.$id}#/$defs/condition`)!;
  if (conditionValidator(data)) return { ok: true, value: data };
  return { ok: false, problems: problemsOf(conditionValidator.errors, data) };
}
