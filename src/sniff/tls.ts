import { NEED_MORE, noMatch, type Probe, type ProbeResult, type TlsHello } from './probe.js';

/**
 * TLS ClientHello probe: recognises a TLS connection from its first record
 * header and, once the whole ClientHello has arrived, reads the SNI, the ALPN
 * list and the highest version offered.
 *
 * What goes over the wire (all integers big-endian):
 *
 *   TLS record (RFC 8446 §5.1); a ClientHello may be cut into several records,
 *   and each record into several TCP segments:
 *     type            1 byte   22 = handshake (anything else is not a hello)
 *     version         2 bytes  3.0 to 3.4; clients usually write 3.1 here
 *     length          2 bytes  1 to 16384 bytes of fragment follow
 *     fragment        `length` bytes; the fragments of consecutive records,
 *                     put end to end, form the handshake message
 *
 *   Handshake message (RFC 8446 §4):
 *     msg_type        1 byte   1 = ClientHello
 *     length          3 bytes  size of the body that follows
 *
 *   ClientHello body (RFC 8446 §4.1.2, same layout back to TLS 1.0):
 *     legacy_version  2 bytes  3.3 for TLS 1.2 and 1.3 clients
 *     random          32 bytes
 *     session_id      1-byte length (at most 32), then the id
 *     cipher_suites   2-byte length (even, at least 2), then 2 bytes per suite
 *     compression     1-byte length (at least 1), then 1 byte per method
 *     extensions      2-byte length, then up to the end of the message:
 *                       type 2 bytes, length 2 bytes, data; absent only in
 *                       clients older than TLS 1.2, and no type twice
 *
 *   Extensions read here:
 *     server_name (0, RFC 6066 §3)     list length 2; entries of
 *                                      name_type 1 (0 = host_name), length 2, name
 *     ALPN (16, RFC 7301 §3.1)         list length 2; entries of length 1, name
 *     supported_versions (43, §4.2.1)  list length 1; 2 bytes per version
 *
 * The probe holds no state: each call walks the record headers again from byte
 * 0, which costs a few steps per record, and reads the body only once the
 * message is whole. Bytes past `maxBytes` are never looked at, so a buffer that
 * overshoots the budget gets the same answer as its first `maxBytes` bytes.
 */

const HANDSHAKE_RECORD = 0x16;
const RECORD_HEADER_LENGTH = 5;
/** RFC 8446 §5.1: a plaintext fragment is at most 2^14 bytes. */
const MAX_FRAGMENT_LENGTH = 16384;
const HANDSHAKE_HEADER_LENGTH = 4;
const CLIENT_HELLO = 1;
const RANDOM_LENGTH = 32;
const MAX_SESSION_ID_LENGTH = 32;

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const HOST_NAME = 0;

const INCOMPLETE: ProbeResult = Object.freeze({ kind: 'match', complete: false });

export const probeTls: Probe = (bytes, limits) => {
  if (bytes.length === 0) return NEED_MORE;
  const first = bytes[0]!;
  if (first === HANDSHAKE_RECORD) return probeRecords(bytes, limits.maxBytes);
  if (first & 0x80) return probeSslv2CompatibleHello(bytes);
  return noMatch('first byte is not a TLS handshake record');
};

/** The first record header decides "TLS or not"; after it, everything is TLS, good or bad. */
function probeRecords(bytes: Buffer, maxBytes: number): ProbeResult {
  if (bytes.length > 1 && bytes[1] !== 3) return noMatch('record version is not 3.x');
  if (bytes.length > 2 && bytes[2]! > 4) return noMatch('record version is above 3.4');
  // The high length byte alone can already exceed 2^14.
  if (bytes.length > 3 && bytes[3]! > MAX_FRAGMENT_LENGTH >> 8) return noMatch('record longer than 2^14 bytes');
  if (bytes.length < RECORD_HEADER_LENGTH) return NEED_MORE;
  const length = bytes.readUInt16BE(3);
  if (length === 0 || length > MAX_FRAGMENT_LENGTH) return noMatch('record length out of range');

  // A budget smaller than one record header would make every hello "too large"
  // before it is even recognised; the record header is always read.
  const cap = Math.max(maxBytes, RECORD_HEADER_LENGTH);
  const view = bytes.length > cap ? bytes.subarray(0, cap) : bytes;
  const found = locateHello(view, cap);
  if (found === INCOMPLETE_HELLO) return INCOMPLETE;
  const recordVersion = bytes.readUInt16BE(1);
  if (found === TOO_LARGE) {
    return unusable(recordVersion, 'too-large', `the ClientHello does not fit in ${maxBytes} bytes`);
  }
  if (typeof found === 'string') return unusable(recordVersion, 'malformed', found);
  try {
    return { kind: 'match', complete: true, facts: { tls: readClientHello(found) } };
  } catch (error) {
    if (error instanceof MalformedHello) return unusable(recordVersion, 'malformed', error.message);
    throw error;
  }
}

