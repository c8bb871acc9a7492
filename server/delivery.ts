import type { TemplatedApp } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import type { MessageFrame } from "../protocol/frames.ts";
import { compareMessageIds, type MessageId } from "../protocol/message-id.ts";
import { isLogoutMessage, type DoneMessage } from "../protocol/message.ts";
import type { AuthIdentity } from "./auth.ts";
import type { BusCoverage, BusEvent, BusMessage } from "./bus.ts";
import type { RecoveryHistory } from "./history.ts";
import type { PushMetrics } from "./metrics.ts";

// uWS topics are exact strings in this version (no MQTT wildcards), and the
// fixed prefixes keep a user id from ever naming a channel topic or the reverse.

/** Returns the uWS topic that carries messages for `user`. */
export function userTopic(user: string): string {
  return `user:${user}`;
}

/** Returns the uWS topic that carries messages for `channel`. */
export function channelTopic(channel: string): string {
  return `channel:${channel}`;
}

/**
 * Returns the topics of a socket: its user's topic, then one per granted
 * channel. A channel the portal granted twice appears once, so a replay
 * never sends its frames twice.
 */
export function socketTopics(identity: AuthIdentity): string[] {
  return [...new Set([userTopic(identity.user), ...identity.channels.map(channelTopic)])];
}

/** Returns the topic of the message's recipient: its user, or else its channel. */
export function recipientTopic(message: DoneMessage): string {
  if (message.user !== undefined) return userTopic(message.user);
  if (message.channel !== undefined) return channelTopic(message.channel);
  // doneMessageSchema rejects a message without a recipient, so only unvalidated input gets here.
  throw new TypeError(
    "done message names neither user nor channel; validate it with doneMessageSchema",
  );
}

/**
 * Builds the frame a socket receives: the message without its `user`
 * recipient field, and `live: true` for a message that was never stored.
 */
export function toMessageFrame(id: MessageId, message: DoneMessage, live = false): MessageFrame {
  const frame: MessageFrame = { type: "message", id };
  if (live) frame.live = true;
  if (message.channel !== undefined) frame.channel = message.channel;
  if (message.html !== undefined) frame.html = message.html;
  if (message.event !== undefined) frame.event = message.event;
  if (message.data !== undefined) frame.data = message.data;
  if (message.pushId !== undefined) frame.pushId = message.pushId;
  return frame;
}

/** Callbacks of the push server around delivery: slow socket checks, a reset and a logout. */
export interface DeliveryHooks {
  /** Runs after a frame was published to the topic of `user`. */
  afterUserPublish(user: string): void;
  /** Runs after a reset coverage dropped the history. */
  onReset(coverage: BusCoverage): void;
  /** Runs for a logout message of `user` that is not a backfill. */
  onLogout(user: string): void;
}

/** One caller of {@link Delivery.waitUntilReady}. */
interface PositionWaiter {
  id: MessageId | undefined;
  resolve: (reached: boolean) => void;
  timer: NodeJS.Timeout;
}

/**
 * Delivers bus events to sockets through uWS topics and keeps the recovery
 * history. Each message is encoded once: uWS copies the same bytes to every
 * subscriber of the topic, and the history keeps them for a replay.
 */
export class Delivery {
  readonly #app: TemplatedApp;
  readonly #history: RecoveryHistory;
  readonly #metrics: PushMetrics;
  readonly #hooks: DeliveryHooks;
  readonly #logger: Logger;
  readonly #waiters = new Set<PositionWaiter>();
  #position: MessageId | undefined;
  #covered = false;

  constructor(
    app: TemplatedApp,
    history: RecoveryHistory,
    metrics: PushMetrics,
    hooks: DeliveryHooks,
    logger: Logger,
  ) {
    this.#app = app;
    this.#history = history;
    this.#metrics = metrics;
    this.#hooks = hooks;
    this.#logger = logger;
  }

  /**
   * Position: the id of the newest stored message handed over, or the
   * coverage start when that is higher. Undefined until the bus hands over
   * a stored message or its coverage.
   */
  get position(): MessageId | undefined {
    return this.#position;
  }

