import { NEED_MORE, noMatch, type Probe, type ProbeResult } from './probe.js';
import { matchPrefix } from './prefix.js';

/**
 * HTTP/2 with prior knowledge (RFC 9113 §3.3): the client opens with a fixed
 * 24-byte connection preface. Its first line reads like an HTTP/1 request
 * ("PRI * HTTP/2.0"), which is why the HTTP/1 probe refuses version 2.0.
 * h2 negotiated by TLS ALPN never shows this preface before the handshake.
 */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const MATCH: ProbeResult = Object.freeze({ kind: 'match', complete: true });

export const probeHttp2: Probe = (bytes) => {
  const found = matchPrefix(bytes, HTTP2_PREFACE);
  if (found === 'differs') return noMatch('not the HTTP/2 preface');
  return found === 'whole' ? MATCH : NEED_MORE;
};
