import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../common/logger.ts";
import type { DoneMessage } from "../protocol/message.ts";
import type { Bus } from "./bus.ts";
import { PushServerError, ServerErrorCode } from "./errors.ts";
import {
  DEFAULT_KEY_PREFIX,
  DEFAULT_STREAM_MAX_LEN,
  MESSAGE_FIELD,
  doneKey,
  publishDoneMessage,
} from "./publish.ts";
import { fieldValue, parseMessageText } from "./redis-message.ts";
import { compareStreamIds, readStreamState } from "./stream-position.ts";
import { Subscribers } from "./subscribers.ts";

/** Options of {@link RedisBus}. */
export interface RedisBusOptions {
  /**
   * redis:// or rediss:// URL of the Redis server. It may contain a password,
   * so the bus never logs it.
   */
  redisUrl: string;
  /**
   * Prefix of the done stream and channel, which are both `<keyPrefix>done`.
   * @defaultValue "patpush:"
   */
  keyPrefix?: string;
  /** Approximate maximum number of entries in the done stream. @defaultValue 10000 */
  streamMaxLen?: number;
  /** Time one XREAD call blocks on the server, in milliseconds. @defaultValue 5000 */
  blockMs?: number;
  /** Interval between two `XTRIM MAXLEN ~` calls, in milliseconds. @defaultValue 60000 */
  trimIntervalMs?: number;
  /**
   * Prefix of the names that the connections set with CLIENT SETNAME, followed
   * by `-writer`, `-reader` or `-subscriber`. @defaultValue "patpush"
   */
  connectionName?: string;
  logger?: Logger;
}

/** The three Redis connections of a bus, by job. */
type ConnectionRole = "writer" | "reader" | "subscriber";

/** Maximum number of stream entries one XREAD returns. */
const READ_COUNT = 100;

/** Pause after a failed stream read before the next attempt, in milliseconds. */
const READ_RETRY_MS = 250;

/**
 * A bus across processes through Redis. Every push server reads the done
 * stream `<keyPrefix>done` with a blocking XREAD from the last entry id it
 * saw, starting at the stream's end, and subscribes to the done channel of
 * the same name. Each valid message from either source goes to every
 * subscriber, and an invalid one is logged with its source and skipped.
 *
 * The bus keeps three connections: one for XADD and XTRIM, one for the
 * blocking XREAD (so a slow read never delays a publish and close() can drop
 * it at once), and one in subscriber mode for the channel. ioredis reconnects
 * each of them itself.
 */
export class RedisBus implements Bus {
  readonly #subscribers = new Subscribers();
  readonly #logger: Logger | undefined;
  readonly #key: string;
  readonly #keyPrefix: string;
  readonly #streamMaxLen: number;
  readonly #blockMs: number;
  readonly #writer: Redis;
  readonly #reader: Redis;
  readonly #subscriber: Redis;
  /** Roles whose connection is lost, so each outage is logged once. */
  readonly #down = new Set<ConnectionRole>();
  readonly #trimTimer: NodeJS.Timeout;
  /** Timer that watches the XREAD in flight, see #watchRead. */
  #stallTimer: NodeJS.Timeout | undefined;
  readonly #readLoop: Promise<void>;
  /** Ends the wait of the read loop on close(), see #untilClosed. */
  #cancelWait: (() => void) | undefined;
  /**
   * Id of the last stream entry read, or undefined until the start position is
   * known. "0-0" after the stream was found missing or replaced.
   */
  #lastId: string | undefined;
  /** True when the stream must be checked for a reset before the next XREAD, see #checkStream. */
  #streamCheckDue = false;
  /**
   * True from a check that found no done stream key until the stream is seen
   * again, so each absence is logged once.
   */
  #streamMissing = false;
  /** True from a failed stream read until the next successful one. */
  #readFailing = false;
  #subscribed = false;
  #closed = false;

