import { parseConfig } from '../config/index.js';
import { startDemoBackends } from '../demo/backends.js';
import { makeDemoCertificate } from '../demo/certificate.js';
import { demoConfig, demoGuide } from '../demo/config.js';
import { SniffmuxError } from '../errors.js';
import { createLogger } from '../observe/log.js';
import { handleStopSignals } from '../process/signals.js';
import { Instance } from '../runtime/instance.js';
import { parseCommandLine } from './args.js';

/** `sniffmux demo [--port 8080] [--policy-port 8843]`: no config file needed. */
export async function runDemo(argv: string[]): Promise<number | undefined> {
  const values = parseCommandLine(argv, { port: { type: 'string' }, 'policy-port': { type: 'string' } });
  const port = portOption(values.port ?? '8080', 'port');
  const policyPort = portOption(values['policy-port'] ?? '8843', 'policy-port');
  const certificate = makeDemoCertificate();
  // However the demo ends (a second Ctrl-C exits at once), its key goes with it.
  process.once('exit', certificate.remove);
  const backends = await startDemoBackends();
  try {
    const config = parseConfig(demoConfig({ port, policyPort, ...backends, certificate }), { baseDir: process.cwd(), source: null });
    const logger = createLogger(config.log.level);
    const instance = new Instance(config, logger);
    await instance.start();
    process.stdout.write(demoGuide(instance.port('demo'), instance.port('policy')));
    handleStopSignals(instance, logger, () => void backends.close().then(() => process.exit(0)));
    return undefined;
  } catch (error) {
    await backends.close();
    throw error;
  }
}

function portOption(text: string, name: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SniffmuxError('SMX_ERR_USAGE', `--${name} must be a port number 0-65535`);
  return port;
}
