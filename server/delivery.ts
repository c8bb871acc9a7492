import type { TemplatedApp, WebSocket } from "@trufflesuite/uws-js-unofficial";
import type { Logger } from "../common/logger.ts";
import type { MessageFrame } from "../protocol/frames.ts";
import type { DoneMessage } from "../protocol/message.ts";
import type { AuthIdentity } from "./auth.ts";

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

/** Subscribes a newly opened socket to its user's topic and to each granted channel. */
export function subscribeSocket<T>(ws: WebSocket<T>, identity: AuthIdentity): void {
  ws.subscribe(userTopic(identity.user));
  for (const channel of identity.channels) ws.subscribe(channelTopic(channel));
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

/** Builds the frame a socket receives: the message without its `user` recipient field. */
export function toMessageFrame(id: number, message: DoneMessage): MessageFrame {
  const frame: MessageFrame = { type: "message", id };
  if (message.channel !== undefined) frame.channel = message.channel;
  if (message.html !== undefined) frame.html = message.html;
  if (message.event !== undefined) frame.event = message.event;
  if (message.data !== undefined) frame.data = message.data;
  if (message.pushId !== undefined) frame.pushId = message.pushId;
  return frame;
}

/**
 * Delivers done messages to sockets through uWS topics. Each message gets
 * the next id of one counter per server and is encoded once. uWS then copies
 * the same bytes to every subscriber of the topic.
 */
export class Delivery {
  readonly #app: TemplatedApp;
  readonly #logger: Logger;
  #lastId = 0;

  constructor(app: TemplatedApp, logger: Logger) {
    this.#app = app;
    this.#logger = logger;
  }

  /** Id of the last message this server assigned, or 0 before the first. */
  get lastId(): number {
    return this.#lastId;
  }

  /** Assigns the next id to `message`, publishes its frame to the recipient and returns the id. */
  deliver(message: DoneMessage): number {
    const topic = recipientTopic(message);
    const id = ++this.#lastId;
    const text = JSON.stringify(toMessageFrame(id, message));

    this.#app.publish(topic, text, false, false);
    if (this.#logger.isLevelEnabled("debug")) {
      const recipients = this.#app.numSubscribers(topic);
      this.#logger.debug(
        { msgId: id, user: message.user, channel: message.channel, recipients },
        "message delivered",
      );
    }
    return id;
  }
}
