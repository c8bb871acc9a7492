/**
 * Message ids: every stored done message is identified by its Redis stream
 * entry id, `<ms>-<seq>` (two decimal integers without leading zeros), or by
 * an id of the same form that the embedded bus assigns. Ids increase with
 * every stored message, so they also increase along each user's messages, and
 * a reconnecting client asks for everything after the last id it saw.
 */

/** A message id: `<ms>-<seq>`, each part 1-20 decimal digits without leading zeros. */
export type MessageId = string;

const MESSAGE_ID = /^(?:0|[1-9][0-9]{0,19})-(?:0|[1-9][0-9]{0,19})$/;

/** The id below every message id. */
export const ZERO_MESSAGE_ID: MessageId = "0-0";

/** Returns true when `value` is a well-formed message id. */
export function isMessageId(value: unknown): value is MessageId {
  return typeof value === "string" && MESSAGE_ID.test(value);
}

/**
 * Compares two well-formed message ids. Returns a negative number, zero or a
 * positive number when `a` is lower than, equal to or higher than `b`. It
 * compares the decimal strings without converting them, so it allocates
 * nothing and stays exact beyond 2^53.
 */
export function compareMessageIds(a: MessageId, b: MessageId): number {
  const aDash = a.indexOf("-");
  const bDash = b.indexOf("-");
  return (
    compareDecimal(a, 0, aDash, b, 0, bDash) ||
    compareDecimal(a, aDash + 1, a.length, b, bDash + 1, b.length)
  );
}

/** Returns the higher of two message ids. */
export function maxMessageId(a: MessageId, b: MessageId): MessageId {
  return compareMessageIds(a, b) >= 0 ? a : b;
}

/** Returns the milliseconds part of a message id: the time the message was stored. */
export function messageIdTime(id: MessageId): number {
  return Number(id.slice(0, id.indexOf("-")));
}

/** Compares the digit runs a[aStart, aEnd) and b[bStart, bEnd) as non-negative integers. */
function compareDecimal(
  a: string,
  aStart: number,
  aEnd: number,
  b: string,
  bStart: number,
  bEnd: number,
): number {
  const aLength = aEnd - aStart;
  const bLength = bEnd - bStart;
  if (aLength !== bLength) return aLength < bLength ? -1 : 1;
  for (let i = 0; i < aLength; i += 1) {
    const difference = a.charCodeAt(aStart + i) - b.charCodeAt(bStart + i);
    if (difference !== 0) return difference < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * Assigns increasing message ids in one process, for a bus without Redis:
 * `<ms>-<seq>` with the current time, where `seq` counts messages within one
 * millisecond. A clock that steps back keeps the last millisecond, so ids
 * never decrease.
 */
export class MessageIdGenerator {
  readonly #now: () => number;
  #ms: number;
  #seq = 0;

  /** Every id this generator returns is higher than {@link start}. */
  readonly start: MessageId;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#ms = now();
    this.start = `${this.#ms}-0`;
  }

  /** Returns the next id, higher than every id returned before. */
  next(): MessageId {
    const now = this.#now();
    if (now > this.#ms) {
      this.#ms = now;
      this.#seq = 0;
    }
    this.#seq += 1;
    return `${this.#ms}-${this.#seq}`;
  }
}
