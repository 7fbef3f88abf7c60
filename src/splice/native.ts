import { closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';

/**
 * Zero-copy Linux fast path for a routed connection: a small N-API addon
 * (src/splice/native/splice.c) takes over both sockets' fds and moves bytes
 * with splice(2) through pipes in one native thread, so JavaScript is out of
 * the data path and the JS socket objects are freed. When the addon is not
 * available, `nativeSpliceUnavailable` says why and callers use the
 * JavaScript splice (./splice.ts).
 */

export interface NativeSpliceResult {
  /** bytes moved by the native loop from a to b, and from b to a (not counting what JS moved before adopt). */
  aToB: number;
  bToA: number;
  /** why it ended: both sides finished (FIN both ways, everything delivered), an error/reset on one side, idle timeout on one side, or abort() */
  end: 'done' | 'a-error' | 'b-error' | 'a-timeout' | 'b-timeout' | 'aborted';
  /** which side sent its FIN (or failed) first, null if aborted before either */
  firstEnd: 'a' | 'b' | null;
  /** e.g. 'ECONNRESET' for *-error */
  error?: string;
  /**
   * How many of aToB (bToA) were bytes JS had already read from a (b) before
   * adopt (readableLength at the hand-over), so already counted in
   * a.bytesRead (b.bytesRead). Bytes received from a in all:
   * a.bytesRead + aToB - bufferedAToB; sent to a: a.bytesWritten + bToA.
   */
  bufferedAToB: number;
  bufferedBToA: number;
  /** The connection's bytes in all, JS's before the hand-over and the loop's after (as counters() gave them last). */
  bytes: NativeSpliceBytes;
}

/** Bytes of an adopted connection, from its JS sockets' start on. */
export interface NativeSpliceBytes {
  /** received from a (b): bytesRead of the JS socket at the hand-over plus what the loop read since */
  fromA: number;
  fromB: number;
  /** sent to a (b): bytesWritten of the JS socket at the hand-over plus what the loop delivered since */
  toA: number;
  toB: number;
}

export interface NativeSpliceCounters extends NativeSpliceBytes {
  /** bytes held for the connection in userland now: the JS sockets' buffers while flushing, then the addon's own (pre-buffers, recv()/send() tails) */
  heldUserland: number;
  /** bytes in the loop's pipes now (kernel memory the proxy holds for the connection, beyond the sockets' buffers) */
  heldInPipes: number;
}

export interface NativeSplice {
  abort(): void;
  /** Live figures (read from the native thread without locking: a recent value while bytes move). */
  counters(): NativeSpliceCounters;
}

interface Binding {
  start(onBatch: (batch: Float64Array, peeked: Buffer[] | undefined, accepted: Array<object | string> | undefined) => void): void;
  /** The thread accepts the clients of a listening socket (a dup of fd): each told as END_ACCEPTED, a front conn of its own. */
  listen(fd: number, id: number, peekMax: number): object;
  /** A front conn taken back (as abort, the descriptor left open); one the thread accepted leaves its epoll set at once. */
  release(handle: object): void;
  /** A socket JS accepted waits in the thread for its first bytes (told unread, END_PEEKED); fd stays JS's. */
  front(fd: number, id: number, peekMax: number): object;
  /** The same socket, its bytes already peeked and sniffed by JS: connected at once as frontConnect does (nothing is peeked). */
  front(fd: number, id: number, peekMax: number, host: string, port: number, preA: Buffer | null, idleMs: number): object;
  /** The same socket answered with no server: reply, a FIN, the client's bytes dropped until its FIN; told as a splice's end. */
  answer(fd: number, id: number, reply: Buffer, idleMs: number): object;
  /** Its first bytes, read without taking them: null when none have come, empty at end of file; throws when the socket has failed. */
  peek(fd: number, max: number): Buffer | null;
  /** Connects a front conn and splices it once connected (as a connect with fdA). */
  frontConnect(handle: object, host: string, port: number, preA: Buffer | null, idleMs: number): void;
  adopt(fdA: number, fdB: number, preA: Buffer | null, preB: Buffer | null, flags: number, idleMs: number, id: number): object;
  /** [fd, handle]: a non-blocking connect to a numeric address; its end comes in a batch (END connected / connect-failed) */
  connect(host: string, port: number, id: number): [number, object];
  /** The same connect, spliced with a dup of fdA as soon as it is established: END connected, then the splice's end; or its failure. */
  connect(host: string, port: number, id: number, fdA: number, preA: Buffer | null, flags: number, idleMs: number): [number, object];
  /** ifConnecting: only a connect still in flight (a splice that has connected goes on) */
  abort(handle: object, ifConnecting?: boolean): void;
  /** [readA, readB, aToB, bToA, unsentAToB, unsentBToA, inPipeAToB, inPipeBToA] */
  counters(handle: object): number[];
  stats(): NativeSpliceStats;
  connSize: number;
  /** Clients the thread accepts before JS is told of them, at most: descriptors outside JS's count. */
  acceptWindow: number;
  /** The pipes the thread allows itself (in use and pooled) under this open-file limit: two descriptors each. */
  pipeLimit(nofile: number): number;
}

/** Counters of the native thread (read without locking: approximate while busy). */
export interface NativeSpliceStats {
  /** adopted connections whose spliceDone has not run yet */
  live: number;
  /** pipes held by a direction with bytes in flight */
  pipesInUse: number;
  /** idle pipes kept for reuse */
  pipesPooled: number;
  pipesCreated: number;
  /** chunks that went through recv()/send() because no pipe could be had */
  fallbackChunks: number;
  /** chunks copied with recv()/send() because they were small: a direction is spliced from its first read of a full 16 KiB on */
  smallChunks: number;
  /** pipes not created because pipesMax (a sixteenth of the open-file limit, at most 256) exist already */
  pipesRefused: number;
  pipesMax: number;
}

const ADDON = 'sniffmux_splice.node';

function load(): { binding: Binding | null; why: string | null } {
  if (process.platform !== 'linux') return { binding: null, why: `not Linux (platform ${process.platform})` };
  if (process.env.SNIFFMUX_NATIVE_SPLICE === '0') return { binding: null, why: 'disabled by SNIFFMUX_NATIVE_SPLICE=0' };
  // From src/splice/ and from dist/splice/ (the addon is built in the source tree).
  const candidates = [
    new URL(`./native/build/Release/${ADDON}`, import.meta.url),
    new URL(`../../src/splice/native/build/Release/${ADDON}`, import.meta.url),
  ].map((u) => fileURLToPath(u));
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const file of new Set(candidates)) {
    if (!existsSync(file)) continue;
    try {
      return { binding: require(file) as Binding, why: null };
    } catch (err) {
      errors.push(`${file}: ${(err as Error).message}`);
    }
  }
  if (errors.length > 0) return { binding: null, why: `addon failed to load: ${errors.join('; ')}` };
  return {
    binding: null,
    why: `addon not built (no ${candidates[0]}; run npm install, or npx node-gyp rebuild --directory=src/splice/native)`,
  };
}

