/**
 * Rate limit of repeated log lines: one line per key and interval, and the
 * next logged line carries how many were skipped in between.
 */

/**
 * Interval of the throttles of rejection log lines (upgrades, inbound frames,
 * API requests), in milliseconds: one line per reason and client every 10 s.
 */
export const REJECTION_LOG_INTERVAL_MS = 10_000;

/** Maximum number of keys tracked. Past it, the oldest key goes and its next line is logged. */
const DEFAULT_MAX_KEYS = 10_000;

interface KeyState {
  loggedAt: number;
  skipped: number;
}

/** Decides which of a stream of repeated log lines to write. */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, KeyState>();

  constructor(intervalMs: number, options: { maxKeys?: number; now?: () => number } = {}) {
    this.#intervalMs = intervalMs;
    this.#maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Returns the number of lines skipped for `key` since its last logged line
   * when this line should be logged, or undefined when it should be skipped.
   */
  admit(key: string): number | undefined {
    const now = this.#now();
    const state = this.#keys.get(key);
    if (state !== undefined && now - state.loggedAt < this.#intervalMs) {
      state.skipped += 1;
      return undefined;
    }

    const skipped = state?.skipped ?? 0;
    this.#keys.delete(key);
    this.#keys.set(key, { loggedAt: now, skipped: 0 });
    if (this.#keys.size > this.#maxKeys) {
      const oldest = this.#keys.keys().next();
      if (!oldest.done) this.#keys.delete(oldest.value);
    }
    return skipped;
  }

  /** Drops keys whose interval has passed with nothing skipped. */
  prune(): void {
    const now = this.#now();
    for (const [key, state] of this.#keys) {
      if (state.skipped === 0 && now - state.loggedAt >= this.#intervalMs) this.#keys.delete(key);
    }
  }
}
