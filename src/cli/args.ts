import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SniffmuxError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs, with usage mistakes turned into one-line errors. */
export function parseCommandLine<T extends Options>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new SniffmuxError('SMX_ERR_USAGE', (error as Error).message);
  }
}

export function requireOption(value: string | undefined, name: string): string {
  if (!value) throw new SniffmuxError('SMX_ERR_USAGE', `missing --${name}`);
  return value;
}
