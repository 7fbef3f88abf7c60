/**
 * Where newly accepted connections wait, unread, before sniffmux starts on
 * them, so that a burst does not queue a real client behind all of it.
 *
 * libuv accepts one connection per event-loop turn (libuv/libuv#3696), and
 * each turn also runs the I/O of every connection already started. A burst
 * that arrives faster than sniffmux serves it (a half-open flood costs it
 * about 1.5 ms of CPU a connection on 2 shared cores) piles up in the
 * kernel's accept queue, first come first served: a real client arriving
 * mid-burst waited there 0.5-2.5 s, while sniffmux's event loop never
 * stalled more than 0.2 s (bench/half-open-latency.ts measures it).
 *
 * So after starting a connection sniffmux leaves the next turn to libuv:
 * under a burst it accepts two connections for each it starts, about twice
 * as fast as before, and what it has accepted waits here, started
 * round-robin across client addresses, so that a client from another
 * address is started next instead of after the burst. A connection that
 * finds nothing started in the turn before is started in the turn it was
 * accepted.
 *
 * Yielding costs: a loop turn per connection, about a quarter of the
 * connection rate of a saturated process (bench: conn-raw, 2,070 against
 * 1,570 conn/s). It buys nothing while every connection comes from one
 * address (round-robin over one address is first come, first served), so
 * the turns are given up only while a burst comes from more than one
 * address; until then a connection with nobody waiting before it starts at
 * once. A real client stuck behind a one-address flood thus waits as it
 * would without fair start until it is accepted, and from then on the turns
 * are yielded.
 */
import { performance } from 'node:perf_hooks';
import type net from 'node:net';

/**
 * Turns after a start in which nothing else is started (libuv accepts one
 * connection in each). More did not help: those turns still run the I/O of
 * the connections already started.
 */
const YIELD_TURNS = 1;
/** How long after two addresses arrived one after the other the turns are still yielded. */
const MIXED_MS = 200;

/**
 * A connection waiting its turn: a net.Socket (its errors ignored meanwhile,
 * dropped if it fails), or none for a client the native thread holds, its
 * first bytes told already, which needs no watching from here.
 */
interface Waiting<T> {
  socket: net.Socket | null;
  item: T;
}

export class FairStart<T> {
  /** Waiting connections by client address; the Map's order is the round-robin order. */
  private readonly bySource = new Map<string, Waiting<T>[]>();
  private waiting = 0;
  private scheduled = false;
  /** Turns still left to libuv for accepting after the last start. */
  private yieldTurns = 0;

  constructor(private readonly start: (socket: net.Socket | null, item: T) => void) {}

  /** The address of the latest arrival, and until when arrivals count as coming from several addresses. */
  private lastSource = '';
  private mixedUntil = 0;

  /**
   * Called for each arrival: true when it may start at once (nothing waits
   * before it, and arrivals lately came from this one address), false when it
   * must take its turn through push().
   */
  startsNow(source: string): boolean {
    const now = performance.now();
    // No address (the client left before it was asked for one) is not another address.
    if (source !== this.lastSource && source !== '') {
      if (this.lastSource !== '') this.mixedUntil = now + MIXED_MS;
      this.lastSource = source;
    }
    return this.waiting === 0 && !this.scheduled && now >= this.mixedUntil;
  }

  /** Connections waiting now. */
  get size(): number {
    return this.waiting;
  }

  push(source: string, socket: net.Socket | null, item: T): void {
    let queue = this.bySource.get(source);
    if (!queue) {
      queue = [];
      this.bySource.set(source, queue);
    }
    queue.push({ socket, item });
    this.waiting++;
    socket?.on('error', ignoreError);
    this.schedule();
  }

  /** Starts every waiting connection now, in round-robin order (a shutdown: each then drains like the others). */
  flush(): void {
    while (this.waiting > 0) {
      const next = this.take();
      if (!next.socket?.destroyed) this.start(next.socket, next.item);
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  /** The first waiting connection of the address whose turn it is; that address goes to the back of the round. */
  private take(): Waiting<T> {
    const [source, queue] = this.bySource.entries().next().value as [string, Waiting<T>[]];
    const next = queue.shift()!;
    this.waiting--;
    this.bySource.delete(source);
    if (queue.length > 0) this.bySource.set(source, queue);
    next.socket?.removeListener('error', ignoreError);
    return next;
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    if (this.waiting === 0) {
      this.yieldTurns = 0;
      return;
    }
    if (this.yieldTurns > 0) {
      this.yieldTurns--;
      return this.schedule();
    }
    let next = this.take();
    // Clients that left while waiting are dropped without costing a turn.
    while (next.socket?.destroyed && this.waiting > 0) next = this.take();
    if (next.socket?.destroyed) return;
    this.start(next.socket, next.item);
    // The next turns are libuv's to accept in; if nothing arrives meanwhile, the next arrival starts at once.
    this.yieldTurns = YIELD_TURNS;
    this.schedule();
  };
}

function ignoreError(): void {
  // A waiting connection that fails is dropped when its turn comes.
}

