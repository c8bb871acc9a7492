import type { Redis } from "ioredis";
import type { MessageId } from "../protocol/message-id.ts";
import { validateMessage } from "./bus.ts";

/** Prefix of every Redis key and channel that patpush uses, unless configured otherwise. */
export const DEFAULT_KEY_PREFIX = "patpush:";

/** Approximate maximum number of entries in the done stream, unless configured otherwise. */
export const DEFAULT_STREAM_MAX_LEN = 10_000;

/** Field of a done stream entry that contains the done message JSON. */
export const MESSAGE_FIELD = "message";

/** Returns the name of the done stream and of the done channel: `<keyPrefix>done`. */
export function doneKey(keyPrefix: string = DEFAULT_KEY_PREFIX): string {
  return `${keyPrefix}done`;
}

/** Options of {@link publishDoneMessage}. */
export interface PublishDoneMessageOptions {
  /** Prefix of the done stream's key. @defaultValue "patpush:" */
  keyPrefix?: string;
  /** Approximate maximum number of entries kept in the stream (`MAXLEN ~`). @defaultValue 10000 */
  maxLen?: number;
}

/**
 * Validates a done message and appends it to the done stream with
 * `XADD <keyPrefix>done MAXLEN ~ <maxLen> * message <json>`. Returns the
 * stream entry id, which is the message id that push servers give the
 * message. Throws MessageError (PATPUSH_MESSAGE_INVALID) before
 * writing anything when the message fails the schema, and RangeError on a
 * `maxLen` that is not a positive integer.
 */
export async function publishDoneMessage(
  redis: Redis,
  message: unknown,
  options: PublishDoneMessageOptions = {},
): Promise<MessageId> {
  const maxLen = options.maxLen ?? DEFAULT_STREAM_MAX_LEN;
  if (!Number.isSafeInteger(maxLen) || maxLen < 1) {
    throw new RangeError(`maxLen must be a positive integer (got ${String(maxLen)})`);
  }

  const valid = validateMessage(message);
  const key = doneKey(options.keyPrefix);
  const id = await redis.xadd(
    key,
    "MAXLEN",
    "~",
    maxLen,
    "*",
    MESSAGE_FIELD,
    JSON.stringify(valid),
  );
  // XADD returns null only with NOMKSTREAM, which this call does not pass.
  return id as MessageId;
}