  constructor(options: RedisBusOptions) {
    this.#logger = options.logger?.child({ component: "redis-bus" });
    this.#keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.#key = doneKey(this.#keyPrefix);
    this.#streamMaxLen = options.streamMaxLen ?? DEFAULT_STREAM_MAX_LEN;
    this.#blockMs = options.blockMs ?? 5000;

    const name = options.connectionName ?? "patpush";
    this.#writer = this.#connect(options.redisUrl, "writer", { connectionName: `${name}-writer` });
    // Commands of the reader and the subscriber wait through an outage of any length.
    this.#reader = this.#connect(options.redisUrl, "reader", {
      connectionName: `${name}-reader`,
      maxRetriesPerRequest: null,
    });
    // The bus subscribes on every connect itself, because the automatic
    // resubscription of ioredis 5 leaves its promise unhandled, so a close()
    // during a reconnect would raise an unhandled rejection.
    this.#subscriber = this.#connect(options.redisUrl, "subscriber", {
      connectionName: `${name}-subscriber`,
      maxRetriesPerRequest: null,
      autoResubscribe: false,
    });
    // A reconnect may reach a restarted Redis or a replica that took over, which can
    // hold a new stream with lower ids.
    this.#reader.on("ready", () => {
      this.#streamCheckDue = true;
    });
    // NOTE: only the reader detects a silently dead network path (#watchRead). The
    // subscriber waits for TCP to fail, and ready() stays true until then.
    this.#subscriber.on("ready", () => this.#subscribeChannel());
    this.#subscriber.on("close", () => {
      this.#subscribed = false;
    });
    this.#subscriber.on("message", (_channel: string, text: string) =>
      this.#onChannelMessage(text),
    );

    this.#readLoop = this.#readStream();
    this.#trimTimer = setInterval(() => void this.#trim(), options.trimIntervalMs ?? 60_000);
    this.#trimTimer.unref();
  }

  /**
   * Returns true while the stream reader and the channel subscriber are both
   * connected and the last stream read succeeded.
   */
  ready(): boolean {
    return (
      !this.#closed &&
      this.#subscribed &&
      this.#lastId !== undefined &&
      !this.#readFailing &&
      this.#reader.status === "ready" &&
      this.#subscriber.status === "ready"
    );
  }

  /**
   * Validates `message` and appends it to the done stream (`XADD MAXLEN ~`),
   * from where every push server, this one included, reads it. Throws
   * MessageError on an invalid message and PushServerError after close().
   */
  async publish(message: unknown): Promise<void> {
    if (this.#closed) {
      throw new PushServerError(
        ServerErrorCode.BUS_CLOSED,
        "cannot publish: the bus is closed; publish before shutting down the push server",
      );
    }
    await publishDoneMessage(this.#writer, message, {
      keyPrefix: this.#keyPrefix,
      maxLen: this.#streamMaxLen,
    });
  }

  subscribe(handler: (message: DoneMessage) => void): () => void {
    return this.#subscribers.add(handler);
  }

  /** Stops reading, drops every subscriber and disconnects at once, without waiting for XREAD. */
  async close(): Promise<void> {
    if (this.#closed) return this.#readLoop;
    this.#closed = true;
    this.#cancelWait?.();
    clearInterval(this.#trimTimer);
    clearInterval(this.#stallTimer);
    this.#subscribers.clear();

    this.#reader.disconnect();
    this.#subscriber.disconnect();
    this.#writer.disconnect();
    await this.#readLoop;
    this.#logger?.info({ stream: this.#key }, "redis bus closed");
  }

  #connect(url: string, role: ConnectionRole, options: RedisOptions): Redis {
    const redis = new Redis(url, options);

    redis.on("ready", () => {
      if (this.#closed) return;
      const restored = this.#down.delete(role);
      this.#logger?.info({ connection: role }, restored ? "redis reconnected" : "redis connected");
    });
    // ioredis emits "error" on every failed reconnect attempt and "close" on
    // every lost connection, so only the first of an outage is logged.
    redis.on("error", (error: Error) => this.#onConnectionLost(role, error));
    redis.on("close", () => this.#onConnectionLost(role));
    return redis;
  }

  #subscribeChannel(): void {
    if (this.#closed) return;
    this.#subscriber.subscribe(this.#key).then(
      () => {
        this.#subscribed = true;
      },
      (error: unknown) => {
        if (!this.#closed) this.#logger?.error({ err: error }, "redis subscribe failed");
      },
    );
  }

  #onConnectionLost(role: ConnectionRole, error?: Error): void {
    if (this.#closed || this.#down.has(role)) return;
    this.#down.add(role);
    this.#logger?.warn({ connection: role, err: error }, "redis connection lost");
  }

  /**
   * Reads the done stream until close(). After any failure it resumes from
   * the last entry id it delivered, so entries written while the reader was
   * disconnected are delivered once it is back. After a reconnect, a failure
   * or an XREAD that returned nothing, it first checks whether the stream was
   * deleted or replaced (#checkStream), so normal traffic costs no extra command.
   */
  async #readStream(): Promise<void> {
    while (!this.#closed) {
      try {
        this.#lastId ??= await this.#untilClosed(this.#latestEntryId());
        if (this.#closed || this.#lastId === undefined) return;
        if (this.#streamCheckDue) await this.#checkStream();
        if (this.#closed) return;

        const reply = await this.#untilClosed(
          this.#watchRead(
            this.#reader.xread(
              "COUNT",
              READ_COUNT,
              "BLOCK",
              this.#blockMs,
              "STREAMS",
              this.#key,
              this.#lastId,
            ),
          ),
        );
        if (this.#closed) return;
        this.#onReadSucceeded();
        if (!reply?.length) this.#streamCheckDue = true;
        for (const [, entries] of reply ?? []) this.#onStreamEntries(entries);
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
   * Moves the read position to "0-0" when the done stream is missing or was
   * replaced, so the first entry of a recreated stream is delivered. A stream
   * whose last-generated-id is below the last id read was replaced, for example
   * by DEL and XADD, or by a Redis restart without persistence or a failover
   * to a server whose clock is behind. Throws what the check's commands throw.
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
      this.#lastId = "0-0";
      return;
    }
    this.#streamMissing = false;
    // NOTE: a replacing stream whose ids already passed the last id read looks
    // like the old one, so its entries up to that id are not delivered.
    if (this.#lastId !== undefined && compareStreamIds(state.lastGeneratedId, this.#lastId) < 0) {
      this.#logger?.warn(
        { stream: this.#key, lastId: this.#lastId, lastGeneratedId: state.lastGeneratedId },
        "done stream reset",
      );
      this.#lastId = "0-0";
    }
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
   * ioredis then reconnects and sends the pending XREAD again, with the same id.
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

  /** Returns the id of the stream's newest entry, or "0-0" for an empty or missing stream. */
  async #latestEntryId(): Promise<string> {
    const entries = await this.#reader.xrevrange(this.#key, "+", "-", "COUNT", 1);
    return entries[0]?.[0] ?? "0-0";
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

  #onStreamEntries(entries: [id: string, fields: string[]][]): void {
    if (entries.length > 0) this.#streamMissing = false;
    for (const [id, fields] of entries) {
      this.#lastId = id;
      const parsed = parseMessageText(fieldValue(fields, MESSAGE_FIELD));
      if ("problems" in parsed) {
        this.#logger?.warn(
          { stream: this.#key, streamId: id, problems: parsed.problems },
          "invalid done message skipped",
        );
        continue;
      }
      this.#logger?.debug({ stream: this.#key, streamId: id }, "stream message received");
      this.#handOver(parsed.message);
    }
  }

  #onChannelMessage(text: string): void {
    if (this.#closed) return;
    const parsed = parseMessageText(text);
    if ("problems" in parsed) {
      this.#logger?.warn(
        { redisChannel: this.#key, problems: parsed.problems },
        "invalid done message skipped",
      );
      return;
    }
    this.#logger?.debug({ redisChannel: this.#key }, "channel message received");
    this.#handOver(parsed.message);
  }

  #handOver(message: DoneMessage): void {
    this.#subscribers.deliver(message, this.#logger);
  }

  async #trim(): Promise<void> {
    try {
      await this.#writer.xtrim(this.#key, "MAXLEN", "~", this.#streamMaxLen);
    } catch (error) {
      if (!this.#closed) {
        this.#logger?.warn({ err: error, stream: this.#key }, "stream trim failed");
      }
    }
  }
}
