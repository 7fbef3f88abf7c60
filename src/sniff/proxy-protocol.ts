import { isIPv4, isIPv6 } from 'node:net';
import { matchPrefix } from './prefix.js';

/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a
 * header a load balancer sends before the client's bytes to pass on the
 * client's address. It is not a probe: a listener with `proxyProtocol: true`
 * requires it first, consumes it, and sniffs what follows. The parser is
 * stateless like the probes: called again with the grown buffer, it answers
 * need-more only while the bytes are still a prefix of a valid header.
 *
 * Version 1, one text line of at most 107 bytes:
 *
 *   "PROXY" SP ("TCP4" | "TCP6") SP src-addr SP dst-addr SP src-port SP dst-port CRLF
 *   "PROXY" SP "UNKNOWN" [anything but CR/LF] CRLF
 *
 * Version 2, binary:
 *
 *   signature   12 bytes  \r \n \r \n \0 \r \n Q U I T \n
 *   ver_cmd      1 byte   high nibble 2 (version); low nibble 0 LOCAL, 1 PROXY
 *   fam          1 byte   high nibble 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX;
 *                         low nibble 1 STREAM, 2 DGRAM (0 only with UNSPEC)
 *   len          2 bytes  size of the block that follows
 *   addresses             INET: src 4, dst 4, src port 2, dst port 2 (12 bytes)
 *                         INET6: src 16, dst 16, ports 2 + 2 (36 bytes)
 *                         UNIX: src path 108, dst path 108 (216 bytes)
 *   TLVs                  to the end of the block: type 1, length 2, value
 *
 * A LOCAL header (a health check from the proxy itself) and an UNSPEC one
 * carry no usable addresses: as the spec says, their block is skipped whole,
 * so they report no addresses and no TLVs.
 */

export type ProxyFamily = 'TCP4' | 'TCP6' | 'UNKNOWN' | 'UNIX' | 'UDP4' | 'UDP6';

export interface ProxyAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  readonly command: 'PROXY' | 'LOCAL';
  readonly family: ProxyFamily;
  /** The client, for a PROXY command with addresses (UNIX: the socket path, port 0). */
  readonly source?: ProxyAddress;
  /** The address the client connected to, as the proxy saw it. */
  readonly destination?: ProxyAddress;
  readonly tlvs: readonly ProxyTlv[];
}

export type ProxyParse =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** `length`: the bytes the header takes; the client's own bytes start there. */
  | { readonly kind: 'header'; readonly length: number; readonly header: ProxyHeader };

/** v2 TLV types sniffmux writes (proxy-protocol.txt §2.2.1). */
export const PROXY_TLV_ALPN = 0x01;
export const PROXY_TLV_AUTHORITY = 0x02;

export const PROXY_V1_MAX_LENGTH = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const V2_FIXED_LENGTH = 16;
const UNIX_PATH_LENGTH = 108;
const CR = 0x0d;
const LF = 0x0a;

const NEED_MORE: ProxyParse = Object.freeze({ kind: 'need-more' });

function invalid(reason: string): ProxyParse {
  return { kind: 'invalid', reason };
}

export function parseProxyHeader(bytes: Buffer): ProxyParse {
  if (bytes.length === 0) return NEED_MORE;
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes);
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  return invalid('not a PROXY header');
}

// ---- version 1 -------------------------------------------------------------------

function parseV1(bytes: Buffer): ProxyParse {
  if (matchPrefix(bytes, V1_PREFIX) === 'differs') return invalid('not a PROXY header');
  const lf = bytes.subarray(0, PROXY_V1_MAX_LENGTH).indexOf(LF, V1_PREFIX.length);
  if (lf < 0) {
    if (bytes.length >= PROXY_V1_MAX_LENGTH) return invalid('v1 line longer than 107 bytes');
    const problem = checkV1Line(bytes.toString('latin1', V1_PREFIX.length), false);
    return typeof problem === 'string' ? invalid(problem) : NEED_MORE;
  }
  if (bytes[lf - 1] !== CR) return invalid('v1 line ends in LF without CR');
  const header = checkV1Line(bytes.toString('latin1', V1_PREFIX.length, lf - 1), true);
  if (typeof header === 'string') return invalid(header);
  return { kind: 'header', length: lf + 1, header: header! };
}

/**
 * Checks the fields after "PROXY ": the header, or why it is invalid. With
 * `complete` false the line is still arriving: whole fields (those followed
 * by a space) are checked fully, the last one only as a possible prefix of a
 * valid field, and null means "fine so far".
 */