const loaded = load();
const binding = loaded.binding;

/** null when available; otherwise why not (not Linux, addon not built, load error text). */
export const nativeSpliceUnavailable: string | null = loaded.why;

/** Connections that may connect through the thread at once from JS's path (connectThenSplice), each holding a dup of its client meanwhile. */
export const nativeConnectDups = 16;

/**
 * Descriptors the native thread may hold under this open-file limit that no
 * count of served or waiting connections sees (0 without the addon): its
 * pipes, the dups of clients connecting through it, and, when it accepts
 * (`accepting`), the clients it has not told JS of yet. The descriptor
 * budget keeps them free.
 */
export function nativeDescriptorReserve(nofile: number, accepting: boolean): number {
  if (!binding) return 0;
  return 2 * binding.pipeLimit(nofile) + nativeConnectDups + (accepting ? binding.acceptWindow : 0);
}

/** sizeof the native per-connection struct, in bytes (0 when unavailable). */
export const nativeConnSize: number = binding?.connSize ?? 0;

export function nativeSpliceStats(): NativeSpliceStats | null {
  return binding ? binding.stats() : null;
}

const END = ['done', 'a-error', 'b-error', 'a-timeout', 'b-timeout', 'aborted'] as const;
/** End codes of a native connect (after END's), see connect_done in splice.c. */
const END_ABORTED = 5;
const END_CONNECTED = 6;
const END_PEEKED = 8;
const END_ACCEPTED = 9;
const END_ACCEPT_FAILED = 10;
const F_A_EOF = 1;
const F_B_EOF = 2;
const F_A_WR_SHUT = 4;
const F_B_WR_SHUT = 8;
/** fdB is a connection nativeConnect made: the loop takes it as it is, no dup. */
const F_B_OWNED = 16;
/** The longest a Node timer takes (a longer one fires at once). */
const TIMER_MAX = 2 ** 31 - 1;
/** Fields per connection in a batch of completions, see call_js in splice.c. */
const BATCH_FIELDS = 10;

const live = new Map<number, Adoption | FrontJob | NativeListener>();
const connecting = new Map<number, PendingConnect>();
let nextId = 1;
let startError: string | null | undefined;

/**
 * Starts the native thread (once): null when it runs, else why it cannot
 * (the addon is unavailable, or epoll/eventfd/the thread could not be had,
 * e.g. out of descriptors). A failed start is tried again on the next call.
 */
export function startNativeSplice(): string | null {
  if (binding === null) return nativeSpliceUnavailable;
  if (startError === null) return null;
  try {
    binding.start(onBatch);
    startError = null;
  } catch (err) {
    startError = `the native splice thread could not start: ${(err as Error).message}`;
  }
  return startError;
}

