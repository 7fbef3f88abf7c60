/** "::ffff:1.2.3.4" (a v4 client on a dual-stack socket) → "1.2.3.4". */
export function unmapIPv4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** "1.2.3.4:5" or "[::1]:5", as logs show a client. */
export function formatAddress(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
