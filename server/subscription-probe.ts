/**
 * Subscription probe: a Pub/Sub subscriber whose network path fails
 * silently keeps a connection that ioredis reports as ready while nothing
 * arrives, until TCP gives up minutes later. The probe publishes a message
 * on a channel of its own through another connection and expects it back
 * on the subscriber, and drops the subscriber's socket when it stays away.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../common/logger.ts";

/** Interval between two probe messages, in milliseconds. */
export const PROBE_INTERVAL_MS = 1000;

/**
 * Time without a probe message, while Redis accepts the probes, after which
 * the subscription counts as stalled, in milliseconds. With one check per
 * interval, a stall is detected within PROBE_SILENCE_MS + PROBE_INTERVAL_MS.
 */
export const PROBE_SILENCE_MS = 3000;

/** Options of {@link SubscriptionProbe}. */
export interface SubscriptionProbeOptions {
  /** Connection that publishes the probes. It must not be in subscriber mode. */
  writer: Redis;
  /** Connection in subscriber mode whose subscription the probe watches. */
  subscriber: Redis;
  /** Prefix of the probe channel `<keyPrefix>probe:<random token>`. */
  keyPrefix: string;
  logger?: Logger | undefined;
}

/**
 * Watches the subscription of one connection. The owner subscribes the
 * connection to {@link channel} together with its other channels, calls
 * {@link onSubscribed} when the subscription is confirmed, and
 * {@link onProbe} for every message on {@link channel}.
 */
export class SubscriptionProbe {
  /** Channel of this probe, unique per bus, so buses on one Redis never see each other's probes. */
  readonly channel: string;
  readonly #writer: Redis;
  readonly #subscriber: Redis;
  readonly #logger: Logger | undefined;
  #timer: NodeJS.Timeout | undefined;
  /**
   * Time of the last probe message received or of the confirmed subscription,
   * whichever is later. Undefined while the connection is not subscribed.
   */
  #heardAt: number | undefined;
  /** Time at which the newest probe that Redis accepted was sent. */
  #acceptedAt: number | undefined;
  #lastTickAt = 0;
  #publishing = false;

  constructor(options: SubscriptionProbeOptions) {
    this.channel = `${options.keyPrefix}probe:${randomBytes(8).toString("hex")}`;
    this.#writer = options.writer;
    this.#subscriber = options.subscriber;
    this.#logger = options.logger;
  }

  start(): void {
    this.#lastTickAt = Date.now();
    this.#timer = setInterval(() => this.#tick(), PROBE_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  onSubscribed(): void {
    this.#heardAt = Date.now();
  }

  onUnsubscribed(): void {
    this.#heardAt = undefined;
  }

  onProbe(): void {
    if (this.#heardAt !== undefined) this.#heardAt = Date.now();
  }

  /**
   * Returns true when no probe arrived for PROBE_SILENCE_MS although Redis
   * accepted a probe sent after the last one that arrived.
   */
  stalled(): boolean {
    if (this.#heardAt === undefined || this.#acceptedAt === undefined) return false;
    return this.#acceptedAt >= this.#heardAt && Date.now() - this.#heardAt >= PROBE_SILENCE_MS;
  }

  #tick(): void {
    const now = Date.now();
    // A late timer means a blocked event loop, which may not have read the probes
    // waiting in the socket yet, so this round only publishes.
    const late = now - this.#lastTickAt > PROBE_INTERVAL_MS * 2;
    this.#lastTickAt = now;

    if (!late && this.stalled() && this.#subscriber.status === "ready") {
      this.#logger?.warn(
        { redisChannel: this.channel, silentMs: now - (this.#heardAt ?? now) },
        "redis subscription stalled, reconnecting",
      );
      this.#heardAt = undefined;
      // ioredis reconnects, and the owner subscribes again on "ready".
      this.#subscriber.stream.destroy();
      return;
    }
    this.#publish(now);
  }

  #publish(sentAt: number): void {
    if (this.#publishing || this.#heardAt === undefined || this.#writer.status !== "ready") return;
    this.#publishing = true;
    this.#writer.publish(this.channel, String(sentAt)).then(
      () => {
        this.#acceptedAt = sentAt;
      },
      // The bus logs a failing writer through its connection events. Without an
      // accepted probe there is nothing to compare, so the probe waits.
      () => undefined,
    ).finally(() => {
      this.#publishing = false;
    });
  }
}