/** One call per batch of completions from the native thread: [id, end, first, aToB, bToA, errno, preLeftA, preLeftB, readA, readB]*. */
function onBatch(batch: Float64Array, peeked: Buffer[] | undefined, accepted: Array<object | string> | undefined): void {
  const done: Array<[Adoption, NativeSpliceResult]> = [];
  // front() jobs, each notice in the order told
  const fronts: Array<() => void> = [];
  let nextPeeked = 0;
  let nextAccepted = 0;
  const connected: Array<[PendingConnect, number, number]> = [];
  // connectThenSplice jobs: connected (now spliced), or failed with this errno
  const spliced: Adoption[] = [];
  const failed: Array<[Adoption, number, number]> = [];
  // First mark every handle of the batch done, so a spliceDone that aborts
  // another connection of the same batch is a no-op.
  for (let i = 0; i + BATCH_FIELDS - 1 < batch.length; i += BATCH_FIELDS) {
    const pending = connecting.get(batch[i]!);
    if (pending) {
      connecting.delete(batch[i]!);
      pending.handle = null;
      connected.push([pending, batch[i + 1]!, batch[i + 5]!]);
      continue;
    }
    if (batch[i + 1] === END_ACCEPTED) {
      // A client the thread accepted: [id, END_ACCEPTED, listenerId, fd, port, peeked, eof, errno, ageMs]
      const listener = live.get(batch[i + 2]!) as NativeListener | undefined;
      const job = new FrontJob(batch[i]!, accepted![nextAccepted++] as object, null);
      const address = accepted![nextAccepted++] as string;
      const first = batch[i + 5] === 1 ? peeked![nextPeeked++]! : null;
      live.set(job.id, job);
      const client: AcceptedClient = { job, fd: batch[i + 3]!, address, port: batch[i + 4]!, first, eof: batch[i + 6] === 1, errno: batch[i + 7]!, ageMs: batch[i + 8]! };
      fronts.push(() => (listener ? listener.accepted(client) : orphaned(client)));
      continue;
    }
    const job = live.get(batch[i]!);
    if (!job) continue;
    if (job instanceof NativeListener) {
      const errno = batch[i + 5]!;
      if (batch[i + 1] === END_ACCEPT_FAILED) fronts.push(() => job.acceptFailed(errno));
      // known until told, so that the clients it accepted before it closed (later in this batch) find it
      else fronts.push(() => job.closed());
      continue;
    }
    if (job instanceof FrontJob) {
      const end = batch[i + 1]!;
      if (end === END_PEEKED) {
        const bytes = peeked![nextPeeked++]!;
        const eof = batch[i + 2] === 1;
        const errno = batch[i + 5]!;
        fronts.push(() => job.peeked(bytes, eof, errno));
        continue;
      }
      if (end === END_CONNECTED) {
        job.state = 'native';
        fronts.push(() => job.connected());
        continue;
      }
      live.delete(batch[i]!);
      job.handle = null;
      if (job.state === 'native') {
        const result = job.result(batch, i);
        fronts.push(() => job.finish(result));
      } else if (job.state === 'connecting') {
        const errno = connectErrno(end, batch[i + 5]!);
        fronts.push(() => job.connectFailed(errno));
      } else {
        job.state = 'done'; // taken back while peeking
      }
      continue;
    }
    if (job.connecting) {
      // Its connect ended: told in order, so the splice's own end (maybe later in this batch) finds it spliced.
      if (batch[i + 1] === END_CONNECTED) {
        job.connecting = false;
        spliced.push(job);
        continue;
      }
      live.delete(batch[i]!);
      job.handle = null;
      failed.push([job, batch[i + 1]!, batch[i + 5]!]);
      continue;
    }
    live.delete(batch[i]!);
    job.handle = null;
    const bytes = job.totals(batch[i + 8]!, batch[i + 9]!, batch[i + 3]!, batch[i + 4]!);
    done.push([job, resultAt(batch, i, bytes, job.bufferedSentToB(batch[i + 6]!), job.preB - batch[i + 7]!)]);
  }
  for (const [pending, end, errno] of connected) pending.settle(end, errno);
  for (const job of spliced) job.connected();
  for (const [job, end, errno] of failed) job.connectFailed(connectErrno(end, errno));
  for (const [job, result] of done) job.finish(result);
  for (const notice of fronts) notice();
}

/** A connect's failure errno from its end code: cancelled (aborted), or the thread's errno (EIO if it had none). */
function connectErrno(end: number, errno: number): number {
  return end === END_ABORTED ? 125 /* ECANCELED */ : errno || 5; /* EIO */
}

/** What the binding threw for a connect that failed at once, with Node's error shape when it carries an errno. */
function asConnectError(err: unknown, host: string, port: number): unknown {
  const errno = (err as { errno?: number }).errno;
  return typeof errno === 'number' && errno > 0 ? connectError(errno, host, port) : err;
}

/** The result of an ended splice, from its batch fields (i: its first), with the bytes as the job counts them. */
function resultAt(batch: Float64Array, i: number, bytes: NativeSpliceBytes, bufferedAToB: number, bufferedBToA: number): NativeSpliceResult {
  const end = END[batch[i + 1]!] ?? 'aborted';
  const first = batch[i + 2]!;
  const result: NativeSpliceResult = {
    aToB: batch[i + 3]!,
    bToA: batch[i + 4]!,
    end,
    firstEnd: first === 0 ? 'a' : first === 1 ? 'b' : null,
    bufferedAToB,
    bufferedBToA,
    bytes,
  };
  if ((end === 'a-error' || end === 'b-error') && batch[i + 5]) result.error = errnoName(batch[i + 5]!);
  return result;
}

/** The live counts of a conn the loop carries, added to what was counted before it took the conn (`base`). */
function loopCounters(handle: object, base: NativeSpliceBytes): NativeSpliceCounters {
  const [readA, readB, aToB, bToA, unsentAToB, unsentBToA, inPipeAToB, inPipeBToA] = binding!.counters(handle) as [
    number, number, number, number, number, number, number, number,
  ];
  return {
    fromA: base.fromA + readA,
    fromB: base.fromB + readB,
    toA: base.toA + bToA,
    toB: base.toB + aToB,
    heldUserland: unsentAToB + unsentBToA,
    heldInPipes: inPipeAToB + inPipeBToA,
  };
}

