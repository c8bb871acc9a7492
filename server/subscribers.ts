import type { Logger } from "../common/logger.ts";
import type { BusCoverage, BusEvent, BusHandler } from "./bus.ts";

/**
 * The subscribers of a bus, called in turn for every event it hands over,
 * and the bus's latest coverage event, which each new subscriber receives first.
 */
export class Subscribers {
  readonly #handlers = new Set<BusHandler>();
  #coverage: BusCoverage | undefined;

  /** Latest coverage event, or undefined while the bus does not know its start position. */
  get coverage(): BusCoverage | undefined {
    return this.#coverage;
  }

  /**
   * Adds a handler, calls it with the latest coverage event when there is
   * one, and returns the function that removes it.
   */
  add(handler: BusHandler, logger?: Logger): () => void {
    // Wrap the handler, so subscribing one function twice gives two independent entries.
    const entry: BusHandler = (event) => handler(event);
    this.#handlers.add(entry);
    if (this.#coverage !== undefined) callHandler(entry, this.#coverage, logger);
    return () => {
      this.#handlers.delete(entry);
    };
  }

  /** Stores `coverage` as the latest coverage event and hands it to every handler. */
  setCoverage(coverage: BusCoverage, logger: Logger | undefined): void {
    this.#coverage = coverage;
    this.deliver(coverage, logger);
  }

  /** Calls every handler with `event`; a handler that throws is logged and skipped. */
  deliver(event: BusEvent, logger: Logger | undefined): void {
    // Copy the set, so a handler that unsubscribes does not skip its neighbour.
    for (const handler of [...this.#handlers]) callHandler(handler, event, logger);
  }

  clear(): void {
    this.#handlers.clear();
  }
}

function callHandler(handler: BusHandler, event: BusEvent, logger: Logger | undefined): void {
  try {
    handler(event);
  } catch (error) {
    // One failing subscriber must not keep the event from the others.
    logger?.error({ err: error, event: event.type }, "bus subscriber failed");
  }
}
