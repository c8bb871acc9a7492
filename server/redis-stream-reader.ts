/**
 * The stream side of a RedisBus: the backfill at start, then a blocking
 * XREAD loop over the done stream that survives reconnects, silent network
 * stalls and a stream that is deleted or replaced.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../common/logger.ts";
import {
  compareMessageIds,
  maxMessageId,
  ZERO_MESSAGE_ID,
  type MessageId,
} from "../protocol/message-id.ts";
import { StreamBackfill, type StreamEntry } from "./redis-backfill.ts";
import type { RedisHandOver } from "./redis-hand-over.ts";
import {
  lostAfter,
  previousMessageId,
  readStreamState,
  retainedAfter,
  type StreamState,
} from "./stream-position.ts";

/** Maximum number of stream entries one XREAD returns. */
const READ_COUNT = 100;

/** Pause after a failed stream read before the next attempt, in milliseconds. */
const READ_RETRY_MS = 250;

/** Options of {@link StreamReader}. */
export interface StreamReaderOptions {
  /** Connection for the reads only, with `maxRetriesPerRequest: null`. */
  reader: Redis;
  key: string;
  /** Time one XREAD call blocks on the server, in milliseconds. */
  blockMs: number;
  /** Age of the entries read as backfill at start, in milliseconds. The value 0 reads none. */
  recoveryWindowMs: number;
  handOver: RedisHandOver;
  logger: Logger | undefined;
}

/**
 * Reads the done stream from construction until close() and hands every
 * entry to a RedisHandOver: first the backfill, then the coverage event,
 * then each new entry.
 */
export class StreamReader {
  readonly #reader: Redis;
  readonly #key: string;
  readonly #blockMs: number;
  readonly #handOver: RedisHandOver;
  readonly #logger: Logger | undefined;
  readonly #backfill: StreamBackfill;
  readonly #readLoop: Promise<void>;
  /** Timer that watches the XREAD in flight, see #watchRead. */
  #stallTimer: NodeJS.Timeout | undefined;
  /** Ends the wait of the read loop on close(), see #untilClosed. */
  #cancelWait: (() => void) | undefined;
  /**
   * Id of the last stream entry read, or undefined until the backfill is done.
   * "0-0" after the stream was found missing or replaced.
   */
  #lastId: MessageId | undefined;
  /** True when the stream must be checked for a reset before the next XREAD, see #checkStream. */
  #streamCheckDue = false;
  /**
   * True from a check that found no done stream key until the stream is seen
   * again, so each absence is logged once.
   */
  #streamMissing = false;
  /**
   * True while the reader reads a missing or replaced stream from its first
   * entry, so entries trimmed before it got there are not counted as missed.
   */
  #readingFromStart = false;
  /** Number of times the reader connection became ready. */
  #connects = 0;
  /** `from` of the latest coverage event that this reader sent. */
  #coverageFrom: MessageId = ZERO_MESSAGE_ID;
  /** True from a failed stream read until the next successful one. */
  #readFailing = false;
  #closed = false;

