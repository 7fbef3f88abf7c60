import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * A full garbage collection once the process goes quiet after a burst of new
 * connections. Every short-lived connection leaves its sockets, buffers and
 * parser state behind as garbage, and V8 (which Node gives no idle time)
 * collects old-generation garbage only when it needs room, so after a burst
 * an idle process kept about as much garbage as live data: RSS per held
 * connection twice what it needs (bench/results). One collection when new
 * connections stop costs a pause (tens of ms for a heap of 100 MB) at a
 * moment nobody is waiting for an accept.
 */

/** New connections since the last collection before a quiet spell is worth one. */
export const BURST = 1000;
/** A spell this long without a new connection is quiet. */
export const QUIET_MS = 1000;

export class IdleCollector {
  private since = 0;
  private seen = 0;
  private timer: NodeJS.Timeout | null = null;

  private readonly collect: (() => void) | null;
  private readonly burst: number;
  private readonly quietMs: number;
  private readonly busy: () => boolean;

  constructor(
    options: {
      collect?: (() => void) | null;
      burst?: number;
      quietMs?: number;
      /** Not now (connections still sniffing: a pause longer than their inspect delay would decide them blind). */
      busy?: () => boolean;
    } = {},
  ) {
    this.collect = options.collect === undefined ? fullCollection() : options.collect;
    this.burst = options.burst ?? BURST;
    this.quietMs = options.quietMs ?? QUIET_MS;
    this.busy = options.busy ?? (() => false);
  }

  /** Counted on every accepted connection: one increment, a timer only once a burst has been seen. */
  accepted(): void {
    if (++this.since >= this.burst && this.timer === null && this.collect !== null) {
      this.seen = this.since;
      this.timer = setTimeout(IdleCollector.check, this.quietMs, this);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private static check(self: IdleCollector): void {
    self.timer = null;
    if (self.since !== self.seen || self.busy()) {
      // Still busy: look again after another spell.
      self.seen = self.since;
      self.timer = setTimeout(IdleCollector.check, self.quietMs, self);
      self.timer.unref();
      return;
    }
    self.since = 0;
    self.collect!();
  }
}

/** V8's full collection, exposed at run time (Node has no API for it); null if V8 refuses. */
export function fullCollection(): (() => void) | null {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}