function unusable(recordVersion: number, problem: 'too-large' | 'malformed', detail: string): ProbeResult {
  const tls: TlsHello = { sni: null, alpn: [], maxVersion: recordVersion, problem, detail };
  return { kind: 'match', complete: true, facts: { tls } };
}

const INCOMPLETE_HELLO = Symbol('incomplete');
const TOO_LARGE = Symbol('too-large');

/**
 * Walks the handshake records and returns the reassembled handshake message,
 * or why there is none (yet): INCOMPLETE_HELLO, TOO_LARGE, or a string saying
 * what is malformed. `view` is at most `cap` bytes long.
 *
 * TOO_LARGE is answered as soon as the record and handshake lengths prove the
 * message must end past `cap`, so the caller need not wait for the budget to
 * fill; and in any case once the view is full and the message still is not.
 */
function locateHello(view: Buffer, cap: number): Buffer | string | typeof INCOMPLETE_HELLO | typeof TOO_LARGE {
  let offset = 0; // start of the current record header
  let collected = 0; // handshake bytes seen in earlier records
  let header = 0; // the first handshake bytes, as they arrive: msg_type then length
  let total = -1; // the handshake message's length with its header, once known
  for (;;) {
    if (offset > 0) {
      // Only handshake records may carry the rest of a hello (RFC 8446 §5.1).
      // Each byte of a later record header is judged as soon as it arrives.
      if (offset < view.length && view[offset] !== HANDSHAKE_RECORD) return 'a non-handshake record interrupts the ClientHello';
      if (offset + 1 < view.length && view[offset + 1] !== 3) return 'a later record has a version other than 3.0-3.4';
      if (offset + 2 < view.length && view[offset + 2]! > 4) return 'a later record has a version other than 3.0-3.4';
    }
    if (offset + RECORD_HEADER_LENGTH > view.length) return view.length >= cap ? TOO_LARGE : INCOMPLETE_HELLO;
    const length = view.readUInt16BE(offset + 3);
    if (length === 0) return 'empty handshake record';
    if (length > MAX_FRAGMENT_LENGTH) return 'a later record is longer than 2^14 bytes';
    const fragmentStart = offset + RECORD_HEADER_LENGTH;
    const fragmentEnd = fragmentStart + length;
    const available = Math.min(fragmentEnd, view.length);

    // The 4-byte handshake header may itself be cut between records.
    let seen = collected;
    for (let pos = fragmentStart; pos < available && seen < HANDSHAKE_HEADER_LENGTH; pos++, seen++) {
      if (seen === 0 && view[pos] !== CLIENT_HELLO) return `handshake message type ${view[pos]} is not a ClientHello`;
      header = header * 256 + view[pos]!;
    }
    if (total < 0 && seen === HANDSHAKE_HEADER_LENGTH) total = HANDSHAKE_HEADER_LENGTH + (header & 0xffffff);

    if (total >= 0) {
      const stillNeeded = total - collected;
      if (stillNeeded <= length) {
        const end = fragmentStart + stillNeeded;
        if (end > cap) return TOO_LARGE;
        if (end > view.length) return INCOMPLETE_HELLO;
        return offset === 0 ? view.subarray(fragmentStart, end) : gatherFragments(view, total);
      }
      // At least one more record header is needed after this record.
      if (fragmentEnd + RECORD_HEADER_LENGTH + (stillNeeded - length) > cap) return TOO_LARGE;
    }
    if (fragmentEnd > view.length) return view.length >= cap ? TOO_LARGE : INCOMPLETE_HELLO;
    collected += length;
    offset = fragmentEnd;
  }
}

