import { writeSelfSigned } from '../tls/selfsigned.js';
import { parseCommandLine, requireOption } from './args.js';

/** `sniffmux cert --cn NAME [--san NAME...] --out DIR`. */
export async function runCert(argv: string[]): Promise<number> {
  const values = parseCommandLine(argv, {
    cn: { type: 'string' },
    san: { type: 'string', multiple: true },
    out: { type: 'string' },
    days: { type: 'string' },
  });
  const commonName = requireOption(values.cn, 'cn');
  const days = values.days ? Number(values.days) : undefined;
  const written = writeSelfSigned(requireOption(values.out, 'out'), {
    commonName,
    altNames: values.san ?? [],
    ...(days ? { days } : {}),
  });
  process.stdout.write(`certificate: ${written.certPath}\nkey:         ${written.keyPath}\n`);
  return 0;
}
