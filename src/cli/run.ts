import { loadConfigFile } from '../config/index.js';
import { createLogger } from '../observe/log.js';
import { runPrimary } from '../process/cluster.js';
import { handleReloadSignal } from '../process/reload.js';
import { handleStopSignals } from '../process/signals.js';
import { isClusterWorker, runWorker } from '../process/worker.js';
import { Instance } from '../runtime/instance.js';
import { parseCommandLine, requireOption } from './args.js';

/**
 * `sniffmux run -c FILE`: runs until SIGTERM/SIGINT. With `global.workers: 1`
 * (the default) this process runs the instance; with more, it becomes a
 * node:cluster primary and the workers it forks run this same command line
 * (src/process/cluster.ts, src/process/worker.ts).
 */
export async function runServe(argv: string[]): Promise<number | undefined> {
  const values = parseCommandLine(argv, { config: { type: 'string', short: 'c' } });
  const file = requireOption(values.config, 'config');
  if (isClusterWorker()) return runWorker(file);
  const config = loadConfigFile(file);
  const logger = createLogger(config.log.level);
  if (config.global.workers > 1) {
    await runPrimary(config, logger);
    return undefined;
  }
  const instance = new Instance(config, logger);
  await instance.start();
  logger.info({ config: config.source, frontends: config.frontends.length, backends: config.backends.length }, 'sniffmux started');
  handleStopSignals(instance, logger, () => process.exit(0));
  handleReloadSignal(instance, config.source, logger);
  return undefined;
}
