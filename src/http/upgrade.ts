/**
 * Upgrades become tunnels (varnish `pipe`, nginx `proxy_http_version 1.1`
 * with `Upgrade`/`Connection`). The request head is rewritten like any other
 * request's (path rewrite, hop-by-hop fields, forwarded fields, sticky cookie
 * removed) but keeps `Upgrade` and says `Connection: Upgrade`; then it and
 * every byte after it go to the server untouched, and whatever the server
 * answers (101, or a refusal) goes back untouched.
 *
 * That is what makes the old hixie-76 handshake work: its request carries 8
 * raw bytes after the head with no Content-Length, and its 101 response 16
 * bytes after the head. Node's parser hands the 8 as the 'upgrade' event's
 * `head`; the session passes them, and anything after, on intact.
 */
import type http from 'node:http';
import type { BackendHttp } from '../config/types.js';
import { requestHeaders, serializeHead, type Forwarded } from './headers.js';
import { rewriteTarget } from './rewrite.js';

export function tunnelHead(req: http.IncomingMessage, settings: BackendHttp, forwarded: Forwarded | null): Buffer {
  const headers = requestHeaders(req.rawHeaders, {
    upgrade: req.method !== 'CONNECT',
    chunked: false,
    forwarded: settings.forwardedFor ? forwarded : null,
    stripCookie: settings.stickyCookie,
  });
  return serializeHead(req.method ?? 'GET', rewriteTarget(req.url ?? '/', settings.rewrite), req.httpVersion, headers);
}
