// How long to wait before the next connection attempt: exponential backoff
// with full jitter (a uniform wait between 0 and min(cap, base * 2^attempt)),
// so that clients cut off together do not come back together.

export interface Backoff {
  /** The first attempt's ceiling, in milliseconds. */
  baseMs: number;
  /** The ceiling no wait exceeds, in milliseconds. */
  capMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, capMs: 30_000 };

/** The wait before attempt `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
