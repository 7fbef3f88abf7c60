// The "naive Node sniff-then-pipe proxy" of issue 6, as a reference point:
// wait for the first chunk, look at its first byte, connect, write it, pipe().
// usage: node bench/naive-proxy.mjs LISTEN_PORT BACKEND_PORT
import net from 'node:net';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  client.on('error', () => client.destroy());
  client.once('data', (first) => {
    client.pause();
    // "sniffing": HTTP, TLS or anything else all go to the same backend here.
    void (first[0] === 0x16 ? 'tls' : /^[A-Z]+ /.test(first.toString('latin1', 0, 8)) ? 'http' : 'other');
    const upstream = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
    upstream.on('error', () => {
      upstream.destroy();
      client.destroy();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.once('connect', () => {
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
});
server.listen({ host: '127.0.0.1', port: listenPort, backlog: 4096 });
process.on('SIGTERM', () => process.exit(0));