/** Copies a handshake message spread over several records into one buffer. */
function gatherFragments(view: Buffer, total: number): Buffer {
  const message = Buffer.allocUnsafe(total);
  let copied = 0;
  for (let offset = 0; copied < total; ) {
    const length = view.readUInt16BE(offset + 3);
    const take = Math.min(length, total - copied);
    view.copy(message, copied, offset + RECORD_HEADER_LENGTH, offset + RECORD_HEADER_LENGTH + take);
    copied += take;
    offset += RECORD_HEADER_LENGTH + length;
  }
  return message;
}

// ---- the ClientHello body ---------------------------------------------------

class MalformedHello extends Error {}

/** A bounds-checked cursor over one length-delimited part of the message. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
    private readonly end: number,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  u8(what: string): number {
    this.require(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what: string): number {
    this.require(2, what);
    const value = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return value;
  }

  skip(length: number, what: string): void {
    this.require(length, what);
    this.pos += length;
  }

  bytes(length: number, what: string): Buffer {
    this.require(length, what);
    this.pos += length;
    return this.buf.subarray(this.pos - length, this.pos);
  }

  /** A reader over the next `length` bytes, which this one skips. */
  sub(length: number, what: string): Reader {
    this.require(length, what);
    this.pos += length;
    return new Reader(this.buf, this.pos - length, this.pos);
  }

  /** The part must be used up exactly: a length that says more than its content is malformed. */
  finish(what: string): void {
    if (this.pos !== this.end) throw new MalformedHello(`${this.end - this.pos} stray bytes after ${what}`);
  }

  private require(length: number, what: string): void {
    if (this.pos + length > this.end) throw new MalformedHello(`${what} runs past its end`);
  }
}

