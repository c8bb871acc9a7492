/**
 * Backfill: at start, a RedisBus reads the done stream entries of the
 * recovery window, so its push server can replay them to clients that
 * reconnect after the server restarted or moved to another server.
 */
import type { Redis } from "ioredis";
import {
  compareMessageIds,
  maxMessageId,
  ZERO_MESSAGE_ID,
  type MessageId,
} from "../protocol/message-id.ts";
import { readStreamState, retainedAfter, windowStartId } from "./stream-position.ts";

/** One stream entry as ioredis returns it: the id and the flat field list. */
export type StreamEntry = [id: string, fields: string[]];

/** Outcome of a backfill. */
export interface BackfillResult {
  /** Id from which the live stream read continues: the newest entry id at start. */
  position: MessageId;
  /** `from` of the first coverage event. */
  from: MessageId;
}

/** Resolves with the outcome of a command, or with undefined when the bus closed meanwhile. */
export type UntilClosed = <T>(pending: Promise<T>) => Promise<T | undefined>;

/** Maximum number of entries one XRANGE of a backfill returns. */
const BATCH_SIZE = 100;

/**
 * Reads the entries of the recovery window, from `<now - windowMs>-0` up to
 * the newest entry at the first attempt, with XRANGE in batches. A failed run
 * can be run again and resumes after the last entry it passed on, so no entry
 * is passed on twice. Entries added after the first attempt are left to the
 * live read that continues from {@link BackfillResult.position}.
 */
export class StreamBackfill {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #windowMs: number;
  readonly #now: () => number;
  /** Window start and newest entry id, fixed by the first attempt that reaches Redis. */
  #range: { start: MessageId; end: MessageId } | undefined;
  /** Id of the last entry passed on, or the window start. */
  #cursor: MessageId = ZERO_MESSAGE_ID;

  constructor(redis: Redis, key: string, windowMs: number, now: () => number = Date.now) {
    this.#redis = redis;
    this.#key = key;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /**
   * Passes each entry of the window to `onEntries`, in id order, and returns
   * where the live read continues and the coverage `from`. Returns undefined
   * when `untilClosed` reports that the bus closed. Throws what the Redis
   * commands throw.
   */
  async run(
    onEntries: (entries: StreamEntry[]) => void,
    untilClosed: UntilClosed,
  ): Promise<BackfillResult | undefined> {
    if (this.#range === undefined) {
      const start = windowStartId(this.#now(), this.#windowMs);
      const end = await untilClosed(this.#newestEntryId());
      if (end === undefined) return undefined;
      this.#range = { start, end };
      this.#cursor = start;
    }
    const { start, end } = this.#range;

    while (this.#windowMs > 0 && compareMessageIds(this.#cursor, end) < 0) {
      // "(" makes the start exclusive (Redis 6.2 and later).
      const entries = await untilClosed(
        this.#redis.xrange(this.#key, `(${this.#cursor}`, end, "COUNT", BATCH_SIZE),
      );
      if (entries === undefined) return undefined;
      if (entries.length > 0) onEntries(entries as StreamEntry[]);
      this.#cursor = entries.at(-1)?.[0] ?? end;
      if (entries.length < BATCH_SIZE) break;
    }

    // Read after the entries, so trimming that removed some of them before
    // XRANGE reached them raises the first entry id, and `from` with it.
    const state = await untilClosed(readStreamState(this.#redis, this.#key));
    if (state === undefined) return undefined;
    // NOTE: a missing key also covers from the window start, although a Redis
    // restart without persistence may have lost entries of the window with it.
    const base = this.#windowMs > 0 ? start : end;
    return { position: end, from: maxMessageId(base, retainedAfter(state)) };
  }

  /** Returns the id of the stream's newest entry, or "0-0" for an empty or missing stream. */
  async #newestEntryId(): Promise<MessageId> {
    const entries = await this.#redis.xrevrange(this.#key, "+", "-", "COUNT", 1);
    return entries[0]?.[0] ?? ZERO_MESSAGE_ID;
  }
}
