import { NEED_MORE, noMatch, type HttpHead, type Probe, type ProbeResult } from './probe.js';
import { matchPrefix } from './prefix.js';

/**
 * HTTP/1.x request probe.
 *
 *   request-line = method SP request-target SP HTTP-version (CRLF | LF)
 *   header-line  = field-name ":" OWS field-value OWS (CRLF | LF)
 *   head         = request-line *header-line (CRLF | LF)
 *
 * It is HTTP as soon as the request line is complete and valid; the header
 * lines only add facts. Until then the probe says need-more only while the
 * bytes are still a prefix of a valid request line, so "XX" is ruled out at
 * its first byte and "GET\r" at its fourth.
 *
 * Deliberately strict where a lenient reading would misroute: methods are the
 * ones Node's parser accepts, spelled in capitals; exactly one space between
 * the parts; only HTTP/1.0 and HTTP/1.1 (so the HTTP/2 preface "PRI * HTTP/2.0"
 * is never HTTP/1); no empty lines before the request line. Bare LF line ends
 * are tolerated, as Node tolerates them.
 *
 * Bytes past `maxBytes` are never looked at: a request line that does not end
 * within the budget is not recognised (no-match), and a head that does not end
 * within it is HTTP with problem 'too-large'.
 */

/**
 * The methods Node 20's llhttp accepts for HTTP/1.x requests (http.METHODS);
 * a fixed list so the sniffer's answer does not depend on the Node version.
 */
export const HTTP_METHODS: readonly string[] = [
  'ACL', 'BIND', 'CHECKOUT', 'CONNECT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE',
  'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH',
  'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK',
  'UNLOCK', 'UNSUBSCRIBE',
];

/** Each method followed by its space, compared against the first bytes. */
const METHOD_PREFIXES: readonly Buffer[] = HTTP_METHODS.map((method) => Buffer.from(`${method} `, 'latin1'));
const VERSION_PREFIX = Buffer.from('HTTP/1.', 'latin1');
const SP = 0x20;
const HTAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;

/** RFC 9110 §5.6.2 tchar: the bytes allowed in a header name. */
const TOKEN = byteSet('!#$%&\'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz');

export const probeHttp: Probe = (bytes, limits) => {
  const view = bytes.length > limits.maxBytes ? bytes.subarray(0, limits.maxBytes) : bytes;
  const line = readRequestLine(view);
  if (line === NEED_MORE && view.length >= limits.maxBytes) return noMatch(`no request line within ${limits.maxBytes} bytes`);
  if (!('method' in line)) return line;

  const end = findHeadEnd(view, line.length);
  if (typeof end === 'string') return unusableHead(line, 'malformed', end);
  if (end < 0) {
    if (view.length >= limits.maxBytes) return unusableHead(line, 'too-large', `the request head does not end within ${limits.maxBytes} bytes`);
    const http: HttpHead = { method: line.method, path: line.path, version: line.version, ...EMPTY_HEAD };
    return { kind: 'match', complete: false, facts: { http } };
  }
  return { kind: 'match', complete: true, facts: { http: readHead(view, line, end) } };
};

interface RequestLine {
  readonly method: string;
  readonly path: string;
  readonly version: string;
  /** Bytes up to and including the line end. */
  readonly length: number;
}

/** The fields of a head that has not (or cannot) become complete. */
const EMPTY_HEAD = Object.freeze({ headComplete: false, headers: Object.freeze([]), host: null, websocket: false, headLength: 0 });

function unusableHead(line: RequestLine, problem: 'too-large' | 'malformed', detail: string): ProbeResult {
  const http: HttpHead = { method: line.method, path: line.path, version: line.version, ...EMPTY_HEAD, problem, detail };
  return { kind: 'match', complete: true, facts: { http } };
}

