import type { Frontend, Listen } from '../config/types.js';
import { SniffmuxError } from '../errors.js';
import { isCertificateProblem, readCertificatePair, type CertificatePair } from '../tls/certs.js';
import { TlsTerminator } from '../tls/terminator.js';
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';
import type { Logger } from '../observe/log.js';
import type { SniffBudget } from './sniff-budget.js';
import type { ConnectionRecord } from '../observe/record.js';
import { Stats } from '../observe/stats.js';
import type { CompiledRoutes } from '../route/index.js';

/** The part of the compiled rules a connection needs (see src/route). */
export type RouteTable = Pick<CompiledRoutes, 'decide'>;

/** Connection counts and settings the process shares across frontends (global). */
export interface ProcessCounters {
  active: number;
  maxconn: number;
  /** Plain tcp-mode splices go to the native splice(2) loop (global.splice resolved). */
  spliceNatively: boolean;
  /** Connections the open-file limit allows at once (runtime/descriptors.ts); 0 = no such ceiling. */
  descriptorCeiling: number;
  readonly sniffBudget: SniffBudget;
}

/**
 * A frontend at run time: its config plus everything prepared once at load
 * (compiled rules, the policy answer, the backends by name), shared by all of
 * its connections.
 */
export class FrontendRuntime {
  active = 0;
  total = 0;
  /** The policy document followed by the NUL byte Flash expects. */
  readonly policyResponse: Buffer;
  /** Certificates and TLS settings, when this frontend terminates TLS. */
  readonly tls: TlsTerminator | null;

  constructor(
    readonly config: Frontend,
    readonly routes: RouteTable,
    policyDocument: string,
    readonly pools: ReadonlyMap<string, BackendPool>,
    readonly logger: Logger,
    readonly process: ProcessCounters,
    /** Shared by the instance's frontends; /status and /metrics read it. */
    readonly stats: Stats = new Stats(),
  ) {
    this.policyResponse = Buffer.concat([Buffer.from(policyDocument, 'utf8'), Buffer.from([0])]);
    this.tls = config.tls ? new TlsTerminator(config.tls, loadCertificates(config)) : null;
  }

  /** A connect to a server failed (the caller gives its slot back): counted on the server and logged. */
  connectFailed(pool: BackendPool, server: ServerState, failure: Error): void {
    server.failures++;
    this.logger.warn({ frontend: this.name, backend: pool.name, server: server.name, error: failure.message }, 'server connect failed');
  }

  get name(): string {
    return this.config.name;
  }

  /** Called once per connection when its log line is written: the hook for counters and metrics. */
  recordDone(record: ConnectionRecord): void {
    this.stats.record(record);
  }

  /** True when one more client connection would exceed a maxconn, or the descriptors the open-file limit leaves. */
  get full(): boolean {
    const fe = this.config.maxconn;
    const { maxconn: global, descriptorCeiling: ceiling, active } = this.process;
    return (fe > 0 && this.active >= fe) || (global > 0 && active >= global) || (ceiling > 0 && active >= ceiling);
  }
}

/** The frontend's certificate pairs; the config loader checked them, but files can change before start. */
function loadCertificates(config: Frontend): CertificatePair[] {
  return config.tls!.certificates.map((c, i) => {
    const pair = readCertificatePair(c.cert, c.key);
    if (isCertificateProblem(pair)) {
      throw new SniffmuxError('SMX_ERR_CERT', `frontends.${config.name}.tls.certificates[${i}].${pair.which}: ${pair.message}`);
    }
    return pair;
  });
}

/** One bound address of a frontend. */
export interface BoundListen {
  readonly frontend: FrontendRuntime;
  readonly listen: Listen;
}
