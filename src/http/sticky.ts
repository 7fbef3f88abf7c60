/**
 * Cookie stickiness (HAProxy `cookie NAME insert indirect`, NGINX Plus
 * `sticky cookie`): the response carries `NAME=<server>`, and later requests
 * carrying it go back to that server while it is up. The cookie is
 * sniffmux's: it is taken out of the request before the server sees it.
 */
import type { BackendPool } from '../backend/pool.js';
import type { ServerState } from '../backend/server-state.js';

/** The value of cookie `name` in the request's Cookie fields (the first one), or null. */
export function findCookie(raw: readonly string[], name: string): string | null {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'cookie') continue;
    for (const pair of raw[i + 1]!.split(';')) {
      const eq = pair.indexOf('=');
      if (eq > 0 && pair.slice(0, eq).trim() === name) return unquote(pair.slice(eq + 1).trim());
    }
  }
  return null;
}

/** A Cookie field value without cookie `name`; '' when nothing else is left. */
export function withoutCookie(value: string, name: string): string {
  const kept: string[] = [];
  for (const pair of value.split(';')) {
    const trimmed = pair.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    if (eq > 0 && trimmed.slice(0, eq).trim() === name) continue;
    kept.push(trimmed);
  }
  return kept.join('; ');
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** The Set-Cookie value naming `server`. */
export function stickyCookieValue(name: string, server: string): string {
  return `${name}=${server}; Path=/; HttpOnly`;
}

/**
 * The server a cookie value names, with a slot reserved on it (like
 * BackendPool.acquire), when it exists, is up and has room; otherwise null
 * and the request is balanced as usual.
 */
export function reserveSticky(pool: BackendPool, value: string | null, skip?: ReadonlySet<ServerState>): ServerState | null {
  if (value === null) return null;
  const server = pool.servers.find((s) => s.name === value);
  if (!server || !server.available || skip?.has(server)) return null;
  server.active++;
  return server;
}