  constructor(options: StreamReaderOptions) {
    this.#reader = options.reader;
    this.#key = options.key;
    this.#blockMs = options.blockMs;
    this.#handOver = options.handOver;
    this.#logger = options.logger;
    this.#backfill = new StreamBackfill(this.#reader, this.#key, options.recoveryWindowMs);
    // A reconnect may reach a restarted Redis or a replica that took over, which can
    // hold a new stream with lower ids.
    this.#reader.on("ready", () => {
      this.#streamCheckDue = true;
      this.#connects += 1;
    });
    this.#readLoop = this.#readStream();
  }

  /** Returns true once the backfill is done, while the last stream read succeeded. */
  reading(): boolean {
    return !this.#closed && this.#lastId !== undefined && !this.#readFailing;
  }

  /** Stops the read loop without waiting for the XREAD in flight. The owner disconnects. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelWait?.();
    clearInterval(this.#stallTimer);
    await this.#readLoop;
  }

  /**
   * Runs the backfill, then reads the done stream until close(). After any
   * failure it resumes from the last entry id it read, so entries written
   * while the reader was disconnected are handed over once it is back. After
   * a reconnect, a failure or an XREAD that returned nothing, it first checks
   * whether the stream was deleted or replaced (#checkStream), so normal
   * traffic costs no extra command.
   */
  async #readStream(): Promise<void> {
    while (!this.#closed) {
      try {
        if (this.#lastId === undefined && !(await this.#start())) return;
        if (this.#streamCheckDue) await this.#checkStream();
        if (this.#closed) return;

        const readFrom = this.#lastId as MessageId;
        const connects = this.#connects;
        const reply = await this.#untilClosed(
          this.#watchRead(
            this.#reader.xread(
              "COUNT",
              READ_COUNT,
              "BLOCK",
              this.#blockMs,
              "STREAMS",
              this.#key,
              this.#lastId as MessageId,
            ),
          ),
        );
        if (this.#closed) return;
        this.#onReadSucceeded();
        // ioredis sends an XREAD cut off by a reconnect again by itself, so its reply
        // skipped the check before the read.
        if (connects !== this.#connects) await this.#checkLoss(readFrom, reply?.[0]?.[1][0]?.[0]);
        if (this.#closed) return;
        if (!reply?.length) this.#streamCheckDue = true;
        for (const [, entries] of reply ?? []) this.#onStreamEntries(entries, false);
      } catch (error) {
        if (this.#closed) return;
        if (!this.#readFailing) {
          this.#logger?.warn({ err: error, stream: this.#key }, "stream read failed");
        }
        this.#readFailing = true;
        this.#streamCheckDue = true;
        await this.#untilClosed(new Promise((resolve) => setTimeout(resolve, READ_RETRY_MS)));
      }
    }
  }

  /**
   * Hands over the backfill, sets the read position and sends the first
   * coverage event. Returns false when the bus closed meanwhile. Throws what
   * the backfill throws, and the next call resumes it.
   */
  async #start(): Promise<boolean> {
    const result = await this.#backfill.run(
      (entries) => this.#onStreamEntries(entries, true),
      (pending) => this.#untilClosed(pending),
    );
    if (this.#closed || result === undefined) return false;

    this.#onReadSucceeded();
    this.#lastId = result.position;
    this.#coverageFrom = result.from;
    this.#handOver.cover(result.from, false);
    return true;
  }

  /**
   * Moves the read position to "0-0" when the done stream is missing or was
   * replaced, so the first entry of a recreated stream is handed over. A
   * stream whose last-generated-id is below the last id read was replaced, for
   * example by DEL and XADD, by a Redis restart without persistence or by a
   * failover to a server whose clock is behind. A replaced stream also gets a
   * reset coverage event. Throws what the check's commands throw.
   */
  async #checkStream(): Promise<void> {
    const state = await this.#untilClosed(readStreamState(this.#reader, this.#key));
    if (this.#closed || state === undefined) return;
    this.#streamCheckDue = false;
    this.#onReadSucceeded();

    if (!state.exists) {
      if (!this.#streamMissing) {
        this.#logger?.info({ stream: this.#key }, "done stream missing");
      }
      this.#streamMissing = true;
      // Entries not read yet went with the key, so open sockets may have missed some.
      if (!this.#readingFromStart && this.#lastId !== ZERO_MESSAGE_ID) {
        this.#logger?.warn({ stream: this.#key, lastId: this.#lastId }, "done stream deleted");
        this.#coverageFrom = ZERO_MESSAGE_ID;
        this.#handOver.cover(ZERO_MESSAGE_ID, true);
      }
      this.#lastId = ZERO_MESSAGE_ID;
      this.#readingFromStart = true;
      return;
    }
    this.#streamMissing = false;
    // NOTE: a replacing stream whose ids already passed the last id read looks
    // like the old one, so its entries up to that id are not handed over.
    const lastId = this.#lastId ?? ZERO_MESSAGE_ID;
    if (compareMessageIds(state.lastGeneratedId, lastId) < 0) {
      this.#logger?.warn(
        { stream: this.#key, lastId, lastGeneratedId: state.lastGeneratedId },
        "done stream reset",
      );
      this.#lastId = ZERO_MESSAGE_ID;
      this.#readingFromStart = true;
      this.#coverageFrom = retainedAfter(state);
      this.#handOver.cover(this.#coverageFrom, true);
      return;
    }

    this.#coverLoss(state, lastId, undefined);
  }

  /**
   * Checks, after an XREAD that ioredis sent again on a new connection,
   * whether entries after `readFrom` were lost before the read. Throws what
   * the check's commands throw.
   */
  async #checkLoss(readFrom: MessageId, firstReadId: MessageId | undefined): Promise<void> {
    const state = await this.#untilClosed(readStreamState(this.#reader, this.#key));
    if (this.#closed || state === undefined) return;
    this.#coverLoss(state, readFrom, firstReadId);
  }

  /**
   * Sends a reset coverage when entries after `lastId` were trimmed before
   * this reader saw them, for example when more than streamMaxLen entries
   * arrived during an outage. Open sockets missed them, so the push server
   * closes them and reports a gap when they resume. `firstReadId` is the
   * first entry of a read that is about to be handed over.
   */
  #coverLoss(state: StreamState, lastId: MessageId, firstReadId: MessageId | undefined): void {
    // The coverage start counts as read: the stream held no entry between the two.
    const readFrom = maxMessageId(lastId, this.#coverageFrom);
    if (this.#readingFromStart || !lostAfter(state, readFrom)) return;

    const from = firstReadId === undefined ? retainedAfter(state) : previousMessageId(firstReadId);
    this.#logger?.warn(
      { stream: this.#key, lastId: readFrom, coverageFrom: from },
      "done stream trimmed past unread entries",
    );
    this.#coverageFrom = from;
    this.#handOver.cover(from, true);
  }

  #onReadSucceeded(): void {
    if (this.#readFailing) {
      this.#logger?.info({ stream: this.#key, lastId: this.#lastId }, "stream read resumed");
    }
    this.#readFailing = false;
  }

  /**
   * Drops the reader's socket when an XREAD outlives its BLOCK time by far on
   * a connection that ioredis still considers ready. A network path that
   * fails silently returns no error until TCP gives up, which takes minutes.
   * ioredis then reconnects, the XREAD fails, and the read loop checks the
   * stream and reads again from the same id.
   */
  async #watchRead<T>(pending: Promise<T>): Promise<T> {
    const stallMs = this.#blockMs * 2 + 1000;
    // A command queued during an outage may never settle after close(), so
    // close() clears the timer too.
    this.#stallTimer = setInterval(() => {
      if (this.#closed || this.#reader.status !== "ready") return;
      this.#logger?.warn({ stream: this.#key, stallMs }, "stream read stalled, reconnecting");
      this.#reader.stream.destroy();
    }, stallMs);
    try {
      return await pending;
    } finally {
      clearInterval(this.#stallTimer);
    }
  }

  /**
   * Resolves with the outcome of `pending`, or with undefined as soon as the
   * bus closes. A command queued during an outage is not always rejected by
   * disconnect(), so close() must not wait for it.
   */
  #untilClosed<T>(pending: Promise<T>): Promise<T | undefined> {
    // The read loop waits for one command at a time, so one cancel function suffices.
    // Unlike Promise.race with one long-lived promise, this keeps no reaction per call.
    return new Promise<T | undefined>((resolve, reject) => {
      this.#cancelWait = () => resolve(undefined);
      pending.then(resolve, reject);
    }).finally(() => {
      this.#cancelWait = undefined;
    });
  }

  #onStreamEntries(entries: StreamEntry[], backfill: boolean): void {
    const lastEntry = entries.at(-1);
    if (lastEntry === undefined) return;
    this.#streamMissing = false;
    this.#handOver.handOverEntries(entries, backfill);
    if (backfill) return;
    this.#lastId = lastEntry[0];
    this.#readingFromStart = false;
  }
}
