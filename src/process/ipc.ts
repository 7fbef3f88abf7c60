import type { ErrorCode } from '../errors.js';

/**
 * The messages between a cluster primary and its workers (node:cluster IPC,
 * `serialization: 'advanced'`). Every one carries a `sniffmux` field with its
 * kind, so they cannot be mistaken for Node's own cluster messages or
 * prom-client's.
 */

/** What the primary asks a worker; answered by an `answer` with the same id. */
export type Question = 'status' | 'metrics' | 'reload';

export type ToWorker =
  | { readonly sniffmux: 'ask'; readonly id: number; readonly question: Question }
  /** Stop accepting, drain for up to global.grace, exit 0. */
  | { readonly sniffmux: 'stop' };

export type FromWorker =
  /** Listening on every address of the config: it serves connections now. */
  | { readonly sniffmux: 'ready' }
  /** Could not start (config, certificate, address); exits 1 right after. */
  | { readonly sniffmux: 'failed'; readonly code: ErrorCode | null; readonly problems: readonly string[] }
  | { readonly sniffmux: 'answer'; readonly id: number; readonly value?: unknown; readonly error?: string };

/** The answer to `reload`: null when the worker runs the new config, else the problems it had (it keeps the old one). */
export type ReloadAnswer = readonly string[] | null;

export function isMessage<T extends { sniffmux: string }>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && typeof (message as { sniffmux?: unknown }).sniffmux === 'string';
}

/** Marks a process forked as a sniffmux worker (the value is its slot, 1..N). */
export const WORKER_ENV = 'SNIFFMUX_WORKER';