function checkV1Line(line: string, complete: boolean): ProxyHeader | string | null {
  // The line may end in the CR of its CRLF before the LF arrives.
  const text = !complete && line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text.includes('\r')) return 'CR inside the v1 line';
  const fields = text.split(' ');
  const family = fields[0]!;
  if (family === 'UNKNOWN' && (complete || fields.length > 1)) {
    // The spec: with UNKNOWN, the rest of the line is to be ignored.
    return complete ? { version: 1, command: 'PROXY', family: 'UNKNOWN', tlvs: [] } : null;
  }
  if (fields.length > 5) return 'too many fields in the v1 line';
  if (complete && fields.length < 5) return `v1 line has ${fields.length} fields, needs 5`;
  for (let i = 0; i < fields.length; i++) {
    const partial = !complete && i === fields.length - 1;
    const problem = checkV1Field(i, fields[i]!, partial, family);
    if (problem !== null) return problem;
  }
  if (!complete) return null;
  return {
    version: 1,
    command: 'PROXY',
    family: family as 'TCP4' | 'TCP6',
    source: { address: fields[1]!, port: Number(fields[3]) },
    destination: { address: fields[2]!, port: Number(fields[4]) },
    tlvs: [],
  };
}

const V1_FAMILIES = ['TCP4', 'TCP6', 'UNKNOWN'];
/** Longest text forms: 255.255.255.255 and ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255. */
const MAX_ADDRESS_TEXT = { TCP4: 15, TCP6: 45 } as const;
const IPV4_CHARS = /^[0-9.]*$/;
const IPV6_CHARS = /^[0-9a-fA-F:.]*$/;
const PORT_CHARS = /^[0-9]{0,5}$/;

/**
 * One field, by position. A partial field passes if some valid field starts
 * with it, so every prefix of a valid line is need-more, never invalid; the
 * character sets are also applied to whole fields for the same reason (for
 * example, net.isIPv6 accepts a "%zone" that no partial field may contain).
 */
function checkV1Field(index: number, field: string, partial: boolean, family: string): string | null {
  if (index === 0) {
    if (partial ? V1_FAMILIES.some((name) => name.startsWith(field)) : family === 'TCP4' || family === 'TCP6') return null;
    return `unknown v1 family "${field}"`;
  }
  if (index <= 2) {
    const v4 = family === 'TCP4';
    if (!(v4 ? IPV4_CHARS : IPV6_CHARS).test(field) || field.length > MAX_ADDRESS_TEXT[v4 ? 'TCP4' : 'TCP6']) {
      return `bad ${family} address "${field}"`;
    }
    if (partial || (v4 ? isIPv4(field) : isIPv6(field))) return null;
    return `bad ${family} address "${field}"`;
  }
  if (!PORT_CHARS.test(field) || (!partial && field.length === 0) || Number(field) > 65535) return `bad port "${field}"`;
  return null;
}

// ---- version 2 -------------------------------------------------------------------

interface V2Family {
  readonly name: ProxyFamily;
  readonly addressLength: number;
}

/** The fam byte values the spec defines; all others "must be rejected as invalid". */
const V2_FAMILIES = new Map<number, V2Family>([
  [0x00, { name: 'UNKNOWN', addressLength: 0 }],
  [0x11, { name: 'TCP4', addressLength: 12 }],
  [0x12, { name: 'UDP4', addressLength: 12 }],
  [0x21, { name: 'TCP6', addressLength: 36 }],
  [0x22, { name: 'UDP6', addressLength: 36 }],
  [0x31, { name: 'UNIX', addressLength: 2 * UNIX_PATH_LENGTH }],
  [0x32, { name: 'UNIX', addressLength: 2 * UNIX_PATH_LENGTH }],
]);

function parseV2(bytes: Buffer): ProxyParse {
  if (matchPrefix(bytes, V2_SIGNATURE) === 'differs') return invalid('not a PROXY header');
  if (bytes.length <= 12) return NEED_MORE;
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`v2 version ${versionCommand >> 4} is not 2`);
  const commandCode = versionCommand & 0x0f;
  if (commandCode > 1) return invalid(`unknown v2 command ${commandCode}`);
  const command = commandCode === 0 ? 'LOCAL' : 'PROXY';
  if (bytes.length <= 13) return NEED_MORE;
  const family = V2_FAMILIES.get(bytes[13]!);
  // LOCAL discards the block, family included, so only PROXY needs a known one.
  if (command === 'PROXY' && family === undefined) return invalid(`unknown v2 address family 0x${bytes[13]!.toString(16)}`);
  if (bytes.length < V2_FIXED_LENGTH) return NEED_MORE;
  const blockLength = bytes.readUInt16BE(14);
  if (command === 'PROXY' && blockLength < family!.addressLength) {
    return invalid(`v2 block of ${blockLength} bytes is too short for ${family!.name} addresses`);
  }
  const end = V2_FIXED_LENGTH + blockLength;
  if (bytes.length < end) return NEED_MORE;

  if (command === 'LOCAL' || family!.addressLength === 0) {
    const header: ProxyHeader = { version: 2, command, family: family?.name ?? 'UNKNOWN', tlvs: [] };
    return { kind: 'header', length: end, header };
  }
  const tlvs = readTlvs(bytes, V2_FIXED_LENGTH + family!.addressLength, end);
  if (typeof tlvs === 'string') return invalid(tlvs);
  const { source, destination } = readV2Addresses(bytes, family!);
  return { kind: 'header', length: end, header: { version: 2, command, family: family!.name, source, destination, tlvs } };
}

