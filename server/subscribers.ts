import type { Logger } from "../common/logger.ts";
import type { DoneMessage } from "../protocol/message.ts";

export type MessageHandler = (message: DoneMessage) => void;

/** The subscribers of a bus, called in turn for every message it hands over. */
export class Subscribers {
  readonly #handlers = new Set<MessageHandler>();

  /** Adds a handler and returns the function that removes it. */
  add(handler: MessageHandler): () => void {
    // Wrap the handler, so subscribing one function twice gives two independent entries.
    const entry: MessageHandler = (message) => handler(message);
    this.#handlers.add(entry);
    return () => {
      this.#handlers.delete(entry);
    };
  }

  /** Calls every handler with `message`; a handler that throws is logged and skipped. */
  deliver(message: DoneMessage, logger: Logger | undefined): void {
    // Copy the set, so a handler that unsubscribes does not skip its neighbour.
    for (const handler of [...this.#handlers]) {
      try {
        handler(message);
      } catch (error) {
        // One failing subscriber must not keep the message from the others.
        logger?.error({ err: error }, "bus subscriber failed");
      }
    }
  }

  clear(): void {
    this.#handlers.clear();
  }
}
