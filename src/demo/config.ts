/**
 * The embedded default that `sniffmux demo` runs: one port for every
 * protocol (TLS terminated there too, then sniffed again), one policy-only
 * port, and the built-in demo backends.
 */
export function demoConfig(opts: {
  port: number;
  policyPort: number;
  http: number;
  ws: number;
  echo: number;
  certificate: { cert: string; key: string };
}): unknown {
  return {
    log: { level: 'info' },
    flashPolicy: { allow: [{ domain: '*', ports: '*' }] },
    frontends: [
      {
        name: 'demo',
        listen: [`127.0.0.1:${opts.port}`],
        inspect: { delay: '1s' },
        timeouts: { client: '1m', tunnel: '1h' },
        flashPolicy: true,
        tls: { certificates: [{ cert: opts.certificate.cert, key: opts.certificate.key }] },
        rules: [
          { if: { websocket: true }, use: 'ws_echo' },
          { if: { protocol: 'http' }, use: 'web' },
        ],
        default: 'tcp_echo',
      },
      { name: 'policy', listen: [`127.0.0.1:${opts.policyPort}`], flashPolicy: true },
    ],
    backends: [
      { name: 'web', servers: [{ name: 'demo-http', address: `127.0.0.1:${opts.http}` }] },
      { name: 'ws_echo', servers: [{ name: 'demo-ws', address: `127.0.0.1:${opts.ws}` }] },
      { name: 'tcp_echo', servers: [{ name: 'demo-echo', address: `127.0.0.1:${opts.echo}` }] },
    ],
  };
}

export function demoGuide(port: number, policyPort: number): string {
  const host = `127.0.0.1:${port}`;
  return `
sniffmux demo is running: every protocol on ${host}, Flash policy only on 127.0.0.1:${policyPort}.

Try each protocol against the same port:
  browser     open http://${host}/  (the page opens a WebSocket back to ${host})
  HTTP        curl -i http://${host}/health
  HTTPS       curl -k https://${host}/  (a self-signed certificate made at start; -k accepts it)
  WebSocket   npx wscat -c ws://${host}/ws
  wss         npx wscat -n -c wss://${host}/ws  (-n accepts the self-signed certificate)
  TLS         openssl s_client -connect ${host}  (then type a line: raw bytes inside TLS are echoed too)
  raw TCP     nc ${host.replace(':', ' ')}          (type a line: it is echoed back; silent clients go to the echo too)
  policy      printf '<policy-file-request/>\\0' | nc ${host.replace(':', ' ')}
  policy-only printf '<policy-file-request/>\\0' | nc 127.0.0.1 ${policyPort}
  explain     npx sniffmux explain -c fixtures/configs/seed.yaml --hex 474554202f20485454502f312e310d0a0d0a

Logs below are one JSON line per connection. Ctrl-C stops.
`;
}
