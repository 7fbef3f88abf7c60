import type { Server } from '../config/types.js';

/**
 * A server as the balancer sees it: its config plus live counters. Health
 * checks (when configured) flip `up`; servers start up (SPEC §4).
 */
export class ServerState {
  active = 0;
  total = 0;
  failures = 0;
  up = true;
  constructor(readonly config: Server) {}

  get name(): string {
    return this.config.name;
  }

  /** Can take one more connection now. */
  get available(): boolean {
    return this.up && (this.config.maxconn === 0 || this.active < this.config.maxconn);
  }
}
