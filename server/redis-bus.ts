import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../common/logger.ts";
import type { MessageId } from "../protocol/message-id.ts";
import type { Bus, BusHandler } from "./bus.ts";
import { PushServerError, ServerErrorCode } from "./errors.ts";
import {
  DEFAULT_KEY_PREFIX,
  DEFAULT_STREAM_MAX_LEN,
  doneKey,
  publishDoneMessage,
} from "./publish.ts";
import { RedisHandOver } from "./redis-hand-over.ts";
import { StreamReader } from "./redis-stream-reader.ts";
import { SubscriptionProbe } from "./subscription-probe.ts";

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
   * Age of the newest stream entries that the bus reads at start and hands
   * over as backfill, in milliseconds. The value 0 turns the backfill off.
   * @defaultValue 300000
   */
  recoveryWindowMs?: number;
  /**
   * Prefix of the names that the connections set with CLIENT SETNAME, followed
   * by `-writer`, `-reader` or `-subscriber`. @defaultValue "patpush"
   */
  connectionName?: string;
  logger?: Logger;
}

/** The three Redis connections of a bus, by job. */
type ConnectionRole = "writer" | "reader" | "subscriber";

/**
 * A bus across processes through Redis. Every push server reads the done
 * stream `<keyPrefix>done` with a blocking XREAD from the last entry id it
 * saw, and subscribes to the done channel of the same name. At start it reads
 * the entries of the recovery window as backfill, then sends its first
 * coverage event and reads on from the stream's end as it was at start. Each
 * valid message from either source goes to every subscriber, and an invalid
 * one is logged with its source and skipped.
 *
 * The bus keeps three connections. The writer sends XADD, XTRIM and the
 * probes of the subscription (see SubscriptionProbe). The reader runs the
 * blocking XREAD alone, so a slow read never delays a publish and close() can
 * drop it at once. The subscriber is in subscriber mode for the channels.
 * ioredis reconnects each of them itself.
 */
export class RedisBus implements Bus {
  readonly #handOver: RedisHandOver;
  readonly #logger: Logger | undefined;
  readonly #key: string;
  readonly #keyPrefix: string;
  readonly #streamMaxLen: number;
  readonly #writer: Redis;
  readonly #reader: Redis;
  readonly #subscriber: Redis;
  readonly #streamReader: StreamReader;
  readonly #probe: SubscriptionProbe;
  /** Roles whose connection is lost, so each outage is logged once. */
  readonly #down = new Set<ConnectionRole>();
  readonly #trimTimer: NodeJS.Timeout;
  #subscribed = false;
  #closed = false;

  constructor(options: RedisBusOptions) {
    this.#logger = options.logger?.child({ component: "redis-bus" });
    this.#keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.#key = doneKey(this.#keyPrefix);
    this.#streamMaxLen = options.streamMaxLen ?? DEFAULT_STREAM_MAX_LEN;
    this.#handOver = new RedisHandOver(this.#key, this.#logger);

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
    this.#probe = new SubscriptionProbe({
      writer: this.#writer,
      subscriber: this.#subscriber,
      keyPrefix: this.#keyPrefix,
      logger: this.#logger,
    });

    this.#subscriber.on("ready", () => this.#subscribeChannels());
    this.#subscriber.on("close", () => {
      this.#subscribed = false;
      this.#probe.onUnsubscribed();
    });
    this.#subscriber.on("message", (channel: string, text: string) =>
      this.#onChannelMessage(channel, text),
    );

    this.#streamReader = new StreamReader({
      reader: this.#reader,
      key: this.#key,
      blockMs: options.blockMs ?? 5000,
      recoveryWindowMs: options.recoveryWindowMs ?? 300_000,
      handOver: this.#handOver,
      logger: this.#logger,
    });
    this.#probe.start();
    this.#trimTimer = setInterval(() => void this.#trim(), options.trimIntervalMs ?? 60_000);
    this.#trimTimer.unref();
  }

  /**
   * Returns true while the stream reader and the channel subscriber are both
   * connected, the backfill is done, the last stream read succeeded and the
   * subscription probe reports no stall.
   */
  ready(): boolean {
    return (
      !this.#closed &&
      this.#subscribed &&
      this.#streamReader.reading() &&
      !this.#probe.stalled() &&
      this.#reader.status === "ready" &&
      this.#subscriber.status === "ready"
    );
  }

  /**
   * Validates `message`, appends it to the done stream (`XADD MAXLEN ~`),
   * from where every push server, this one included, reads it, and resolves
   * with its stream entry id. Throws MessageError on an invalid message and
   * PushServerError after close().
   */
  async publish(message: unknown): Promise<MessageId> {
    if (this.#closed) {
      throw new PushServerError(
        ServerErrorCode.BUS_CLOSED,
        "cannot publish: the bus is closed; publish before shutting down the push server",
      );
    }
    return publishDoneMessage(this.#writer, message, {
      keyPrefix: this.#keyPrefix,
      maxLen: this.#streamMaxLen,
    });
  }

  subscribe(handler: BusHandler): () => void {
    return this.#handOver.subscribe(handler);
  }

  /** Stops reading, drops every subscriber and disconnects at once, without waiting for XREAD. */
  async close(): Promise<void> {
    if (this.#closed) return this.#streamReader.close();
    this.#closed = true;
    clearInterval(this.#trimTimer);
    this.#probe.stop();
    this.#handOver.clear();

    const stopped = this.#streamReader.close();
    this.#reader.disconnect();
    this.#subscriber.disconnect();
    this.#writer.disconnect();
    await stopped;
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

  #subscribeChannels(): void {
    if (this.#closed) return;
    this.#subscriber.subscribe(this.#key, this.#probe.channel).then(
      () => {
        this.#subscribed = true;
        this.#probe.onSubscribed();
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

  #onChannelMessage(channel: string, text: string): void {
    if (this.#closed) return;
    if (channel === this.#probe.channel) {
      this.#probe.onProbe();
      return;
    }
    this.#handOver.handOverChannelText(text);
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
