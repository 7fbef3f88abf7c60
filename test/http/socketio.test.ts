import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { Server as SocketIoServer } from 'socket.io';
import { io as connectIo, type Socket as ClientSocket } from 'socket.io-client';
import { startMux, type RunningMux } from '../helpers/mux.js';

/**
 * Three socket.io v4 servers behind one sniffmux port, balanced round-robin
 * with `stickyCookie`: long-polling needs every request of a session on the
 * server that holds it, and the upgrade to WebSocket too.
 *
 * socket.io-client in Node keeps cookies only with `withCredentials: true`
 * (engine.io-client then keeps a cookie jar, sends its cookies on every
 * polling request and on the WebSocket upgrade). Without it, the sticky
 * cookie is never sent back and polling breaks, as the last test shows.
 */
type Teardown = { teardown(fn: () => unknown): void };

const NAMES = ['node1', 'node2', 'node3'];

async function setup(t: Teardown): Promise<{ mux: RunningMux; url: string; hits: Record<string, number> }> {
  const hits: Record<string, number> = {};
  const servers = await Promise.all(
    NAMES.map(async (name) => {
      const server = http.createServer();
      const io = new SocketIoServer(server);
      // engine.io takes the 'request' listeners over; one put in front of its own sees every request.
      server.prependListener('request', () => (hits[name] = (hits[name] ?? 0) + 1));
      io.on('connection', (socket) => {
        socket.emit('hello', name);
        socket.on('echo', (message: unknown, ack: (reply: unknown) => void) => ack({ server: name, message, transport: socket.conn.transport.name }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return { name, io, server, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` };
    }),
  );
  const mux = await startMux({
    frontends: [
      {
        name: 'fe',
        listen: ['127.0.0.1:0'],
        rules: [{ if: { path: { prefix: '/socket.io' } }, use: 'socket_io' }],
      },
    ],
    backends: [
      {
        name: 'socket_io',
        mode: 'http',
        balance: 'roundrobin',
        http: { forwardedFor: true, stickyCookie: 'SERVERID' },
        servers: servers.map((s) => ({ name: s.name, address: s.address })),
      },
    ],
  });
  t.teardown(async () => {
    await mux.stop();
    for (const s of servers) {
      await new Promise((r) => s.io.close(r));
      s.server.closeAllConnections();
    }
  });
  return { mux, url: `http://127.0.0.1:${mux.port('fe')}`, hits };
}

function connected(socket: ClientSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('hello', (name: string) => resolve(name));
    socket.once('connect_error', reject);
  });
}

function echo(socket: ClientSocket, message: unknown): Promise<{ server: string; message: unknown; transport: string }> {
  return socket.timeout(5000).emitWithAck('echo', message);
}

t.test('transports: [websocket] — emits and acks round-trip', async (t) => {
  const { url } = await setup(t);
  const sockets = [0, 1, 2].map(() => connectIo(url, { transports: ['websocket'], reconnection: false, forceNew: true }));
  t.teardown(() => sockets.forEach((s) => s.disconnect()));
  const names = await Promise.all(sockets.map(connected));
  t.same([...names].sort(), [...NAMES].sort(), 'round-robin spread the three sockets over the three servers');
  for (const [i, socket] of sockets.entries()) {
    const reply = await echo(socket, { n: i, text: 'héllo' });
    t.same(reply, { server: names[i], message: { n: i, text: 'héllo' }, transport: 'websocket' });
  }
});

t.test('default transports (polling, then upgrade) with the sticky cookie', async (t) => {
  const { url, mux } = await setup(t);
  const sockets = [0, 1, 2, 3].map(() => connectIo(url, { withCredentials: true, reconnection: false, forceNew: true }));
  t.teardown(() => sockets.forEach((s) => s.disconnect()));
  const names = await Promise.all(sockets.map(connected));
  t.equal(new Set(names).size, 3, 'the sessions are spread over the three servers');
  // Polling until the upgrade: every request of a session must reach its server, or the session is lost.
  for (const [i, socket] of sockets.entries()) {
    const early = await echo(socket, `early ${i}`);
    t.equal(early.server, names[i], `socket ${i}: an early ack (${early.transport}) from its own server`);
  }
  await Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.io.engine.transport.name === 'websocket') return resolve();
          socket.io.engine.once('upgrade', () => resolve());
        }),
    ),
  );
  for (const [i, socket] of sockets.entries()) {
    t.equal(socket.io.engine.transport.name, 'websocket', `socket ${i} upgraded to WebSocket`);
    const reply = await echo(socket, { after: 'upgrade', i });
    t.same(reply, { server: names[i], message: { after: 'upgrade', i }, transport: 'websocket' }, `socket ${i}: acks after the upgrade, same server`);
  }
  const lines = mux.logs.filter((l) => l.msg === 'request refused');
  t.same(lines, [], 'nothing was refused');
});

t.test('transports: [polling] only — every poll and post sticks to the session\'s server', async (t) => {
  const { url, hits } = await setup(t);
  const socket = connectIo(url, { transports: ['polling'], withCredentials: true, reconnection: false, forceNew: true });
  t.teardown(() => socket.disconnect());
  const name = await connected(socket);
  for (let i = 0; i < 5; i++) {
    const reply = await echo(socket, i);
    t.same(reply, { server: name, message: i, transport: 'polling' });
  }
  const busy = Object.entries(hits).filter(([, n]) => n > 0).map(([server]) => server);
  t.same(busy, [name], 'only that server saw HTTP requests');
});

t.test('without the cookie jar, polling is balanced away from its session and fails', async (t) => {
  const { url } = await setup(t);
  const socket = connectIo(url, { reconnection: false, forceNew: true, timeout: 3000 });
  t.teardown(() => socket.disconnect());
  const outcome = await new Promise<string>((resolve) => {
    socket.once('connect_error', (error: Error) => resolve(`connect_error: ${error.message}`));
    socket.once('disconnect', (reason: string) => resolve(`disconnect: ${reason}`));
    socket.once('hello', () => {
      // The CONNECT may land on the right server by luck; the next polls cannot all do so.
      socket.timeout(2000).emit('echo', 'x', (err: Error | null) => resolve(err ? `ack failed: ${err.message}` : 'ok'));
    });
  });
  t.not(outcome, 'ok', `stickiness is what makes polling work (${outcome})`);
});