  /** True once the bus has sent its coverage, so its backfill is complete. */
  get covered(): boolean {
    return this.#covered;
  }

  /** Handles one bus event. The bus calls it for every event, in order. */
  handle(event: BusEvent): void {
    if (event.type === "coverage") this.#onCoverage(event);
    else this.#onMessage(event);
  }

  /**
   * Resolves with true once the bus has sent its coverage and the position
   * has reached `id` (when given), or with false after `timeoutMs` or when
   * {@link close} runs first.
   */
  waitUntilReady(id: MessageId | undefined, timeoutMs: number): Promise<boolean> {
    if (this.#reached(id)) return Promise.resolve(true);

    return new Promise<boolean>((resolve) => {
      const waiter: PositionWaiter = {
        id,
        resolve,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Resolves every waiter with false and clears its timer. */
  close(): void {
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.#waiters.clear();
  }

  #onCoverage(coverage: BusCoverage): void {
    this.#history.setCoverage(coverage.from, coverage.reset);
    const position = this.#position;
    const ahead = position === undefined || compareMessageIds(coverage.from, position) > 0;
    // After a reset the ids start over, so the position may move down.
    if (coverage.reset || ahead) this.#position = coverage.from;
    this.#covered = true;
    this.#logger.info({ from: coverage.from, reset: coverage.reset }, "bus coverage received");
    if (coverage.reset) this.#hooks.onReset(coverage);
    this.#resolveWaiters();
  }

  #onMessage(event: BusMessage): void {
    const { id, message, live, backfill } = event;
    if (!live && this.#position !== undefined && compareMessageIds(id, this.#position) <= 0) {
      // The bus hands over stored messages in id order, so this one was handed over already.
      this.#logger.debug({ msgId: id }, "repeated message skipped");
      return;
    }

    if (isLogoutMessage(message)) {
      this.#onLogout(event, message.user);
      return;
    }

    const topic = recipientTopic(message);
    const text = JSON.stringify(toMessageFrame(id, message, live));
    if (!live) {
      this.#history.store(topic, id, text);
      this.#position = id;
    }
    // A bus hands over its backfill before its coverage, and every upgrade waits for the
    // coverage, so no open socket is missing a backfill frame.
    if (!backfill) this.#publish(topic, text, event);
    if (!live && this.#waiters.size > 0) this.#resolveWaiters();
  }

  /**
   * Handles a logout: moves the position like any stored message, but
   * neither stores nor sends a frame, so no socket ever replays it. A
   * backfill logout happened before this server started, so it closes nothing.
   */
  #onLogout(event: BusMessage, user: string): void {
    const { id, live, backfill } = event;
    if (!live) this.#position = id;
    if (!backfill) {
      this.#logger.info({ msgId: id, user, live }, "logout received");
      this.#hooks.onLogout(user);
    }
    if (!live && this.#waiters.size > 0) this.#resolveWaiters();
  }

  #publish(topic: string, text: string, event: BusMessage): void {
    this.#app.publish(topic, text, false, false);
    this.#metrics.messagesDelivered.inc();
    const { id, live, message } = event;
    if (this.#logger.isLevelEnabled("debug")) {
      const recipients = this.#app.numSubscribers(topic);
      const { user, channel } = message;
      this.#logger.debug({ msgId: id, live, user, channel, recipients }, "message delivered");
    }
    if (message.user !== undefined) this.#hooks.afterUserPublish(message.user);
  }

  #reached(id: MessageId | undefined): boolean {
    if (!this.#covered || this.#position === undefined) return false;
    return id === undefined || compareMessageIds(this.#position, id) >= 0;
  }

  #resolveWaiters(): void {
    for (const waiter of this.#waiters) {
      if (!this.#reached(waiter.id)) continue;
      clearTimeout(waiter.timer);
      this.#waiters.delete(waiter);
      waiter.resolve(true);
    }
  }
}
