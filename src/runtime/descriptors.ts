/**
 * How many connections the open-file limit allows (sslh's CVE-2025-46807:
 * running out of descriptors). Node cannot stop accepting (nodejs/node#1744),
 * and when accept(2) fails with EMFILE libuv accepts and closes every client
 * waiting in the backlog. So sniffmux stays below the limit itself: each
 * connection it serves takes two descriptors (client and server), each it
 * holds unread (beyond a maxconn) one, and what is left over is headroom for
 * health checks, admin requests and the files a reload reads.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface DescriptorBudget {
  /** The soft "Max open files" limit. */
  readonly limit: number;
  /** Descriptors open when the budget was made (listeners, stdio, Node's own). */
  readonly inUse: number;
  /** Connections served at once, at most (like a global maxconn). */
  readonly connections: number;
  /** Connections held unread beyond that, at most; more are refused. */
  readonly held: number;
}

/** Kept free of connections: admin requests, TLS and policy files read on reload, DNS, the log. */
export const DESCRIPTOR_HEADROOM = 32;
/**
 * Share of the spare descriptors set aside for held connections (the rest
 * serve, two each): a sixteenth, so that serving keeps nearly all of them —
 * at the 20,000 of this project's machines about 9,080 connections served
 * and 1,200 held once the native thread's reserve is kept (its pipes, its
 * untold clients, its connect dups: about 560), where HAProxy's own
 * arithmetic serves 9,900 without splice pipes.
 */
const HELD_SHARE = 16;

/** The soft limit on open files from /proc/self/limits' text; null when unlimited or not found. */
export function parseOpenFileLimit(limits: string): number | null {
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
  return soft === undefined || !/^\d+$/.test(soft) ? null : Number(soft);
}

/** This process's limit and the descriptors it has open now; null where /proc cannot tell (not Linux). */
export function readDescriptorUse(): { limit: number; inUse: number } | null {
  try {
    const limit = parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8'));
    // The listing itself holds one descriptor while it reads.
    const inUse = readdirSync('/proc/self/fd').length - 1;
    return limit === null ? null : { limit, inUse };
  } catch {
    return null;
  }
}

/**
 * Splits what the limit leaves after `inUse` and `reserve` (one per
 * health-checked server, and what the native thread may hold outside any
 * count: see Instance.budgetDescriptors), and DESCRIPTOR_HEADROOM: a sixteenth (at most
 * `maxHeld`) for held connections, the rest for served ones at two each.
 */
export function descriptorBudget(use: { limit: number; inUse: number }, reserve: number, maxHeld: number): DescriptorBudget {
  const spare = Math.max(0, use.limit - use.inUse - reserve - DESCRIPTOR_HEADROOM);
  const held = Math.min(maxHeld, Math.floor(spare / HELD_SHARE));
  // At least one connection, so that a tiny limit still serves (and says so) rather than refusing everyone.
  return { ...use, connections: Math.max(1, Math.floor((spare - held) / 2)), held };
}
