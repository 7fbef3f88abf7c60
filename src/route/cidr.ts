/**
 * IP addresses and CIDR blocks for `src` rules.
 *
 * The two families stay apart, as in nginx or Go's netip: an IPv4 block
 * matches IPv4 clients, an IPv6 block IPv6 clients. An IPv4-mapped address
 * (`::ffff:10.1.2.3`, what a dual-stack socket reports) counts as the IPv4
 * address it carries, and a mapped block (`::ffff:10.0.0.0/104`) as the IPv4
 * block it covers, so "all of IPv4" is `0.0.0.0/0` whichever way it arrives.
 *
 * Matching runs per connection: the client address is parsed by hand into a
 * module-level scratch array, with no allocation.
 */

export interface CidrSet {
  /** IPv4 blocks as (network, mask) pairs, unsigned 32-bit. */
  readonly v4: readonly number[];
  /** IPv6 blocks: network words (already masked) and prefix length. */
  readonly v6: readonly { readonly words: Uint16Array; readonly prefix: number }[];
}

export type ParsedCidr =
  | { readonly family: 4; readonly net: number; readonly prefix: number }
  | { readonly family: 6; readonly words: Uint16Array; readonly prefix: number };

/** Dotted quad between [start, end) as an unsigned 32-bit number, or -1. Leading zeros are refused (octal look-alikes). */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let value = 0;
  let octets = 0;
  let i = start;
  while (octets < 4) {
    const first = i;
    let octet = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      octet = octet * 10 + (c - 48);
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || octet > 255 || (digits > 1 && s.charCodeAt(first) === 48)) return -1;
    value = value * 256 + octet;
    octets++;
    if (octets < 4) {
      if (i >= end || s.charCodeAt(i) !== 46 /* . */) return -1;
      i++;
    }
  }
  return i === end ? value >>> 0 : -1;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const tailScratch = new Uint16Array(8);

/**
 * Parse an IPv6 address (`::` compression, embedded IPv4 tail, `%zone`
 * ignored) into `out`. Returns false on anything malformed.
 */
export function parseIPv6(s: string, out: Uint16Array): boolean {
  let end = s.indexOf('%');
  if (end < 0) end = s.length;
  if (end < 2) return false;
  let head = 0;
  let tail = 0;
  let compressed = false;
  let i = 0;
  if (s.charCodeAt(0) === 58 /* : */) {
    if (s.charCodeAt(1) !== 58) return false;
    compressed = true;
    i = 2;
  }
  while (i < end) {
    let j = i;
    let v = 0;
    while (j < end) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      v = v * 16 + h;
      j++;
    }
    if (j < end && s.charCodeAt(j) === 46 /* . */) {
      // Embedded IPv4 (`::ffff:1.2.3.4`): the last 32 bits, must end the string.
      const v4 = parseIPv4(s, i, end);
      if (v4 < 0 || head + tail + 2 > 8) return false;
      if (compressed) {
        tailScratch[tail++] = v4 >>> 16;
        tailScratch[tail++] = v4 & 0xffff;
      } else {
        out[head++] = v4 >>> 16;
        out[head++] = v4 & 0xffff;
      }
      i = end;
      break;
    }
    if (j === i || j - i > 4 || head + tail >= 8) return false;
    if (compressed) tailScratch[tail++] = v;
    else out[head++] = v;
    if (j === end) {
      i = end;
      break;
    }
    if (s.charCodeAt(j) !== 58) return false;
    j++;
    if (j < end && s.charCodeAt(j) === 58) {
      if (compressed) return false;
      compressed = true;
      j++;
    } else if (j === end) {
      return false; // a single trailing colon
    }
    i = j;
  }
  if (compressed) {
    if (head + tail > 7) return false;
    const zeros = 8 - head - tail;
    for (let k = 0; k < zeros; k++) out[head + k] = 0;
    for (let k = 0; k < tail; k++) out[head + zeros + k] = tailScratch[k]!;
    return true;
  }
  return head === 8;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), or -1. */
