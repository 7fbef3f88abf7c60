import {
  NEED_MORE,
  type HttpHead,
  type ProbedProtocol,
  type ProbeLimits,
  type ProbeResult,
  type RouteProtocol,
  type TlsHello,
} from './probe.js';
import { PROBES } from './registry.js';

export type ProbeVerdict = 'match' | 'no-match' | 'need-more';

/** What the probes make of a connection's first bytes at one moment. */
export interface SniffView {
  /** The bytes the view was computed from. */
  readonly bytes: Buffer;
  /** No more bytes will come: every need-more now reads as no-match. */
  readonly final: boolean;
  probe(protocol: ProbedProtocol): ProbeVerdict;
  /**
   * The first protocol of the table whose probe matches, once every earlier
   * probe has ruled itself out; 'other' when every probe says no; undefined
   * while undecided. When final it is never undefined: 'other' if any byte
   * arrived, else 'none'.
   */
  readonly protocol: RouteProtocol | undefined;
  /** The ClientHello facts, once the whole hello was read (or found unusable: see TlsHello.problem). */
  readonly hello: TlsHello | undefined;
  /** The HTTP request, from the moment its request line has arrived. */
  readonly http: HttpHead | undefined;
  /** Nothing can change any more: protocol decided with complete facts, or final. */
  readonly settled: boolean;
}

const ROW_OF = new Map<ProbedProtocol, number>(PROBES.map((row, index) => [row.protocol, index]));
const TLS_ROW = ROW_OF.get('tls') ?? -1;
const HTTP_ROW = ROW_OF.get('http') ?? -1;
const EMPTY = Buffer.alloc(0);

/**
 * Runs the probe table over a connection's growing buffer. One per
 * connection: it remembers each probe's last verdict so that a probe whose
 * verdict cannot change any more (no-match, or a complete match) is not run
 * again, and it hands back the same view object on every update.
 *
 * `update` takes the whole buffer so far, which must extend the buffer of the
 * previous call (bytes are only ever appended).
 */
export class Sniffer {
  private readonly limits: ProbeLimits;
  private readonly results: ProbeResult[] = PROBES.map(() => NEED_MORE);
  private readonly view: MutableView;
  private probedLength = -1;

  constructor(opts: { readonly maxBytes: number }) {
    this.limits = Object.freeze({ maxBytes: opts.maxBytes });
    this.view = new MutableView(this.results);
  }

  /** `final`: the inspect delay expired, the buffer is full or the client ended. */
  update(bytes: Buffer, final: boolean): SniffView {
    if (bytes.length !== this.probedLength) {
      this.probedLength = bytes.length;
      for (let row = 0; row < PROBES.length; row++) {
        const last = this.results[row]!;
        if (last.kind === 'no-match' || (last.kind === 'match' && last.complete)) continue;
        this.results[row] = PROBES[row]!.probe(bytes, this.limits);
      }
    }
    this.decide(bytes, final);
    return this.view;
  }

  /**
   * The connection was decided: the view keeps its facts (protocol, hello,
   * HTTP head) for the log line but lets go of the bytes, which the
   * connection replays from its own reference and then drops.
   */
  done(): void {
    this.view.bytes = EMPTY;
  }

  private decide(bytes: Buffer, final: boolean): void {
    let protocol: RouteProtocol | undefined;
    let matched: ProbeResult | undefined;
    let waiting = false;
    for (let row = 0; row < PROBES.length; row++) {
      const result = this.results[row]!;
      if (result.kind === 'match') {
        protocol = PROBES[row]!.protocol;
        matched = result;
        break;
      }
      // An earlier row that may still match has priority over any later one.
      if (result.kind === 'need-more' && !final) {
        waiting = true;
        break;
      }
    }
    if (protocol === undefined && !waiting) protocol = bytes.length > 0 ? 'other' : final ? 'none' : undefined;

    const view = this.view;
    view.bytes = bytes;
    view.final = final;
    view.protocol = protocol;
    view.hello = completeFacts(this.results[TLS_ROW])?.tls;
    const http = this.results[HTTP_ROW];
    view.http = http?.kind === 'match' ? http.facts?.http : undefined;
    view.settled = final || (protocol !== undefined && (matched === undefined || (matched.kind === 'match' && matched.complete)));
  }
}

function completeFacts(result: ProbeResult | undefined) {
  return result?.kind === 'match' && result.complete ? result.facts : undefined;
}

class MutableView implements SniffView {
  bytes: Buffer = EMPTY;
  final = false;
  protocol: RouteProtocol | undefined = undefined;
  hello: TlsHello | undefined = undefined;
  http: HttpHead | undefined = undefined;
  settled = false;

  constructor(private readonly results: readonly ProbeResult[]) {}

  probe(protocol: ProbedProtocol): ProbeVerdict {
    const row = ROW_OF.get(protocol);
    if (row === undefined) return 'no-match';
    const kind = this.results[row]!.kind;
    return kind === 'need-more' && this.final ? 'no-match' : kind;
  }
}

/** Sniffs a buffer in one go: for `explain` and tests. */
export function sniffOnce(bytes: Buffer, maxBytes: number, final = true): SniffView {
  return new Sniffer({ maxBytes }).update(bytes, final);
}
