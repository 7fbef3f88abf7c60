/**
 * Pre-built HTTP error responses, written to an HTTP client only while no
 * byte of a real response has been sent (SPEC §4). Built once at load, like
 * Node's own badRequestResponse in _http_server.js.
 */
function response(status: number, reason: string, body: string): Buffer {
  const text = `${body}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(text)}\r\n` +
      'Cache-Control: no-store\r\n' +
      'Connection: close\r\n' +
      '\r\n' +
      text,
    'latin1',
  );
}

export const HTTP_400 = response(400, 'Bad Request', 'sniffmux: bad request');
export const HTTP_408 = response(408, 'Request Timeout', 'sniffmux: request timeout');
export const HTTP_431 = response(431, 'Request Header Fields Too Large', 'sniffmux: request header fields too large');
export const HTTP_502 = response(502, 'Bad Gateway', 'sniffmux: the server sent an invalid or no response');
export const HTTP_503 = response(503, 'Service Unavailable', 'sniffmux: no server is available to handle this request');
export const HTTP_504 = response(504, 'Gateway Timeout', 'sniffmux: the server did not answer in time');

export type ErrorStatus = 400 | 408 | 431 | 502 | 503 | 504;

/** The pre-built answer for each error status http mode sends. */
export const ERROR_RESPONSES: Readonly<Record<ErrorStatus, Buffer>> = Object.freeze({
  400: HTTP_400,
  408: HTTP_408,
  431: HTTP_431,
  502: HTTP_502,
  503: HTTP_503,
  504: HTTP_504,
});