function readV2Addresses(bytes: Buffer, family: V2Family): { source: ProxyAddress; destination: ProxyAddress } {
  const at = V2_FIXED_LENGTH;
  switch (family.addressLength) {
    case 12:
      return {
        source: { address: formatIPv4(bytes, at), port: bytes.readUInt16BE(at + 8) },
        destination: { address: formatIPv4(bytes, at + 4), port: bytes.readUInt16BE(at + 10) },
      };
    case 36:
      return {
        source: { address: formatIPv6(bytes, at), port: bytes.readUInt16BE(at + 32) },
        destination: { address: formatIPv6(bytes, at + 16), port: bytes.readUInt16BE(at + 34) },
      };
    default:
      return {
        source: { address: readUnixPath(bytes, at), port: 0 },
        destination: { address: readUnixPath(bytes, at + UNIX_PATH_LENGTH), port: 0 },
      };
  }
}

/** The TLV list, or why it is malformed: every TLV must fit inside the block. */
function readTlvs(bytes: Buffer, start: number, end: number): ProxyTlv[] | string {
  const tlvs: ProxyTlv[] = [];
  let pos = start;
  while (pos < end) {
    if (pos + 3 > end) return 'v2 TLV header runs past the end of the block';
    const type = bytes[pos]!;
    const length = bytes.readUInt16BE(pos + 1);
    if (pos + 3 + length > end) return `v2 TLV 0x${type.toString(16)} runs past the end of the block`;
    // A copy, so that a kept header does not pin the connection's whole first buffer.
    tlvs.push({ type, value: Buffer.from(bytes.subarray(pos + 3, pos + 3 + length)) });
    pos += 3 + length;
  }
  return tlvs;
}

function readUnixPath(bytes: Buffer, at: number): string {
  const nul = bytes.indexOf(0, at);
  const end = nul >= 0 && nul < at + UNIX_PATH_LENGTH ? nul : at + UNIX_PATH_LENGTH;
  return bytes.toString('utf8', at, end);
}

