import { NEED_MORE, noMatch, type Probe, type ProbeResult } from './probe.js';
import { matchPrefix } from './prefix.js';

/**
 * SSH identification string (RFC 4253 §4.2): "SSH-protoversion-softwareversion".
 * The client may send it before the server's banner, so it is sniffable.
 * Only protocol 2.0 and the "1.99" of servers that speak both count; the
 * software version and comments that follow are not needed to decide.
 */
const BANNERS: readonly Buffer[] = [Buffer.from('SSH-2.0-', 'latin1'), Buffer.from('SSH-1.99-', 'latin1')];

const MATCH: ProbeResult = Object.freeze({ kind: 'match', complete: true });

export const probeSsh: Probe = (bytes) => {
  let prefixOfOne = false;
  for (const banner of BANNERS) {
    const found = matchPrefix(bytes, banner);
    if (found === 'differs') continue;
    if (found === 'whole') return MATCH;
    prefixOfOne = true;
  }
  return prefixOfOne ? NEED_MORE : noMatch('not an SSH-2.0 identification string');
};
