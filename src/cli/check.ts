import { checkConfigFile } from '../config/index.js';
import { configWarnings } from '../runtime/warnings.js';
import { parseCommandLine, requireOption } from './args.js';

/** `sniffmux check -c FILE`: "config OK", or one `PATH: message` line per problem and exit 1. */
export async function runCheck(argv: string[]): Promise<number> {
  const values = parseCommandLine(argv, { config: { type: 'string', short: 'c' } });
  const result = checkConfigFile(requireOption(values.config, 'config'));
  if (result.ok) {
    for (const warning of configWarnings(result.config)) process.stdout.write(`warning: ${warning}\n`);
    process.stdout.write('config OK\n');
    return 0;
  }
  for (const line of result.problems) process.stdout.write(`${line}\n`);
  return 1;
}