function mappedIPv4(w: Uint16Array): number {
  if (w[0] !== 0 || w[1] !== 0 || w[2] !== 0 || w[3] !== 0 || w[4] !== 0 || w[5] !== 0xffff) return -1;
  return ((w[6]! << 16) | w[7]!) >>> 0;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function maskWords(words: Uint16Array, prefix: number): Uint16Array {
  const out = new Uint16Array(8);
  for (let k = 0; k < 8; k++) {
    const bits = Math.max(0, Math.min(16, prefix - k * 16));
    const m = bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
    out[k] = words[k]! & m;
  }
  return out;
}

function sameWords(a: Uint16Array, b: Uint16Array): boolean {
  for (let k = 0; k < 8; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Parse `a.b.c.d[/n]` or `x:y::z[/n]`; a bare address is a /32 or /128. Returns the block or a message saying what is wrong. */
export function parseCidr(text: string): ParsedCidr | string {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? null : text.slice(slash + 1);
  const bad = `invalid CIDR '${text}': use an address or address/prefix, e.g. 10.0.0.0/8 or 2001:db8::/32`;
  let prefix: number | null = null;
  if (prefixText !== null) {
    if (!/^\d{1,3}$/.test(prefixText)) return bad;
    prefix = Number(prefixText);
  }
  if (!ip.includes(':')) {
    const net = parseIPv4(ip);
    if (net < 0) return bad;
    const p = prefix ?? 32;
    if (p > 32) return `invalid CIDR '${text}': an IPv4 prefix is 0-32`;
    if ((net & maskOf(p)) >>> 0 !== net) return hostBitsProblem(text, formatIPv4((net & maskOf(p)) >>> 0) + '/' + p);
    return { family: 4, net, prefix: p };
  }
  if (ip.includes('%')) return bad;
  const words = new Uint16Array(8);
  if (!parseIPv6(ip, words)) return bad;
  const p = prefix ?? 128;
  if (p > 128) return `invalid CIDR '${text}': an IPv6 prefix is 0-128`;
  const masked = maskWords(words, p);
  if (!sameWords(masked, words)) return hostBitsProblem(text, `${formatIPv6(masked)}/${p}`);
  const v4 = p >= 96 ? mappedIPv4(words) : -1;
  if (v4 >= 0) return { family: 4, net: v4, prefix: p - 96 };
  return { family: 6, words, prefix: p };
}

function hostBitsProblem(text: string, suggestion: string): string {
  return `invalid CIDR '${text}': bits are set after the prefix (did you mean ${suggestion}?)`;
}

function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function formatIPv6(w: Uint16Array): string {
  return Array.from(w, (x) => x.toString(16)).join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** Build a matcher from CIDR strings already checked by `parseCidr` (throws on a bad one). */
export function compileCidrs(list: string | readonly string[]): CidrSet {
  const v4: number[] = [];
  const v6: { words: Uint16Array; prefix: number }[] = [];
  for (const text of typeof list === 'string' ? [list] : list) {
    const c = parseCidr(text);
    if (typeof c === 'string') throw new Error(c);
    if (c.family === 4) v4.push(c.net, maskOf(c.prefix));
    else v6.push({ words: c.words, prefix: c.prefix });
  }
  return { v4, v6 };
}

const ipScratch = new Uint16Array(8);

function matchV4(set: CidrSet, ip: number): boolean {
  const v4 = set.v4;
  for (let k = 0; k < v4.length; k += 2) if ((ip & v4[k + 1]!) >>> 0 === v4[k]) return true;
  return false;
}

/** Does the client address fall in the set? Anything unparsable matches nothing. */
export function cidrSetHas(set: CidrSet, ip: string): boolean {
  if (ip.indexOf(':') < 0) {
    const v4 = parseIPv4(ip);
    return v4 >= 0 && matchV4(set, v4);
  }
  if (!parseIPv6(ip, ipScratch)) return false;
  const mapped = mappedIPv4(ipScratch);
  if (mapped >= 0) return matchV4(set, mapped);
  for (const block of set.v6) {
    let k = 0;
    let bits = block.prefix;
    for (; bits >= 16; k++, bits -= 16) if (ipScratch[k] !== block.words[k]) break;
    if (bits >= 16) continue; // a whole word differed
    if (bits === 0 || ((ipScratch[k]! >>> (16 - bits)) === (block.words[k]! >>> (16 - bits)))) return true;
  }
  return false;
}
