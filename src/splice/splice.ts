import type net from 'node:net';

/**
 * Splices two sockets both ways once a connection is routed: each side's
 * bytes are written to the other, a `false` from write() pauses the reader
 * until the writer drains (so at most one socket buffer per direction is held
 * whatever the peers' speeds), and each side's FIN is passed on (half-close).
 *
 * This is what `a.pipe(b); b.pipe(a)` does, without pipe()'s per-stream
 * closures and listener arrays: the handlers are module-level functions that
 * find the other socket through a symbol, so a spliced connection costs two
 * properties instead of a dozen closures (see bench/results).
 */
const kPeer = Symbol('sniffmux.splicePeer');

type Spliced = net.Socket & { [kPeer]?: net.Socket };

export function splice(a: net.Socket, b: net.Socket): void {
  (a as Spliced)[kPeer] = b;
  (b as Spliced)[kPeer] = a;
  a.on('data', onData);
  b.on('data', onData);
  a.on('drain', onDrain);
  b.on('drain', onDrain);
  a.on('end', onEnd);
  b.on('end', onEnd);
  a.resume();
  b.resume();
  // A side that finished sending before the splice (a client FIN while sniffing) is passed on now.
  if (a.readableEnded) onEnd.call(a as Spliced);
  if (b.readableEnded) onEnd.call(b as Spliced);
}

function onData(this: Spliced, chunk: Buffer): void {
  const peer = this[kPeer]!;
  if (!peer.write(chunk)) this.pause();
}

/** The writer drained: its peer may read again. */
function onDrain(this: Spliced): void {
  const peer = this[kPeer]!;
  if (!peer.destroyed) peer.resume();
}

/** FIN from one side becomes FIN to the other, once what it sent is written. */
function onEnd(this: Spliced): void {
  const peer = this[kPeer]!;
  if (!peer.writableEnded) peer.end();
}