/** Reads a whole handshake message (header included); throws MalformedHello. */
function readClientHello(message: Buffer): TlsHello {
  const body = new Reader(message, HANDSHAKE_HEADER_LENGTH, message.length);
  const legacyVersion = body.u16('legacy_version');
  if (legacyVersion >> 8 !== 3) throw new MalformedHello(`legacy_version 0x${legacyVersion.toString(16)} is not 3.x`);
  body.skip(RANDOM_LENGTH, 'random');
  const sessionIdLength = body.u8('session_id length');
  if (sessionIdLength > MAX_SESSION_ID_LENGTH) throw new MalformedHello('session id longer than 32 bytes');
  body.skip(sessionIdLength, 'session_id');
  const suitesLength = body.u16('cipher_suites length');
  if (suitesLength < 2 || suitesLength % 2 !== 0) throw new MalformedHello('cipher_suites length is not a positive even number');
  body.skip(suitesLength, 'cipher_suites');
  const compressionLength = body.u8('compression_methods length');
  if (compressionLength < 1) throw new MalformedHello('no compression method');
  body.skip(compressionLength, 'compression_methods');

  let sni: string | null = null;
  let alpn: readonly string[] = [];
  let maxVersion = legacyVersion;
  if (body.remaining === 0) return { sni, alpn, maxVersion }; // a pre-extensions client

  const extensions = body.sub(body.u16('extensions length'), 'extensions');
  body.finish('the extensions');
  const seen = new Set<number>();
  while (extensions.remaining > 0) {
    const type = extensions.u16('extension type');
    const data = extensions.sub(extensions.u16('extension length'), `extension ${type}`);
    if (seen.has(type)) throw new MalformedHello(`extension ${type} appears twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) sni = readServerName(data);
    else if (type === EXT_ALPN) alpn = readAlpn(data);
    else if (type === EXT_SUPPORTED_VERSIONS) maxVersion = readMaxSupportedVersion(data) ?? legacyVersion;
  }
  return { sni, alpn, maxVersion };
}

function readServerName(data: Reader): string | null {
  const list = data.sub(data.u16('server_name list length'), 'server_name list');
  data.finish('the server_name list');
  if (list.remaining === 0) throw new MalformedHello('empty server_name list');
  let hostName: string | null = null;
  while (list.remaining > 0) {
    const nameType = list.u8('server_name type');
    const name = list.bytes(list.u16('server_name length'), 'server_name');
    if (nameType !== HOST_NAME) continue; // no other type is defined; skip it as a TLS stack would
    if (hostName !== null) throw new MalformedHello('two host_name entries in server_name'); // RFC 6066 §3
    hostName = readHostName(name);
  }
  return hostName;
}

/**
 * RFC 6066 §3: an ASCII DNS name. Anything else (empty, over 255 bytes, NUL,
 * spaces, controls, bytes above 0x7e) is called malformed rather than turned
 * into a name a rule could match by accident.
 */
function readHostName(name: Buffer): string {
  if (name.length === 0 || name.length > 255) throw new MalformedHello('host_name length out of range');
  for (const byte of name) {
    if (byte <= 0x20 || byte >= 0x7f) throw new MalformedHello('host_name contains a byte that is not printable ASCII');
  }
  return name.toString('latin1').toLowerCase();
}

function readAlpn(data: Reader): string[] {
  const list = data.sub(data.u16('ALPN list length'), 'ALPN list');
  data.finish('the ALPN list');
  if (list.remaining === 0) throw new MalformedHello('empty ALPN list'); // RFC 7301 §3.1
  const names: string[] = [];
  while (list.remaining > 0) {
    const length = list.u8('ALPN name length');
    if (length === 0) throw new MalformedHello('empty ALPN protocol name');
    // latin1 maps each byte to one character, so no name is altered or merged with another.
    names.push(list.bytes(length, 'ALPN name').toString('latin1'));
  }
  return names;
}

/** The highest 3.x version listed, or null when only GREASE or unknown values are. */
function readMaxSupportedVersion(data: Reader): number | null {
  const length = data.u8('supported_versions length');
  if (length < 2 || length % 2 !== 0) throw new MalformedHello('supported_versions length is not a positive even number');
  const list = data.sub(length, 'supported_versions');
  data.finish('supported_versions');
  let max: number | null = null;
  while (list.remaining > 0) {
    const version = list.u16('version');
    // GREASE values (RFC 8701) are 0x?A?A with both bytes equal; draft and DTLS versions are not 3.x.
    if (isGrease(version) || version >> 8 !== 3) continue;
    if (max === null || version > max) max = version;
  }
  return max;
}

function isGrease(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}

// ---- SSLv2-compatible hello -----------------------------------------------------

/**
 * Old clients (and some scanners) open with an SSL 2.0 style record that
 * offers TLS: a 2-byte header with the high bit set holding the length, then
 * msg_type 1 (CLIENT-HELLO) and the highest version offered (RFC 5246 E.2).
 * It carries no extensions, so no SNI or ALPN; the facts are final as soon as
 * the version is read. A pure SSL 2.0 hello (version 0.2) is not TLS.
 */
const SSLV2_MIN_BODY = 9; // msg_type, version, three 2-byte lengths

function probeSslv2CompatibleHello(bytes: Buffer): ProbeResult {
  if (bytes.length < 2) return NEED_MORE;
  if ((((bytes[0]! & 0x7f) << 8) | bytes[1]!) < SSLV2_MIN_BODY) return noMatch('SSLv2 record too short for a hello');
  if (bytes.length < 3) return NEED_MORE;
  if (bytes[2] !== CLIENT_HELLO) return noMatch('SSLv2 record is not a CLIENT-HELLO');
  if (bytes.length < 4) return NEED_MORE;
  if (bytes[3] !== 3) return noMatch('SSLv2 hello does not offer TLS');
  if (bytes.length < 5) return NEED_MORE;
  if (bytes[4]! > 4) return noMatch('SSLv2 hello offers a version above 3.4');
  return { kind: 'match', complete: true, facts: { tls: { sni: null, alpn: [], maxVersion: bytes.readUInt16BE(3) } } };
}
