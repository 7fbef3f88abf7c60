import { NEED_MORE, noMatch, type Probe, type ProbeResult } from './probe.js';
import { matchPrefix } from './prefix.js';

/**
 * A Flash Player socket policy request: the player connects (to port 843, or
 * to the target port itself) and sends exactly these 23 bytes, NUL included,
 * expecting the policy XML back. The bytes after it, if any, do not matter.
 */
export const POLICY_REQUEST = Buffer.from('<policy-file-request/>\0', 'latin1');

const MATCH: ProbeResult = Object.freeze({ kind: 'match', complete: true });

export const probeFlashPolicy: Probe = (bytes) => {
  const found = matchPrefix(bytes, POLICY_REQUEST);
  if (found === 'differs') return noMatch('not a policy file request');
  return found === 'whole' ? MATCH : NEED_MORE;
};
