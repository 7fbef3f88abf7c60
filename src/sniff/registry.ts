import { probeFlashPolicy } from './flash-policy.js';
import { probeHttp } from './http.js';
import { probeHttp2 } from './http2.js';
import type { Probe, ProbedProtocol } from './probe.js';
import { probeSsh } from './ssh.js';
import { probeTls } from './tls.js';

/**
 * The one list of protocols the sniffer knows, in decision order: when two
 * probes could both match, the earlier row wins. (The probes in it today
 * never match the same bytes: their first bytes already differ, and the
 * HTTP/1 probe refuses the HTTP/2 preface.) Adding a protocol is one probe
 * file, its name in ProbedProtocol, and one row here.
 */
export const PROBES: readonly { readonly protocol: ProbedProtocol; readonly probe: Probe }[] = Object.freeze([
  { protocol: 'tls', probe: probeTls },
  { protocol: 'http2', probe: probeHttp2 },
  { protocol: 'http', probe: probeHttp },
  { protocol: 'ssh', probe: probeSsh },
  { protocol: 'flash-policy', probe: probeFlashPolicy },
]);