/** The request line, or NEED_MORE while the bytes are a prefix of one, or a no-match. */
function readRequestLine(bytes: Buffer): RequestLine | ProbeResult {
  const methodEnd = matchMethod(bytes);
  if (methodEnd <= 0) return methodEnd === 0 ? NEED_MORE : noMatch('not an HTTP method');

  let pos = methodEnd;
  // request-target: any visible byte; obs-text (0x80 and up) is left for the server to judge.
  while (pos < bytes.length && bytes[pos] !== SP) {
    const byte = bytes[pos]!;
    if (byte < SP || byte === 0x7f) return noMatch('control byte in the request target');
    pos++;
  }
  if (pos === bytes.length) return NEED_MORE;
  if (pos === methodEnd) return noMatch('empty request target');
  const targetEnd = pos++;

  if (matchPrefix(bytes, VERSION_PREFIX, pos) === 'differs') return noMatch('not HTTP/1.x');
  pos += VERSION_PREFIX.length;
  if (pos >= bytes.length) return NEED_MORE;
  const minor = bytes[pos++];
  if (minor !== 0x30 && minor !== 0x31) return noMatch('HTTP version is neither 1.0 nor 1.1');

  if (pos < bytes.length && bytes[pos] === CR) pos++;
  if (pos >= bytes.length) return NEED_MORE;
  if (bytes[pos] !== LF) return noMatch('junk after the HTTP version');
  pos++;

  return {
    method: bytes.toString('latin1', 0, methodEnd - 1),
    path: bytes.toString('latin1', methodEnd, targetEnd),
    version: bytes.toString('latin1', targetEnd + 1, targetEnd + 1 + VERSION_PREFIX.length + 1),
    length: pos,
  };
}

/** Offset just past "METHOD ", 0 while the bytes are a prefix of one, -1 when none can match. */
function matchMethod(bytes: Buffer): number {
  let prefixOfOne = false;
  for (const candidate of METHOD_PREFIXES) {
    const found = matchPrefix(bytes, candidate);
    if (found === 'differs') continue;
    if (found === 'whole') return candidate.length;
    prefixOfOne = true;
  }
  return prefixOfOne ? 0 : -1;
}

/**
 * Checks the header lines from `start`: the offset just past the blank line
 * that ends the head, -1 while it has not arrived (the complete lines so far
 * being valid), or why a line is malformed. Runs on every call for an
 * incomplete head, so it only validates; readHead builds the strings once.
 */
function findHeadEnd(bytes: Buffer, start: number): number | string {
  let lineStart = start;
  for (;;) {
    const lf = bytes.indexOf(LF, lineStart);
    if (lf < 0) return -1;
    const lineEnd = lf > lineStart && bytes[lf - 1] === CR ? lf - 1 : lf;
    if (lineEnd === lineStart) return lf + 1;
    const problem = checkHeaderLine(bytes, lineStart, lineEnd);
    if (problem !== null) return problem;
    lineStart = lf + 1;
  }
}

function checkHeaderLine(bytes: Buffer, start: number, end: number): string | null {
  const first = bytes[start]!;
  if (first === SP || first === HTAB) return 'folded header line (obs-fold)';
  let pos = start;
  while (pos < end && TOKEN[bytes[pos]!]) pos++;
  if (pos === end) return 'header line without a colon';
  if (bytes[pos] !== COLON) return 'header name is not a token';
  if (pos === start) return 'empty header name';
  for (pos++; pos < end; pos++) {
    const byte = bytes[pos]!;
    // field-value: visible bytes, SP, HTAB and obs-text; never other controls (CR, NUL, DEL...).
    if ((byte < SP && byte !== HTAB) || byte === 0x7f) return 'control byte in a header value';
  }
  return null;
}

function readHead(bytes: Buffer, line: RequestLine, headLength: number): HttpHead {
  const headers: [string, string][] = [];
  let host: string | null = null;
  let upgradeWebsocket = false;
  let connectionUpgrade = false;
  for (let lineStart = line.length; ; ) {
    const lf = bytes.indexOf(LF, lineStart);
    const lineEnd = lf > lineStart && bytes[lf - 1] === CR ? lf - 1 : lf;
    if (lineEnd === lineStart) break;
    const colon = bytes.indexOf(COLON, lineStart);
    const name = bytes.toString('latin1', lineStart, colon).toLowerCase();
    const value = bytes.toString('latin1', colon + 1, lineEnd).replace(OWS_AROUND, '');
    headers.push([name, value]);
    if (name === 'host' && host === null) host = value.toLowerCase();
    else if (name === 'upgrade' && /websocket/i.test(value)) upgradeWebsocket = true;
    else if (name === 'connection' && hasToken(value, 'upgrade')) connectionUpgrade = true;
    lineStart = lf + 1;
  }
  return {
    method: line.method,
    path: line.path,
    version: line.version,
    headComplete: true,
    headers,
    host,
    websocket: upgradeWebsocket && connectionUpgrade,
    headLength,
  };
}

const OWS_AROUND = /^[ \t]+|[ \t]+$/g;

/** A comma-separated list (e.g. `Connection: keep-alive, Upgrade`) contains `token`, ignoring case. */
function hasToken(list: string, token: string): boolean {
  return list.split(',').some((item) => item.trim().toLowerCase() === token);
}

function byteSet(chars: string): Uint8Array {
  const set = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) set[chars.charCodeAt(i)] = 1;
  return set;
}
