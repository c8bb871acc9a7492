/**
 * Per-address limits of the socket endpoint: a token bucket of upgrades per
 * second, and a count of the sockets each address holds.
 */

/** Maximum number of addresses a limiter tracks. Past it, the oldest entry goes. */
const DEFAULT_MAX_KEYS = 100_000;

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** Outcome of {@link TokenBucketLimiter.take}. */
export type TakeResult = { allowed: true } | { allowed: false; retryAfterS: number };

/**
 * Token buckets by key: each holds up to `ratePerSecond` tokens, refills at
 * that rate and starts full, so a burst of `ratePerSecond` requests passes
 * at once. A rate of 0 disables the limit.
 */
export class TokenBucketLimiter {
  readonly #ratePerSecond: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(ratePerSecond: number, options: { maxKeys?: number; now?: () => number } = {}) {
    this.#ratePerSecond = ratePerSecond;
    this.#maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    this.#now = options.now ?? Date.now;
  }

  /** Number of keys whose bucket is not full. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token for `key`, or returns the seconds until one is available. */
  take(key: string): TakeResult {
    const rate = this.#ratePerSecond;
    if (rate === 0) return { allowed: true };

    const now = this.#now();
    const bucket = this.#buckets.get(key);
    const tokens = bucket === undefined ? rate : refill(bucket, rate, now);
    if (tokens < 1) {
      const retryAfterS = Math.max(1, Math.ceil((1 - tokens) / rate));
      return { allowed: false, retryAfterS };
    }

    // Re-inserting moves the key to the end, so the first key is the least recently used.
    this.#buckets.delete(key);
    this.#buckets.set(key, { tokens: tokens - 1, updatedAt: now });
    if (this.#buckets.size > this.#maxKeys) this.#dropOldest();
    return { allowed: true };
  }

  /** Drops the buckets that have refilled completely, which behave like absent ones. */
  prune(): void {
    const now = this.#now();
    for (const [key, bucket] of this.#buckets) {
      if (refill(bucket, this.#ratePerSecond, now) >= this.#ratePerSecond) {
        this.#buckets.delete(key);
      }
    }
  }

  #dropOldest(): void {
    const oldest = this.#buckets.keys().next();
    if (!oldest.done) this.#buckets.delete(oldest.value);
  }
}

/** Returns the tokens of `bucket` at `now`, capped at `rate`. */
function refill(bucket: Bucket, rate: number, now: number): number {
  const elapsedS = Math.max(0, now - bucket.updatedAt) / 1000;
  return Math.min(rate, bucket.tokens + elapsedS * rate);
}

/** Counts of held slots by key, such as the sockets of each remote address. */
export class SlotCounter {
  readonly #counts = new Map<string, number>();

  /** Number of keys holding at least one slot. */
  get size(): number {
    return this.#counts.size;
  }

  count(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /** Takes a slot for `key` unless it has `max` already (0 = no limit). Returns true on success. */
  acquire(key: string, max: number): boolean {
    const count = this.count(key);
    if (max !== 0 && count >= max) return false;
    this.#counts.set(key, count + 1);
    return true;
  }

  /** Gives back one slot of `key`. */
  release(key: string): void {
    const count = this.count(key);
    if (count <= 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }
}
