/** How a connection ended: the `termination` field of its log line (SPEC §3). */
export type Termination =
  | 'client-close'
  | 'server-close'
  | 'client-timeout'
  | 'server-timeout'
  | 'connect-timeout'
  | 'connect-error'
  | 'no-server'
  | 'queue-timeout'
  | 'maxconn'
  | 'policy-served'
  | 'tls-error'
  | 'bad-request'
  | 'shutdown';
