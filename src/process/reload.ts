import { loadConfigFile } from '../config/index.js';
import { SniffmuxError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { Instance } from '../runtime/instance.js';

/**
 * SIGHUP: read the config file again and swap it in for new connections. An
 * invalid new config (or one whose certificates or addresses cannot be set
 * up) is logged, line by line, and the running config stays.
 */
export function handleReloadSignal(instance: Instance, source: string | null, logger: Logger): void {
  let reloading: Promise<void> = Promise.resolve();
  process.on('SIGHUP', () => {
    // One reload at a time, in the order the signals came.
    reloading = reloading.then(() => reload(instance, source, logger));
  });
}

export async function reload(instance: Instance, source: string | null, logger: Logger): Promise<void> {
  if (source === null) {
    logger.warn('SIGHUP: this config is embedded (demo), there is no file to reload');
    return;
  }
  try {
    const config = loadConfigFile(source);
    await instance.reload(config);
    logger.info({ config: source, frontends: config.frontends.length, backends: config.backends.length }, 'config reloaded');
  } catch (error) {
    const problems = error instanceof SniffmuxError ? error.problems : [String(error)];
    logger.error({ config: source, problems }, 'reload failed: keeping the running config');
  }
}