function formatIPv4(bytes: Buffer, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

/** RFC 5952 text: lower case, longest run of two or more zero groups as "::", IPv4-mapped as ::ffff:a.b.c.d. */
function formatIPv6(bytes: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(bytes.readUInt16BE(at + 2 * i));
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes, at + 12)}`;
  }
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

// ---- encoders ----------------------------------------------------------------------

export interface ProxyEndpoints {
  /** The client. */
  readonly source: ProxyAddress;
  /** The address the client connected to. */
  readonly destination: ProxyAddress;
}

export interface ProxyV2Options {
  /** LOCAL: a connection of the proxy's own (health checks); no addresses or TLVs are sent. Default PROXY. */
  readonly command?: 'PROXY' | 'LOCAL';
  /** The protocol the client negotiated by ALPN (TLV 0x01). */
  readonly alpn?: string | null;
  /** The host name the client asked for, i.e. the SNI (TLV 0x02). */
  readonly authority?: string | null;
  /** Further TLVs, written after those two. */
  readonly tlvs?: readonly ProxyTlv[];
}

/**
 * "PROXY TCP4|TCP6 …\r\n", or "PROXY UNKNOWN\r\n" when the endpoints are null
 * or unusable (a socket's address can be undefined once it is closed; that is
 * never worth an exception). An IPv4 and an IPv6 endpoint together are sent
 * as TCP6 with the IPv4 one mapped (::ffff:a.b.c.d); IPv4-mapped pairs as TCP4.
 */
export function encodeProxyV1(endpoints: ProxyEndpoints | null): Buffer {
  const pair = ipPair(endpoints);
  if (pair === null) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const { family, source, destination } = pair;
  return Buffer.from(`PROXY ${family} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`, 'latin1');
}

/**
 * A v2 header for TCP over IPv4/IPv6 (PROXY), or for no addresses at all
 * (UNSPEC when the endpoints are null or unusable; LOCAL). TLVs go only with
 * addresses, since a receiver skips the block of UNSPEC and LOCAL headers.
 * Throws RangeError only if the TLVs exceed the 64 KiB block.
 */
export function encodeProxyV2(endpoints: ProxyEndpoints | null, options: ProxyV2Options = {}): Buffer {
  const command = options.command ?? 'PROXY';
  const pair = command === 'PROXY' ? ipPair(endpoints) : null;
  const fixed = Buffer.alloc(V2_FIXED_LENGTH);
  V2_SIGNATURE.copy(fixed);
  fixed[12] = command === 'PROXY' ? 0x21 : 0x20;
  if (pair === null) return fixed; // fam 0x00 (UNSPEC), len 0

  const v4 = pair.family === 'TCP4';
  const addresses = Buffer.alloc(v4 ? 12 : 36);
  const width = v4 ? 4 : 16;
  (v4 ? ipv4Bytes : ipv6Bytes)(pair.source.address).copy(addresses, 0);
  (v4 ? ipv4Bytes : ipv6Bytes)(pair.destination.address).copy(addresses, width);
  addresses.writeUInt16BE(pair.source.port, 2 * width);
  addresses.writeUInt16BE(pair.destination.port, 2 * width + 2);

  const tlvs: ProxyTlv[] = [];
  if (options.alpn) tlvs.push({ type: PROXY_TLV_ALPN, value: Buffer.from(options.alpn, 'latin1') });
  if (options.authority) tlvs.push({ type: PROXY_TLV_AUTHORITY, value: Buffer.from(options.authority, 'latin1') });
  tlvs.push(...(options.tlvs ?? []));
  const encodedTlvs = tlvs.map(encodeTlv);

  const blockLength = addresses.length + encodedTlvs.reduce((sum, tlv) => sum + tlv.length, 0);
  if (blockLength > 0xffff) throw new RangeError('PROXY v2 TLVs exceed 64 KiB');
  fixed[13] = v4 ? 0x11 : 0x21;
  fixed.writeUInt16BE(blockLength, 14);
  return Buffer.concat([fixed, addresses, ...encodedTlvs]);
}

function encodeTlv(tlv: ProxyTlv): Buffer {
  if (tlv.value.length > 0xffff) throw new RangeError(`PROXY v2 TLV 0x${tlv.type.toString(16)} is over 64 KiB`);
  const header = Buffer.alloc(3);
  header[0] = tlv.type;
  header.writeUInt16BE(tlv.value.length, 1);
  return Buffer.concat([header, tlv.value]);
}

/** Both endpoints as one address family, canonical text, or null when unusable. */
function ipPair(endpoints: ProxyEndpoints | null): { family: 'TCP4' | 'TCP6'; source: ProxyAddress; destination: ProxyAddress } | null {
  if (endpoints === null) return null;
  const { source, destination } = endpoints;
  if (!isPort(source.port) || !isPort(destination.port)) return null;
  const from = unmapIPv4(source.address);
  const to = unmapIPv4(destination.address);
  if (isIPv4(from) && isIPv4(to)) {
    return { family: 'TCP4', source: { address: from, port: source.port }, destination: { address: to, port: destination.port } };
  }
  if (!isIP(from) || !isIP(to)) return null;
  return {
    family: 'TCP6',
    source: { address: formatIPv6(ipv6Bytes(from), 0), port: source.port },
    destination: { address: formatIPv6(ipv6Bytes(to), 0), port: destination.port },
  };
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

function isIP(address: string): boolean {
  return isIPv4(address) || isIPv6(address);
}

/** "::ffff:1.2.3.4" → "1.2.3.4"; a zone ("%eth0") is dropped, since no PROXY form carries one. */
function unmapIPv4(address: string): string {
  const unzoned = address.split('%')[0]!;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(unzoned);
  return mapped && isIPv4(mapped[1]!) ? mapped[1]! : unzoned;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** 16 bytes of a valid IPv6 (or IPv4, as ::ffff:a.b.c.d) address. */
function ipv6Bytes(address: string): Buffer {
  const bytes = Buffer.alloc(16);
  if (isIPv4(address)) {
    bytes.writeUInt16BE(0xffff, 10);
    ipv4Bytes(address).copy(bytes, 12);
    return bytes;
  }
  let text = address;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    // A trailing dotted IPv4 stands for the last two groups.
    const [a, b, c, d] = text.slice(lastColon + 1).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), 2 * i));
  return bytes;
}
