import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from '../config/types.js';

export type { Logger };

/**
 * Log lines waiting for stdout, at most (bytes): beyond it new lines are
 * dropped and counted, so a log reader slower than a flood of connections
 * cannot grow the process's memory without bound (pino's default writer
 * buffers without limit).
 */
export const LOG_BUFFER_MAX = 4 * 1024 * 1024;

/**
 * The process logger: pino JSON on stdout (or a given stream, which tests use
 * to read the lines a user would see). No pretty-printing in the hot path.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (destination) return pino(options, destination);
  const stdout = pino.destination({ dest: 1, sync: false, maxLength: LOG_BUFFER_MAX });
  const logger = pino(options, stdout);
  let dropped = 0;
  stdout.on('drop', () => {
    if (dropped++ > 0) return;
    // Said once the writer has had a moment to catch up (and may itself be dropped if it has not).
    setTimeout(() => {
      logger.warn({ dropped }, 'log lines dropped: stdout is slower than the log');
      dropped = 0;
    }, 1000).unref();
  });
  return logger;
}
