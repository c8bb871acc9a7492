import type { Logger } from "../common/logger.ts";
import { compareMessageIds, ZERO_MESSAGE_ID, type MessageId } from "../protocol/message-id.ts";
import type { BusHandler } from "./bus.ts";
import { MESSAGE_FIELD } from "./publish.ts";
import type { StreamEntry } from "./redis-backfill.ts";
import { fieldValue, parseMessageText } from "./redis-message.ts";
import { previousMessageId } from "./stream-position.ts";
import { Subscribers } from "./subscribers.ts";

/**
 * Turns what a RedisBus reads into bus events for its subscribers: stream
 * entries become stored messages with their entry id, channel messages
 * become live messages with the newest stored id. Between two coverage
 * events the ids of stored messages strictly increase: an entry whose id is
 * not above the newest one handed over comes from a replaced stream, so a
 * reset coverage event goes out before it.
 */
export class RedisHandOver {
  readonly #subscribers = new Subscribers();
  readonly #logger: Logger | undefined;
  readonly #key: string;
  /** Newest stored message id handed over since the last reset, ZERO_MESSAGE_ID before any. */
  #newestId: MessageId = ZERO_MESSAGE_ID;

  constructor(key: string, logger: Logger | undefined) {
    this.#key = key;
    this.#logger = logger;
  }

  /** Whether a coverage event went out, so the start position is known. */
  get covered(): boolean {
    return this.#subscribers.coverage !== undefined;
  }

  subscribe(handler: BusHandler): () => void {
    return this.#subscribers.add(handler, this.#logger);
  }

  clear(): void {
    this.#subscribers.clear();
  }

  /**
   * Sends a coverage event. A reset also sets the newest id back to
   * ZERO_MESSAGE_ID, so the lower ids of the replacing stream pass the order check.
   */
  cover(from: MessageId, reset: boolean): void {
    if (reset) this.#newestId = ZERO_MESSAGE_ID;
    this.#logger?.info({ stream: this.#key, from, reset }, "stream coverage");
    this.#subscribers.setCoverage({ type: "coverage", from, reset }, this.#logger);
  }

  /**
   * Hands over each valid entry in order, marked with `backfill`. An invalid
   * entry is logged at warn level with its id and skipped.
   */
  handOverEntries(entries: StreamEntry[], backfill: boolean): void {
    for (const [id, fields] of entries) {
      const parsed = parseMessageText(fieldValue(fields, MESSAGE_FIELD));
      if ("problems" in parsed) {
        this.#logger?.warn(
          { stream: this.#key, streamId: id, problems: parsed.problems },
          "invalid done message skipped",
        );
        continue;
      }

      if (compareMessageIds(id, this.#newestId) <= 0) {
        this.#logger?.warn(
          { stream: this.#key, streamId: id, newestId: this.#newestId },
          "done stream reset",
        );
        // Entries below this one were read before or are gone from the new stream.
        this.cover(previousMessageId(id), true);
      }
      this.#newestId = id;
      this.#logger?.debug({ stream: this.#key, streamId: id, backfill }, "stream message received");
      this.#subscribers.deliver(
        { type: "message", id, message: parsed.message, live: false, backfill },
        this.#logger,
      );
    }
  }

  /** Hands over the text of a channel message as a live message, or logs and skips it. */
  handOverChannelText(text: string): void {
    const parsed = parseMessageText(text);
    if ("problems" in parsed) {
      this.#logger?.warn(
        { redisChannel: this.#key, problems: parsed.problems },
        "invalid done message skipped",
      );
      return;
    }
    this.#logger?.debug({ redisChannel: this.#key }, "channel message received");
    this.#subscribers.deliver(
      { type: "message", id: this.#newestId, message: parsed.message, live: true, backfill: false },
      this.#logger,
    );
  }
}
