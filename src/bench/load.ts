/**
 * The built-in load generator: bulk streams, connection churn, keep-alive
 * ping-pong with latency, held idle connections. Loopback only, bounded in
 * time; callback-driven so that the generator itself stays cheap.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  CHUNK,
  CLIENT_HELLO,
  HOLD_HEADER,
  HTTP_CLOSE_REQUEST,
  HTTP_CLOSE_RESPONSE,
  HTTP_KEEPALIVE_REQUEST,
  HTTP_KEEPALIVE_RESPONSE,
  POLICY_REQUEST,
  RAW_REQUEST,
  RAW_RESPONSE,
  SINK_HEADER,
  SOURCE_HEADER,
  TLS_REPLY,
  WS_CLOSE,
  WS_CLOSE_REPLY,
  WS_ECHOES,
  WS_FRAME,
  WS_UPGRADE_REQUEST,
  WS_UPGRADE_RESPONSE,
} from './protocol.js';

const HOST = '127.0.0.1';

function connect(port: number, localAddress?: string): net.Socket {
  return net.connect({ host: HOST, port, noDelay: true, localAddress });
}

/**
 * Client addresses of the many-address scenarios: real clients come from
 * many, and a proxy may treat the arrivals of several addresses otherwise
 * than one's (sniffmux's fair start does). All of 127.0.0.0/8 is loopback.
 */