/** Tells the owner how its splice ended; what it throws surfaces as an ordinary uncaught exception, not in the native callback. */
function tellDone(owner: SpliceOwner, result: NativeSpliceResult): void {
  try {
    owner.spliceDone(result);
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

/** An error as Node's own connect gives it (`connect ECONNREFUSED 127.0.0.1:80`, code, errno, syscall). */
function connectError(errno: number, host: string, port: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const error: NodeJS.ErrnoException = new Error(`connect ${code} ${host}:${port}`);
  error.code = code;
  error.errno = -errno;
  error.syscall = 'connect';
  return error;
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

type Side = 'a' | 'b';

/** What the hand-over waits for on one socket before its fd can be taken. */
function settled(s: net.Socket): boolean {
  return !s.connecting && s.writableLength === 0 && (!s.writableEnded || s.writableFinished);
}

/** A FIN was received (even if 'end' has not been emitted yet). */
function finReceived(s: net.Socket): boolean {
  const state = (s as unknown as { _readableState?: { ended?: boolean } })._readableState;
  return s.readableEnded || state?.ended === true;
}

function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** Everything read into JS but not consumed, without handing it to any listener. */
function takeBuffered(s: net.Socket): Buffer | null {
  if (s.readableLength === 0) return null;
  const chunks: Buffer[] = [];
  let chunk: unknown;
  while ((chunk = s.read()) !== null) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return chunks.length === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function noop(): void {}

const NOTHING: NativeSpliceBytes = { fromA: 0, fromB: 0, toA: 0, toB: 0 };

class Adoption implements NativeSplice {
  /** the native conn while the native loop owns it; null before and after */
  handle: object | null = null;
  /** bytes handed to the native loop to send to b (a): the replay, then what JS had read from a (b) and not consumed */
  preA = 0;
  preB = 0;
  private state: 'flushing' | 'native' | 'done' = 'flushing';
  /** connectThenSplice: the thread is connecting to b (then splices by itself); a is still JS's socket, not read */
  connecting = false;
  /** connectThenSplice: what to put back into a if the connect fails */
  private unconnected: { buffered: Buffer | null; reading: boolean; host: string; port: number } | null = null;
  private readonly cleanups: Array<() => void> = [];
  /** the JS sockets' counts: live while flushing, frozen at the hand-over */
  private js: NativeSpliceBytes = NOTHING;
  /** the last result, for counters() once done */
  private final: NativeSpliceBytes | null = null;

  /** the JS sockets until the hand-over (then dropped, so they can be collected); no b when b is a descriptor nativeConnect made */
  private sockets: [a: net.Socket, b: net.Socket | null] | null;

  constructor(
    a: net.Socket,
    b: net.Socket | null,
    /** b's descriptor when there is no b socket: ours until the loop takes it (then -1) */
    private fdB: number,
    /** bytes to send to b before anything read from a (a sniffed connection's replay) */
    private readonly replay: Buffer | null,
    private readonly idleMs: number,
    private readonly owner: SpliceOwner,
    private readonly id: number,
  ) {
    this.sockets = [a, b];
  }

  /** How many of the pre-buffer bytes the loop sent to b were from a's JS buffer (not the replay). */
  bufferedSentToB(preLeft: number): number {
    return Math.max(0, this.preA - preLeft - (this.replay?.length ?? 0));
  }

  start(): void {
    const [a, b] = this.sockets!;
    for (const s of [a, b]) {
      if (s === null) continue;
      // Nothing else may see the bytes from here on; they go to the other side natively.
      s.removeAllListeners('data');
      s.removeAllListeners('readable');
      s.pause();
      while (s.writableCorked > 0) s.uncork(); // a corked write would never flush
      s.on('error', noop); // the socket is ours now: never an unhandled 'error'
    }
    // Nothing left to flush (the usual case, a routed connection nobody wrote to): hand over now, no watch needed.
    if ((a === null || settled(a)) && (b === null || settled(b))) return this.handOver();
    for (const [side, s] of [['a', a], ['b', b]] as const) {
      if (s === null) continue;
      const onError = (err: NodeJS.ErrnoException) => this.failBeforeNative(`${side}-error`, side, err.code ?? err.message);
      const onClose = () => this.failBeforeNative(`${side}-error`, side, 'ERR_SOCKET_CLOSED');
      // A peer that does not take what JS wrote keeps the flush waiting: the idle timeout holds here too.
      const onTimeout = () => this.failBeforeNative(`${side}-timeout`, side);
      s.on('error', onError);
      s.on('close', onClose);
      s.on('timeout', onTimeout);
      s.setTimeout(Math.min(this.idleMs, TIMER_MAX));
      this.cleanups.push(() => {
        s.off('error', onError);
        s.off('close', onClose);
        s.off('timeout', onTimeout);
        s.setTimeout(0);
      });
    }
    this.flush();
  }

  /** Waits for what JS already wrote to reach the kernel, then hands over (synchronously). */
  private flush(): void {
    if (this.state !== 'flushing') return;
    for (const s of this.sockets!) {
      if (s === null || settled(s)) continue;
      if (s.connecting) s.once('connect', () => this.flush());
      else if (s.writableEnded) s.once('finish', () => this.flush());
      // An empty write completes after every write before it has completed.
      else s.write(Buffer.alloc(0), () => this.flush());
      return;
    }
    this.handOver();
  }

  private handOver(): void {
    const [a, b] = this.sockets!;
    const fdA = fdOf(a);
    const fdB = b ? fdOf(b) : this.fdB;
    if (fdA < 0 || fdB < 0) {
      this.failBeforeNative(fdA < 0 ? 'a-error' : 'b-error', fdA < 0 ? 'a' : 'b', 'EBADF');
      return;
    }
    const bufferedA = takeBuffered(a);
    const preA = this.replay === null ? bufferedA : bufferedA === null ? this.replay : Buffer.concat([this.replay, bufferedA]);
    const preB = b ? takeBuffered(b) : null;
    this.preA = preA?.length ?? 0;
    this.preB = preB?.length ?? 0;
    const flags =
      (finReceived(a) ? F_A_EOF : 0) |
      (a.writableEnded ? F_A_WR_SHUT : 0) |
      (b === null ? F_B_OWNED : (finReceived(b) ? F_B_EOF : 0) | (b.writableEnded ? F_B_WR_SHUT : 0));
    let handle: object;
    try {
      handle = binding!.adopt(fdA, fdB, preA, preB, flags, this.idleMs, this.id);
    } catch (err) {
      // dup() failed (EMFILE): the connection cannot be handed over.
      const errno = (err as { errno?: number }).errno;
      const reason = errno ? errnoName(errno) : (err as Error).message;
      if (this.owner.spliceRefused) return this.giveBack(bufferedA, preB, reason);
      this.failBeforeNative('a-error', 'a', reason);
      return;
    }
    this.js = jsBytes(a, b);
    this.state = 'native';
    this.handle = handle;
    this.fdB = -1;
    live.set(this.id, this);
    for (const c of this.cleanups.splice(0)) c();
    this.sockets = null;
    // libuv removes its fd from its epoll set and closes it; the dup keeps the connection open.
    a.destroy();
    b?.destroy();
  }

  /**
   * The sockets go back to the caller as they were: the bytes taken from their buffers in front again, paused, none of our listeners.
   * A b that was a descriptor becomes a socket, with the replay written to it.
   */
  private giveBack(preA: Buffer | null, preB: Buffer | null, reason: string): void {
    const [a, given] = this.sockets!;
    const b = given ?? socketFromDescriptor(this.fdB);
    this.fdB = -1;
    if (given === null && this.replay) b.write(this.replay);
    if (preA) a.unshift(preA);
    if (preB) b.unshift(preB);
    this.state = 'done';
    for (const c of this.cleanups.splice(0)) c();
    this.sockets = null;
    process.nextTick(() => this.owner.spliceRefused!(a, b, reason)); // never from inside adoptSockets()
  }

  /** An error, close or timeout while waiting for the flush: nothing was handed over. */
  private failBeforeNative(end: NativeSpliceResult['end'], side: Side | null, code?: string): void {
    if (this.state !== 'flushing') return;
    this.state = 'done';
    const bytes = this.sockets ? jsBytes(...this.sockets) : NOTHING;
    this.final = bytes;
    this.destroySockets();
    const result: NativeSpliceResult = { aToB: 0, bToA: 0, end, firstEnd: side, bufferedAToB: 0, bufferedBToA: 0, bytes };
    if (code !== undefined) result.error = code;
    process.nextTick(() => this.owner.spliceDone(result));
  }

  private destroySockets(): void {
    for (const c of this.cleanups.splice(0)) c();
    for (const s of this.sockets ?? []) s?.destroy();
    this.sockets = null;
    if (this.fdB >= 0) closeSync(this.fdB);
    this.fdB = -1;
  }

  /**
   * The thread connects to host:port and, once connected, splices a with it
   * (and sends the replay first) without waiting for JS. Until then a is not
   * read (libuv stops reading it; what JS had buffered goes to the thread),
   * so no byte can be taken by both. Throws (a unchanged) when the connect
   * fails at once.
   */
  connectThenSplice(host: string, port: number): void {
    const a = this.sockets![0];
    const handle = (a as unknown as { _handle: { reading: boolean; readStop(): number; readStart(): number } })._handle;
    // Buffered bytes first: read() may start the handle reading again.
    const buffered = takeBuffered(a);
    // libuv stops reading a; `reading` stays true so that net.Socket's _read() (a paused stream still reads up to its
    // high-water mark, from nextTick) never starts it again behind the thread's back.
    const reading = handle.reading;
    handle.readStop();
    handle.reading = true;
    const preA = this.replay === null ? buffered : buffered === null ? this.replay : Buffer.concat([this.replay, buffered]);
    this.preA = preA?.length ?? 0;
    this.unconnected = { buffered, reading, host, port };
    const flags = (finReceived(a) ? F_A_EOF : 0) | (a.writableEnded ? F_A_WR_SHUT : 0);
    try {
      this.handle = binding!.connect(host, port, this.id, fdOf(a), preA, flags, this.idleMs)[1];
    } catch (err) {
      this.restoreUnconnected();
      throw asConnectError(err, host, port);
    }
    this.connecting = true;
    this.js = jsBytes(a, null);
    live.set(this.id, this);
  }

  /** The connect is given up unless it has connected already (then the splice goes on and the owner hears spliceConnected). */
  cancelConnect(): void {
    if (this.connecting && this.handle) binding!.abort(this.handle, true);
  }

  /** connectThenSplice connected and the thread splices: a's JS socket goes. */
  connected(): void {
    const [a] = this.sockets!;
    this.state = 'native';
    this.unconnected = null;
    this.sockets = null;
    (this.owner as ConnectSpliceOwner).spliceConnected(this);
    // libuv closes its descriptor; the thread's dup keeps the connection open.
    a.on('error', noop);
    a.destroy();
  }

  connectFailed(errno: number): void {
    const { host, port } = this.unconnected!;
    this.restoreUnconnected();
    this.state = 'done';
    this.sockets = null;
    (this.owner as ConnectSpliceOwner).spliceConnectFailed(connectError(errno, host, port));
  }

  /** a as it was before connectThenSplice: its buffered bytes in front, read again if it was. */
  private restoreUnconnected(): void {
    const a = this.sockets![0];
    const { buffered, reading } = this.unconnected!;
    this.unconnected = null;
    if (buffered) a.unshift(buffered);
    const handle = (a as unknown as { _handle: { reading: boolean; readStart(): number } | null })._handle;
    if (!handle || a.destroyed) return;
    handle.reading = reading;
    if (reading) handle.readStart();
  }

  abort(): void {
    if ((this.state === 'native' || this.connecting) && this.handle) binding!.abort(this.handle);
    else this.failBeforeNative('aborted', null);
  }

  counters(): NativeSpliceCounters {
    if (this.state === 'flushing') {
      const [a, b] = this.sockets!;
      const held = a.writableLength + a.readableLength + (b ? b.writableLength + b.readableLength : 0) + (this.replay?.length ?? 0);
      return { ...jsBytes(a, b), heldUserland: held, heldInPipes: 0 };
    }
    if (this.handle === null) return { ...(this.final ?? this.js), heldUserland: 0, heldInPipes: 0 };
    return loopCounters(this.handle, this.js);
  }

  /** JS's counts at the hand-over plus the loop's. */
  totals(readA: number, readB: number, aToB: number, bToA: number): NativeSpliceBytes {
    const js = this.js;
    return { fromA: js.fromA + readA, fromB: js.fromB + readB, toA: js.toA + bToA, toB: js.toB + aToB };
  }

  finish(result: NativeSpliceResult): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.handle = null;
    this.final = result.bytes;
    tellDone(this.owner, result);
  }
}

function jsBytes(a: net.Socket, b: net.Socket | null): NativeSpliceBytes {
  return { fromA: a.bytesRead, fromB: b?.bytesRead ?? 0, toA: a.bytesWritten, toB: b?.bytesWritten ?? 0 };
}

/**
 * Takes over two connected plain TCP sockets (net.Socket, not TLS): waits until
 * everything already written to either JS socket has been flushed to the kernel,
 * forwards anything already read into JS buffers (readableLength) to the other side,
 * then dup()s both fds, destroys the JS sockets (which closes libuv's fd after
 * removing it from libuv's epoll — the dup keeps the connection open), and splices
 * natively both ways with half-close (FIN from one side → shutdown(SHUT_WR) on the
 * other once its pipe is drained), backpressure (a full destination stops reading
 * that direction) and an idle timeout per side (idleMs: no bytes read from or
 * written to that side for idleMs; 0 = none; it also bounds the wait for the
 * flush). If a socket already received FIN (readableEnded) or has already ended
 * its writable side before adopt, that state is carried over. owner.spliceDone is called
 * exactly once, on the JS main thread, after both fds are closed.
 *
 * Throws (and leaves the sockets untouched) if the native splice is unavailable
 * or its thread cannot start (see startNativeSplice), or if a socket is not a
 * live plain TCP socket (already destroyed included): the caller splices in
 * JavaScript then.
 *
 * From the call on, the sockets belong to the native splice: their 'data' and
 * 'readable' listeners are removed (bytes buffered in JS go to the other side
 * natively, never to a listener), and they are destroyed at the hand-over, so
 * their 'close' listeners run then, not when the connection ends. An error or
 * close while waiting for the flush ends it as `<side>-error` with nothing moved.
 * If the descriptors cannot be taken at the hand-over (out of descriptors),
 * owner.spliceRefused gets the sockets back; without it that ends as `a-error`.
 */
/**
 * Who hears how an adopted connection ends: an object rather than callbacks,
 * so that a caller holding many connections needs no closure for each.
 */
export interface SpliceOwner {
  /** Called exactly once, on the JS main thread, after both fds are closed. */
  spliceDone(result: NativeSpliceResult): void;
  /**
   * The loop could not take the descriptors (dup() failed, e.g. EMFILE): a and
   * b are as they were before adoptSockets, paused, with what JS had buffered
   * still in front; spliceDone is not called. Called on a later tick, never
   * from inside adoptSockets.
   */
  spliceRefused?(a: net.Socket, b: net.Socket, reason: string): void;
}

export function adoptSockets(
  a: net.Socket,
  b: net.Socket,
  idleMs: number,
  owner: SpliceOwner,
): NativeSplice {
  if (a === b) throw new TypeError('adoptSockets: a and b are the same socket');
  const job = new Adoption(a, b, -1, null, adoptable('adoptSockets', [a, b], idleMs), owner, nextId++);
  job.start();
  return job;
}

/**
 * What adoptSockets and adoptConnected require of their sockets (live plain
 * TCP) and of the loop (available, started); throws otherwise. Returns the
 * idle timeout as the addon takes it.
 */
function adoptable(caller: string, sockets: readonly net.Socket[], idleMs: number): number {
  requireLoop();
  for (const s of sockets) {
    if (s instanceof tls.TLSSocket) throw new TypeError(`${caller}: plain TCP sockets only, not TLS`);
    if (s.destroyed) throw new Error(`${caller}: socket already destroyed`);
    if (!s.connecting && fdOf(s) < 0) throw new TypeError(`${caller}: a socket without a file descriptor (not a plain TCP socket)`);
  }
  if (!(idleMs >= 0)) throw new RangeError(`${caller}: idleMs must be a number >= 0 (got ${idleMs})`);
  return idleArgument(idleMs);
}

/** An idle timeout (ms, 0 none) as the addon takes it: a whole uint32. */
function idleArgument(idleMs: number): number {
  return Math.min(Math.ceil(idleMs), 0xffffffff);
}

/** Throws unless the addon is loaded and its thread runs. */
function requireLoop(): void {
  if (binding === null) throw new Error(`native splice unavailable: ${nativeSpliceUnavailable}`);
  const notStarted = startNativeSplice();
  if (notStarted !== null) throw new Error(notStarted);
}

/** A JS socket for a connected descriptor the native side made, for the JavaScript splice when the loop cannot take it. */
export function socketFromDescriptor(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}

/**
 * adoptSockets for a connection whose server side is a descriptor
 * nativeConnect made (so no JS socket was ever built for it): `replay` goes
 * to the server first, then what JS has buffered from `a`, then the splice.
 * fdB is the native splice's from this call on, whatever happens (closed if
 * the connection ends before the hand-over); spliceRefused gets a socket made
 * from it, with the replay written. Throws like adoptSockets, leaving fdB to
 * the caller.
 */
export function adoptConnected(a: net.Socket, fdB: number, replay: Buffer | null, idleMs: number, owner: SpliceOwner): NativeSplice {
  if (!(fdB >= 0)) throw new TypeError(`adoptConnected: fdB must be a descriptor (got ${fdB})`);
  const idle = adoptable('adoptConnected', [a], idleMs);
  const job = new Adoption(a, null, fdB, replay && replay.length > 0 ? replay : null, idle, owner, nextId++);
  job.start();
  return job;
}

/** Who hears how a connectThenSplice goes, besides how its splice ends. */
export interface ConnectSpliceOwner extends SpliceOwner {
  /** Connected, and spliced from now on: called on the main thread before the splice's spliceDone. */
  spliceConnected(splice: NativeSplice): void;
  /** Not connected (refused, cancelled, aborted): the client socket is as it was, nothing sent; spliceDone is not called. */
  spliceConnectFailed(error: NodeJS.ErrnoException): void;
}

/**
 * adoptConnected and nativeConnect in one step: the native thread connects
 * to host:port (numeric) and splices `a` with it as soon as it is
 * established, `replay` first, with no JS in between; a's JS socket is
 * destroyed then. The returned splice's cancelConnect() gives the connect
 * up (a connect timeout) unless it has connected; abort() ends either.
 * Throws, leaving `a` as it was, when the loop is unavailable, when a has
 * unflushed writes (use adoptConnected), and with Node's error shape when
 * the connect fails at once.
 */
export function connectThenSplice(
  a: net.Socket,
  host: string,
  port: number,
  replay: Buffer | null,
  idleMs: number,
  owner: ConnectSpliceOwner,
): NativeSplice & { cancelConnect(): void } {
  const idle = adoptable('connectThenSplice', [a], idleMs);
  if (a.connecting || !settled(a)) throw new Error('connectThenSplice: the socket has writes in flight');
  const job = new Adoption(a, null, -1, replay && replay.length > 0 ? replay : null, idle, owner, nextId++);
  job.connectThenSplice(host, port);
  return job;
}

/** How a nativeConnect ends: the connected descriptor (the caller's now: adoptConnected or close it), or why not. */
export type NativeConnectDone = (error: NodeJS.ErrnoException | null, fd: number) => void;

export interface NativeConnect {
  /** Gives up: `done` is not called, and the descriptor is closed whether or not it had connected. */
  cancel(): void;
}

class PendingConnect implements NativeConnect {
  handle: object | null;
  private cancelled = false;

  constructor(
    private readonly fd: number,
    handle: object,
    private readonly host: string,
    private readonly port: number,
    private readonly done: NativeConnectDone,
  ) {
    this.handle = handle;
  }

  settle(end: number, errno: number): void {
    if (this.cancelled) {
      // Connected before the cancel reached the thread: the descriptor is ours to close.
      if (end === END_CONNECTED) closeSync(this.fd);
      return;
    }
    if (end === END_CONNECTED) return this.done(null, this.fd);
    this.done(connectError(connectErrno(end, errno), this.host, this.port), -1);
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.handle) binding!.abort(this.handle);
  }
}

/**
 * Connects to a numeric IPv4/IPv6 address from the native thread, so that a
 * connection bound for the native splice never needs a JS socket on the
 * server side (the JS one costs more than the rest of a short connection's
 * setup). `done` runs on the main thread, never synchronously. Throws when
 * the native splice is unavailable, and with Node's error shape (code
 * ECONNREFUSED, EMFILE, …) when the connect fails at once.
 */
export function nativeConnect(host: string, port: number, done: NativeConnectDone): NativeConnect {
  requireLoop();
  const id = nextId++;
  let fd: number;
  let handle: object;
  try {
    [fd, handle] = binding!.connect(host, port, id);
  } catch (err) {
    throw asConnectError(err, host, port);
  }
  const pending = new PendingConnect(fd, handle, host, port, done);
  connecting.set(id, pending);
  return pending;
}

/** Who hears how a front() connection goes: its first bytes, then as a connectThenSplice. */
export interface FrontOwner extends ConnectSpliceOwner {
  /** The first bytes the client sent (still unread: the socket's), EOF with none, or errno; told once. */
  frontPeeked(bytes: Buffer, eof: boolean, errno: number): void;
}

/**
 * A socket JS accepted (its raw handle, no net.Socket made for it) whose
 * first bytes the native thread peeks at: JS sniffs and routes them, then
 * has the thread connect and splice (connect), or takes the socket back
 * (release) and reads the very same bytes itself.
 */
export class FrontJob implements NativeSplice {
  state: 'peeking' | 'connecting' | 'native' | 'done' = 'peeking';
  private final: NativeSpliceBytes | null = null;
  /** where connect() went, for the error when it fails */
  private host = '';
  private port = 0;

  constructor(
    readonly id: number,
    public handle: object | null,
    /** null for a client the thread accepted, until the one it is told to takes it (AcceptedClient) */
    public owner: FrontOwner | null,
  ) {}

  /** Connects to host:port (numeric) and splices, `replay` (a PROXY header) first. Throws as nativeConnect does when it fails at once. */
  connect(host: string, port: number, replay: Buffer | null, idleMs: number): void {
    try {
      binding!.frontConnect(this.handle!, host, port, replay, idleArgument(idleMs));
    } catch (err) {
      throw asConnectError(err, host, port);
    }
    this.connecting(host, port);
  }

  /** Where connect went (front with a connect, or connect): the thread is connecting. */
  connecting(host: string, port: number): void {
    this.host = host;
    this.port = port;
    this.state = 'connecting';
  }

  cancelConnect(): void {
    if (this.state === 'connecting' && this.handle) binding!.abort(this.handle, true);
  }

  /** The socket is JS's again (the thread forgets it); nothing is told. */
  release(): void {
    if (this.state !== 'peeking') return;
    this.state = 'done';
    if (this.handle) binding!.release(this.handle);
  }

  abort(): void {
    if (this.handle) binding!.abort(this.handle);
  }

  counters(): NativeSpliceCounters {
    if (this.handle === null || this.state !== 'native') return { ...(this.final ?? NOTHING), heldUserland: 0, heldInPipes: 0 };
    return loopCounters(this.handle, NOTHING);
  }

  peeked(bytes: Buffer, eof: boolean, errno: number): void {
    if (this.state === 'peeking') this.owner!.frontPeeked(bytes, eof, errno);
  }

  connected(): void {
    this.owner!.spliceConnected(this);
  }

  connectFailed(errno: number): void {
    this.state = 'done';
    this.owner!.spliceConnectFailed(connectError(errno, this.host, this.port));
  }

  /** Its end, from the batch: JS never read a byte of it, so the loop's counts are all of them. */
  result(batch: Float64Array, i: number): NativeSpliceResult {
    this.final = { fromA: batch[i + 8]!, fromB: batch[i + 9]!, toA: batch[i + 4]!, toB: batch[i + 3]! };
    return resultAt(batch, i, this.final, 0, 0);
  }

  finish(result: NativeSpliceResult): void {
    this.state = 'done';
    tellDone(this.owner!, result);
  }
}

/**
 * Hands a just-accepted socket's descriptor to the native thread, which
 * tells its first bytes (at most peekMax) unread: see FrontJob. The
 * descriptor stays the caller's, to close once the job has ended (or been
 * released). Throws when the loop is unavailable.
 */
export function watchFront(fd: number, peekMax: number, owner: FrontOwner): FrontJob {
  return frontJob(owner, (id) => binding!.front(fd, id, peekMax));
}

/** A new FrontJob, its conn made by `front` (given the job's id), known to onBatch. */
function frontJob(owner: FrontOwner, front: (id: number) => object): FrontJob {
  requireLoop();
  const id = nextId++;
  const job = new FrontJob(id, front(id), owner);
  live.set(id, job);
  return job;
}

/**
 * A just-accepted socket answered by the thread with no server (a Flash
 * policy request): `reply`, then a FIN; the client's bytes (its request
 * included, still unread) are read and dropped until it closes, so the close
 * never resets away the reply. Its end comes as a splice's (spliceDone), the
 * reply counted as bytes to the client. Throws when the loop is unavailable.
 */
export function answerFront(fd: number, owner: FrontOwner, reply: Buffer, idleMs: number): FrontJob {
  const job = frontJob(owner, (id) => binding!.answer(fd, id, reply, idleArgument(idleMs)));
  job.state = 'native';
  return job;
}

/**
 * The first bytes (at most max) a just-accepted socket has received, read
 * here and now without taking them: null when none have come yet (then
 * watchFront waits for them), empty at end of file. Throws when the native
 * addon is unavailable or the socket has failed.
 */
export function peekFront(fd: number, max: number): Buffer | null {
  if (binding === null) throw new Error(`native splice unavailable: ${nativeSpliceUnavailable}`);
  return binding.peek(fd, max);
}

/**
 * A just-accepted socket whose peeked bytes (peekFront) decided its server:
 * the thread connects to host:port (numeric) and splices, as
 * FrontJob.connect, in one step. Throws as FrontJob.connect does when the
 * connect fails at once; then there is no job.
 */
export function connectFront(fd: number, peekMax: number, owner: FrontOwner, host: string, port: number, idleMs: number): FrontJob {
  const job = frontJob(owner, (id) => {
    try {
      return binding!.front(fd, id, peekMax, host, port, null, idleArgument(idleMs));
    } catch (err) {
      throw asConnectError(err, host, port);
    }
  });
  job.connecting(host, port);
  return job;
}

/**
 * A client the native thread accepted (listenNatively): a front conn in the
 * thread (job, peeking: its first bytes told unread, as watchFront's) and a
 * descriptor that is JS's to close once the job has ended or been released,
 * or to make a net.Socket of. No JavaScript object existed for it before.
 */
export interface AcceptedClient {
  readonly job: FrontJob;
  readonly fd: number;
  /** the client's address as Node prints it (an IPv4-mapped IPv6 one as it is) and port */
  readonly address: string;
  readonly port: number;
  /** its first bytes if they came with the connection (null: the job tells them when they come), the end of file, errno */
  readonly first: Buffer | null;
  readonly eof: boolean;
  readonly errno: number;
  /** how long ago it was accepted: held in the thread until its first bytes came (or a few ms), which count as waited for */
  readonly ageMs: number;
}

/** Who a native listener tells of its clients and its failures. */
export interface ListenOwner {
  accepted(client: AcceptedClient): void;
  /** accept() failed (out of descriptors, most likely): the thread tries again in a while. */
  acceptFailed(error: NodeJS.ErrnoException): void;
}

/**
 * A listening socket whose clients the native thread accepts: no TCPWrap, no
 * getpeername or setsockopt from JS, and each client's first bytes peeked
 * in the thread before JS hears of it. close() stops it (the thread closes
 * its descriptor); the promise settles once the thread has.
 */
export class NativeListener {
  private handle: object | null;
  private done: Promise<void> | null = null;
  private settle: (() => void) | null = null;

  constructor(
    readonly id: number,
    handle: object,
    private readonly owner: ListenOwner,
  ) {
    this.handle = handle;
  }

  accepted(client: AcceptedClient): void {
    this.owner.accepted(client);
  }

  acceptFailed(errno: number): void {
    const error: NodeJS.ErrnoException = new Error(`accept: ${errnoName(errno)}`);
    error.code = errnoName(errno);
    error.errno = -errno;
    this.owner.acceptFailed(error);
  }

  close(): Promise<void> {
    if (this.done) return this.done;
    this.done = new Promise((resolve) => (this.settle = resolve));
    if (this.handle) binding!.abort(this.handle);
    return this.done;
  }

  closed(): void {
    live.delete(this.id);
    this.handle = null;
    this.done ??= Promise.resolve();
    this.settle?.();
  }
}

/**
 * The native thread accepts on the listening socket `fd` (it takes a dup:
 * the caller closes its own, so that only the thread accepts), peeking at
 * each client's first bytes (at most peekMax). Throws when the loop is
 * unavailable.
 */
export function listenNatively(fd: number, peekMax: number, owner: ListenOwner): NativeListener {
  requireLoop();
  const id = nextId++;
  const listener = new NativeListener(id, binding!.listen(fd, id, peekMax), owner);
  live.set(id, listener);
  return listener;
}

/** A client accepted as its listener closed for good: taken back and closed, as a backlog overflow. */
function orphaned(client: AcceptedClient): void {
  client.job.release();
  closeAccepted(client.fd);
}

/** Closes an accepted client's descriptor (JS's once told: see AcceptedClient); one closed already is no error. */
export function closeAccepted(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closed already
  }
}
