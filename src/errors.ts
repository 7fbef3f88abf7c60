/**
 * sniffmux's errors: one class, stable codes in one table. A caller branches on
 * `code`, never on the message; the message is the one line a user reads.
 */
export const ErrorCodes = {
  SMX_ERR_CONFIG: 'invalid configuration',
  SMX_ERR_CONFIG_READ: 'configuration file unreadable',
  SMX_ERR_CERT: 'certificate problem',
  SMX_ERR_ADDR_IN_USE: 'address already in use',
  SMX_ERR_ADDR_DENIED: 'address not permitted',
  SMX_ERR_LISTEN: 'cannot listen',
  SMX_ERR_USAGE: 'bad command line',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class SniffmuxError extends Error {
  override readonly name = 'SniffmuxError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** One line per problem, e.g. `frontends[0].listen[1]: port must be 1-65535`. */
    readonly problems: readonly string[] = [message],
  ) {
    super(message);
  }
}