export const CLIENT_ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 1}`);

// ---- bulk throughput ---------------------------------------------------------

export interface BulkResult {
  /** Bits per second over all streams. */
  readonly bitsPerSecond: number;
  readonly bytes: number;
  readonly errors: number;
}

/**
 * `streams` connections moving 64 KiB chunks for `durationMs`, measured
 * after a warm-up of a tenth of the duration. client-to-server: the sink
 * acknowledges every SINK_ACK_BYTES it received (so bytes still in buffers
 * are never counted, and no half-close is needed, which nginx stream and sslh
 * do not pass on); server-to-client: the client counts what it received.
 */
export async function bulk(port: number, streams: number, direction: 'c2s' | 's2c', durationMs: number): Promise<BulkResult> {
  const runs = Array.from({ length: streams }, () => (direction === 'c2s' ? sendStream(port, durationMs) : receiveStream(port, durationMs)));
  const results = await Promise.all(runs);
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  const seconds = Math.max(...results.map((r) => r.seconds));
  const errors = results.filter((r) => r.error).length;
  return { bitsPerSecond: seconds > 0 ? (bytes * 8) / seconds : 0, bytes, errors };
}

interface StreamResult {
  bytes: number;
  seconds: number;
  error: boolean;
}

function sendStream(port: number, durationMs: number): Promise<StreamResult> {
  return new Promise((resolve) => {
    const socket = connect(port);
    let stopping = false;
    let pending: Buffer = Buffer.alloc(0);
    let warm: { at: number; count: number } | null = null;
    let last: { at: number; count: number } | null = null;
    let warmNow = false;
    let done = false;
    const finish = (error: boolean): void => {
      if (done) return;
      done = true;
      stopping = true;
      clearTimeout(warmTimer);
      clearTimeout(endTimer);
      socket.resetAndDestroy();
      if (!warm || !last || last.at === warm.at) return resolve({ bytes: 0, seconds: 0, error: true });
      resolve({ bytes: last.count - warm.count, seconds: (last.at - warm.at) / 1000, error });
    };
    const warmTimer = setTimeout(() => (warmNow = true), durationMs * 0.1);
    const endTimer = setTimeout(() => finish(false), durationMs);
    const pump = (): void => {
      while (!stopping && socket.write(CHUNK));
    };
    socket.once('connect', () => {
      socket.write(SINK_HEADER);
      pump();
    });
    socket.on('drain', pump);
    socket.on('data', (d: Buffer) => {
      pending = pending.length === 0 ? d : Buffer.concat([pending, d]);
      while (pending.length >= 8) {
        const ack = { at: performance.now(), count: Number(pending.readBigUInt64BE(0)) };
        pending = pending.subarray(8);
        if (warm === null && warmNow) warm = ack;
        last = ack;
      }
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

function receiveStream(port: number, durationMs: number): Promise<StreamResult> {
  return new Promise((resolve) => {
    const socket = connect(port);
    let received = 0;
    let atWarm = 0;
    let warmAt = 0;
    let done = false;
    const finish = (error: boolean): void => {
      if (done) return;
      done = true;
      const bytes = received - atWarm;
      const seconds = warmAt ? (performance.now() - warmAt) / 1000 : 0;
      socket.resetAndDestroy();
      resolve({ bytes, seconds, error });
    };
    socket.once('connect', () => {
      socket.write(SOURCE_HEADER);
      setTimeout(() => {
        atWarm = received;
        warmAt = performance.now();
        setTimeout(() => finish(false), durationMs * 0.9);
      }, durationMs * 0.1);
    });
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(!done));
  });
}

// ---- connection churn ----------------------------------------------------------

/** One short-lived connection: resolves true when the expected answer arrived and the server closed. */
export type Exchange = (port: number, done: (ok: boolean) => void) => void;

/**
 * Sends `request`, expects exactly `response` (or, with `expectNulEnd`, anything ending in NUL) then the server's close;
 * from each of `from` in turn when given.
 */
function oneShot(request: Buffer, response: Buffer | 'ends-with-nul', from: readonly string[] = []): Exchange {
  let next = 0;
  return (port, done) => {
    const socket = connect(port, from.length > 0 ? from[next++ % from.length] : undefined);
    let received = 0;
    let last = -1;
    let finished = false;
    const finish = (ok: boolean): void => {
      if (finished) return;
      finished = true;
      done(ok);
    };
    socket.once('connect', () => socket.write(request));
    socket.on('data', (d: Buffer) => {
      received += d.length;
      last = d[d.length - 1]!;
    });
    socket.on('error', () => {
      socket.destroy();
      finish(false);
    });
    socket.on('close', () => finish(response === 'ends-with-nul' ? received > 0 && last === 0 : received === response.length));
  };
}

export const httpClose: Exchange = oneShot(HTTP_CLOSE_REQUEST, HTTP_CLOSE_RESPONSE);
export const tlsHello: Exchange = oneShot(CLIENT_HELLO, TLS_REPLY);
export const rawReply: Exchange = oneShot(RAW_REQUEST, RAW_RESPONSE);
export const rawReplyFromMany: Exchange = oneShot(RAW_REQUEST, RAW_RESPONSE, CLIENT_ADDRESSES);
/** The policy answer comes from the proxy itself (sniffmux) or from the backend (peers): any document ending in NUL. */
export const policyRequest: Exchange = oneShot(POLICY_REQUEST, 'ends-with-nul');

/** Upgrade, WS_ECHOES echoed frames, close handshake (the server closes). */
export const websocket: Exchange = (port, done) => {
  const socket = connect(port);
  let stage = 0; // 0 = upgrade, 1..WS_ECHOES = echoes, WS_ECHOES+1 = close
  let pending = WS_UPGRADE_RESPONSE.length;
  let finished = false;
  const finish = (ok: boolean): void => {
    if (finished) return;
    finished = true;
    done(ok);
  };
  const next = (): void => {
    stage++;
    if (stage <= WS_ECHOES) {
      pending = WS_FRAME.length;
      socket.write(WS_FRAME);
    } else {
      pending = WS_CLOSE_REPLY.length;
      socket.write(WS_CLOSE);
    }
  };
  socket.once('connect', () => socket.write(WS_UPGRADE_REQUEST));
  socket.on('data', (d: Buffer) => {
    pending -= d.length;
    if (pending === 0 && stage <= WS_ECHOES) next();
  });
  socket.on('error', () => {
    socket.destroy();
    finish(false);
  });
  socket.on('close', () => finish(stage === WS_ECHOES + 1 && pending === 0));
};

export interface ChurnResult {
  /** Completed exchanges per second. */
  readonly perSecond: number;
  readonly completed: number;
  readonly errors: number;
  /** Completed exchanges by kind (mixed load). */
  readonly byKind: Record<string, number>;
}

/**
 * `concurrency` loops, each running exchanges back to back for `durationMs`
 * (loop i runs kinds[i % kinds.length]). Only exchanges that complete within
 * the window count.
 */
export function churn(
  port: number,
  concurrency: number,
  durationMs: number,
  kinds: readonly { readonly name: string; readonly exchange: Exchange }[],
): Promise<ChurnResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const deadline = started + durationMs;
    let completed = 0;
    let errors = 0;
    let running = concurrency;
    const byKind: Record<string, number> = Object.fromEntries(kinds.map((k) => [k.name, 0]));
    const loop = (kind: { readonly name: string; readonly exchange: Exchange }): void => {
      const onDone = (ok: boolean): void => {
        const now = performance.now();
        if (now <= deadline) {
          if (ok) {
            completed++;
            byKind[kind.name]!++;
          } else errors++;
        }
        if (now < deadline) {
          if (ok) kind.exchange(port, onDone);
          else setTimeout(() => kind.exchange(port, onDone), 5); // back off after a failure (no port, reset…)
        } else if (--running === 0) {
          const seconds = durationMs / 1000;
          resolve({ perSecond: completed / seconds, completed, errors, byKind });
        }
      };
      kind.exchange(port, onDone);
    };
    for (let i = 0; i < concurrency; i++) loop(kinds[i % kinds.length]!);
  });
}

// ---- ping-pong latency ------------------------------------------------------------

export interface PingPongResult {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly samples: number;
  readonly errors: number;
}

/**
 * `clients` kept-alive HTTP connections, each sending a request as soon as
 * the previous response arrived, for `durationMs` after a first request (the
 * one that gets the connection sniffed, routed and spliced; not timed).
 */
export function pingPong(port: number, clients: number, durationMs: number): Promise<PingPongResult> {
  return new Promise((resolve) => {
    let latencies = new Float64Array(1 << 16);
    let count = 0;
    let errors = 0;
    let ready = 0;
    let closed = 0;
    let deadline = Infinity;
    let started = 0;
    const record = (ms: number): void => {
      if (count === latencies.length) {
        const bigger = new Float64Array(latencies.length * 2);
        bigger.set(latencies);
        latencies = bigger;
      }
      latencies[count++] = ms;
    };
    const finish = (): void => {
      const sorted = latencies.subarray(0, count).sort();
      const pick = (q: number): number => (count === 0 ? 0 : sorted[Math.min(count - 1, Math.floor(q * count))]!);
      resolve({ perSecond: count / (durationMs / 1000), p50Ms: pick(0.5), p99Ms: pick(0.99), samples: count, errors });
    };
    const starters: (() => void)[] = [];
    const startTimed = (): void => {
      started = performance.now();
      deadline = started + durationMs;
      for (const start of starters) start();
    };
    for (let i = 0; i < clients; i++) {
      const s = connect(port);
      let pending = HTTP_KEEPALIVE_RESPONSE.length;
      let warm = false;
      let sentAt = 0;
      const send = (): void => {
        sentAt = performance.now();
        s.write(HTTP_KEEPALIVE_REQUEST);
      };
      starters.push(() => {
        if (!s.destroyed) send();
      });
      s.once('connect', () => s.write(HTTP_KEEPALIVE_REQUEST));
      s.on('data', (d: Buffer) => {
        pending -= d.length;
        if (pending > 0) return;
        if (pending < 0) {
          errors++;
          return s.resetAndDestroy();
        }
        pending = HTTP_KEEPALIVE_RESPONSE.length;
        const now = performance.now();
        if (!warm) {
          warm = true;
          if (++ready === clients) startTimed();
          return;
        }
        if (now <= deadline) record(now - sentAt);
        if (now < deadline) send();
        else s.resetAndDestroy();
      });
      s.on('error', () => {
        errors++;
      });
      s.on('close', () => {
        if (!warm && ++ready === clients) startTimed();
        if (++closed === clients) finish();
      });
    }
  });
}

// ---- held idle connections ------------------------------------------------------------

export interface HeldConnections {
  readonly held: number;
  readonly failed: number;
  /** Makes the server close every held connection first (no TIME_WAIT on the client's ports); resolves when all are closed. */
  release(): Promise<void>;
}

/**
 * Opens `count` connections (at most `parallel` connecting at once), each
 * sending the hold command; a connection counts once the server's 'h' came
 * back through the proxy, i.e. it is spliced end to end.
 */
export function hold(port: number, count: number, parallel = 256, onProgress?: (held: number) => void): Promise<HeldConnections> {
  return new Promise((resolveAll) => {
    const sockets: net.Socket[] = [];
    let started = 0;
    let held = 0;
    let failed = 0;
    let settled = 0;
    const release = async (): Promise<void> => {
      const open = sockets.filter((s) => !s.destroyed);
      await new Promise<void>((resolve) => {
        let left = open.length;
        if (left === 0) return resolve();
        const timer = setTimeout(() => {
          for (const s of open) s.destroy();
        }, 15_000);
        for (const s of open) {
          s.once('close', () => {
            if (--left === 0) {
              clearTimeout(timer);
              resolve();
            }
          });
          s.write('x');
        }
      });
    };
    const openOne = (): void => {
      if (started >= count) return;
      started++;
      const s = connect(port);
      let counted = false;
      s.once('connect', () => s.write(HOLD_HEADER));
      s.once('data', () => {
        counted = true;
        sockets.push(s);
        held++;
        onProgress?.(held);
        done();
      });
      s.on('error', () => {});
      s.on('close', () => {
        if (!counted) {
          counted = true;
          failed++;
          done();
        }
      });
    };
    const done = (): void => {
      settled++;
      if (settled === count) resolveAll({ held, failed, release });
      else openOne();
    };
    for (let i = 0; i < Math.min(parallel, count); i++) openOne();
  });
}
