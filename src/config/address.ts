/**
 * Addresses as the config writes them: `host:port`, `[v6]:port`, or `:port`
 * (and HAProxy's `*:port`) for all interfaces. Parsed once here; the runtime
 * gets `{ host, port, text }` and never looks at the string again.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Address } from './types.js';

export const PORT_PROBLEM = 'port must be 1-65535';

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** Parse a port number written as text; null if it is not 1-65535 (0 too when `allowZero`). */
export function parsePort(text: string, allowZero = false): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return (port >= 1 || (allowZero && port === 0)) && port <= 65535 ? port : null;
}

/**
 * Parse an address; `needHost` refuses `:port` (a server must be somewhere).
 * `allowZero` lets a listen address ask the OS for a free port (tests, the
 * demo); whether that is allowed is decided later (ParseOptions.listenPortZero).
 * Returns the address or a message saying what is wrong.
 */
export function parseAddress(text: string, needHost: boolean, allowZero = false): Address | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return `invalid address '${text}': use [IPv6]:port, e.g. [::1]:8080`;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIPv6(host)) return `invalid address '${text}': '${host}' is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `invalid address '${text}': use host:port, [::1]:port or :port`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return `invalid address '${text}': put an IPv6 address in brackets, e.g. [::1]:8080`;
    if (host === '*') host = '';
    if (host !== '' && !validHost(host)) return `invalid address '${text}': '${host}' is not a host name or IP address`;
  }
  const port = parsePort(portText, allowZero);
  if (port === null) return PORT_PROBLEM;
  if (needHost && host === '') return `invalid address '${text}': a server address needs a host, e.g. 127.0.0.1:${port}`;
  return { host, port, text };
}

function validHost(host: string): boolean {
  // Only digits and dots must be a real IPv4 address: 999.1.1.1 is a typo, not a name.
  if (/^[\d.]+$/.test(host)) return isIPv4(host);
  return HOSTNAME.test(host);
}

/**
 * A host only this machine can reach: `localhost`, 127.0.0.0/8 or ::1. Not
 * "" (`:port` is every interface) and not any other name, which may resolve
 * anywhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || (isIPv4(h) && h.startsWith('127.'));
}
