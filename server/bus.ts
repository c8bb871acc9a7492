import type { Logger } from "../common/logger.ts";
import { doneMessageSchema, type DoneMessage } from "../protocol/message.ts";
import { MessageIdGenerator, type MessageId } from "../protocol/message-id.ts";
import { MessageError, PushServerError, ServerErrorCode } from "./errors.ts";
import { Subscribers } from "./subscribers.ts";

/** A done message that a bus hands over to its subscribers. */
export interface BusMessage {
  type: "message";
  /**
   * Message id: the stream entry id of a stored message. For a live message,
   * the id of the newest stored message handed over before it.
   */
  id: MessageId;
  message: DoneMessage;
  /** True for a message that was never stored (Redis PUBLISH). It is never replayed. */
  live: boolean;
  /**
   * True for a stored message read at start-up to fill the recovery history.
   * It was published before this bus started, so it goes to no open socket.
   */
  backfill: boolean;
}

/**
 * The range of stored messages that a bus hands over: every stored message
 * with an id above `from` either came before this event as a backfill or
 * comes after it, in id order. A bus sends it after its start-up backfill,
 * and again when its stream was replaced and ids may start over lower.
 */
export interface BusCoverage {
  type: "coverage";
  from: MessageId;
  /**
   * True when the stored messages handed over before this event belong to
   * a stream that no longer exists, or when stored messages were lost before
   * the bus read them (trimmed during an outage). A recovery history then
   * drops what it holds, and open sockets must resume, because they may
   * have missed messages.
   */
  reset: boolean;
}

export type BusEvent = BusMessage | BusCoverage;

export type BusHandler = (event: BusEvent) => void;

/** Carries done messages from the workers that publish them to the push servers. */
export interface Bus {
  /**
   * Validates `message` with doneMessageSchema, stores it and hands it to
   * every subscriber, and resolves with its message id. An invalid message
   * is delivered to no subscriber, and the promise rejects with
   * MessageError (PATPUSH_MESSAGE_INVALID).
   */
  publish(message: unknown): Promise<MessageId>;
  /**
   * Registers `handler` for every later event and returns a function that
   * removes it. When the bus has sent a coverage event, the handler
   * receives the latest coverage event at once, before this returns.
   */
  subscribe(handler: BusHandler): () => void;
  /** Stops accepting messages and drops every subscriber. */
  close(): Promise<void>;
  /**
   * Returns false while the bus cannot receive messages, for example while
   * Redis is unreachable. A bus without this method is always ready.
   */
  ready?(): boolean;
}

/**
 * Validates a message against the done-message schema. Throws MessageError,
 * which lists every problem as `path: rule`.
 */
export function validateMessage(message: unknown): DoneMessage {
  const result = doneMessageSchema.safeParse(message);
  if (result.success) return result.data;

  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(root)";
    return `${path}: ${issue.message}`;
  });
  throw new MessageError(problems);
}

/**
 * A bus inside one process: publish assigns the next id of a
 * MessageIdGenerator and calls every subscriber synchronously, so the
 * message is handed over by the time the returned promise settles. It
 * stores nothing itself: the push server's recovery history keeps what
 * a reconnecting socket needs, and a restart starts a new id range.
 */
export class EmbeddedBus implements Bus {
  readonly #subscribers = new Subscribers();
  readonly #ids: MessageIdGenerator;
  readonly #logger: Logger | undefined;
  #closed = false;

  constructor(options: { logger?: Logger; now?: () => number } = {}) {
    this.#logger = options.logger?.child({ component: "bus" });
    this.#ids = new MessageIdGenerator(options.now);
    this.#subscribers.setCoverage(
      { type: "coverage", from: this.#ids.start, reset: false },
      this.#logger,
    );
  }

  async publish(message: unknown): Promise<MessageId> {
    if (this.#closed) {
      throw new PushServerError(
        ServerErrorCode.BUS_CLOSED,
        "cannot publish: the bus is closed; publish before shutting down the push server",
      );
    }

    const valid = validateMessage(message);
    const id = this.#ids.next();
    this.#subscribers.deliver(
      { type: "message", id, message: valid, live: false, backfill: false },
      this.#logger,
    );
    return id;
  }

  subscribe(handler: BusHandler): () => void {
    return this.#subscribers.add(handler, this.#logger);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subscribers.clear();
  }
}
