import type { Instance } from '../runtime/instance.js';
import type { Logger } from '../observe/log.js';

/**
 * SIGTERM/SIGINT: stop accepting, let open connections finish for up to
 * `global.grace`, close the rest, exit 0. A second signal exits at once.
 */
export function handleStopSignals(instance: Instance, logger: Logger, onStopped: () => void): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second stop signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    const active = instance.activeConnections;
    const stopped = instance.stop();
    // Once every port refuses: once this line can be read, no connection is accepted (the native thread closes its
    // listening sockets a moment after stop() begins, and pino writes from another thread).
    const said = instance.stopAccepting().then(() => {
      logger.info({ signal, active, grace: instance.config.global.grace }, 'stopping: draining connections');
    });
    void Promise.all([stopped, said]).then(() => {
      logger.info('stopped');
      onStopped();
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
