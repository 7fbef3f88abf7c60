/**
 * Durations: a number is milliseconds; a string is a number with a unit
 * (`500ms`, `5s`, `1.5s`, `2m`, `24h`, `7d`). The result is whole milliseconds
 * and fits a Node timer: setTimeout fires at once (with a warning) beyond
 * 2^31-1 ms, which would turn "a day" into "now".
 */

export const MAX_DURATION_MS = 2 ** 31 - 1;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;

const HOW = 'use milliseconds or a number with a unit: ms, s, m, h, d (e.g. 500ms, 5s, 2m, 24h)';

/** Milliseconds, or a message saying what is wrong. */
export function parseDuration(value: number | string): number | string {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else {
    const m = DURATION.exec(value.trim());
    if (m === null) return `invalid duration '${value}': ${HOW}`;
    ms = Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!;
    // 1.5s is fine, 0.0005s is not: round away float noise only (0.1*3).
    const rounded = Math.round(ms);
    if (Math.abs(ms - rounded) > 1e-6) return `invalid duration '${value}': must be a whole number of milliseconds`;
    ms = rounded;
  }
  if (!Number.isInteger(ms) || ms < 0) return `invalid duration '${value}': ${HOW}`;
  if (ms > MAX_DURATION_MS) return `duration '${value}' is too long: at most 24 days (${MAX_DURATION_MS} ms)`;
  return ms;
}
