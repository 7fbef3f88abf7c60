import { readFileSync } from 'node:fs';
import { loadConfigFile } from '../config/index.js';
import { SniffmuxError } from '../errors.js';
import { explainBytes } from '../runtime/explain.js';
import { parseCommandLine, requireOption } from './args.js';

/** `sniffmux explain -c FILE [--frontend NAME] [--hex HEX | --file CAPTURE] [--src IP] [--port N]`. */
export async function runExplain(argv: string[]): Promise<number> {
  const values = parseCommandLine(argv, {
    config: { type: 'string', short: 'c' },
    frontend: { type: 'string' },
    hex: { type: 'string' },
    file: { type: 'string' },
    src: { type: 'string' },
    port: { type: 'string' },
  });
  const config = loadConfigFile(requireOption(values.config, 'config'));
  const frontend = values.frontend
    ? config.frontends.find((f) => f.name === values.frontend)
    : (config.frontends.find((f) => f.rules.length > 0 || f.default !== null) ?? config.frontends[0]);
  if (!frontend) throw new SniffmuxError('SMX_ERR_USAGE', `no frontend named '${values.frontend}'`);
  const bytes = readBytes(values.hex, values.file);
  const lines = explainBytes(config, frontend, bytes, {
    srcIp: values.src ?? '127.0.0.1',
    localPort: values.port ? Number(values.port) : frontend.listen[0]!.address.port,
  });
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

function readBytes(hex: string | undefined, file: string | undefined): Buffer {
  if (hex !== undefined && file !== undefined) throw new SniffmuxError('SMX_ERR_USAGE', 'give --hex or --file, not both');
  if (file !== undefined) {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new SniffmuxError('SMX_ERR_USAGE', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  if (hex === undefined) return Buffer.alloc(0);
  const clean = hex.replace(/[\s:]/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new SniffmuxError('SMX_ERR_USAGE', '--hex must be pairs of hex digits');
  return Buffer.from(clean, 'hex');
}
