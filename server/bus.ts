import type { Logger } from "../common/logger.ts";
import { doneMessageSchema, type DoneMessage } from "../protocol/message.ts";
import { MessageError, PushServerError, ServerErrorCode } from "./errors.ts";
import { Subscribers } from "./subscribers.ts";

/** Carries done messages from the workers that publish them to the push servers. */
export interface Bus {
  /**
   * Validates `message` with doneMessageSchema and hands it to every
   * subscriber. An invalid message is delivered to no subscriber, and the
   * promise rejects with MessageError (PATPUSH_MESSAGE_INVALID).
   */
  publish(message: unknown): Promise<void>;
  /** Registers `handler` for every later message and returns a function that removes it. */
  subscribe(handler: (message: DoneMessage) => void): () => void;
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
 * A bus inside one process: publish calls every subscriber synchronously,
 * so the message is handed over by the time the returned promise settles.
 */
export class EmbeddedBus implements Bus {
  readonly #subscribers = new Subscribers();
  readonly #logger: Logger | undefined;
  #closed = false;

  constructor(options: { logger?: Logger } = {}) {
    this.#logger = options.logger?.child({ component: "bus" });
  }

  async publish(message: unknown): Promise<void> {
    if (this.#closed) {
      throw new PushServerError(
        ServerErrorCode.BUS_CLOSED,
        "cannot publish: the bus is closed; publish before shutting down the push server",
      );
    }

    const valid = validateMessage(message);
    this.#subscribers.deliver(valid, this.#logger);
  }

  subscribe(handler: (message: DoneMessage) => void): () => void {
    return this.#subscribers.add(handler);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subscribers.clear();
  }
}
