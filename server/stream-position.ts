import type { Redis } from "ioredis";
import { compareMessageIds, ZERO_MESSAGE_ID, type MessageId } from "../protocol/message-id.ts";

/** State of the done stream key at one check. */
export type StreamState =
  | { exists: false }
  | {
      exists: true;
      lastGeneratedId: MessageId;
      /** Id of the oldest entry, or undefined for an empty stream. */
      firstEntryId: MessageId | undefined;
      /**
       * Highest id removed by XDEL (`max-deleted-entry-id`), or undefined before
       * Redis 7.0, which does not report it.
       */
      maxDeletedEntryId: MessageId | undefined;
    };

/** Highest sequence part of a stream entry id: Redis stores it as an unsigned 64-bit integer. */
const MAX_SEQUENCE = 18_446_744_073_709_551_615n;

/**
 * Returns the id right below `id`: `<ms>-<seq - 1>`, or the highest id of
 * the previous millisecond when `seq` is 0. ZERO_MESSAGE_ID has none and is
 * returned unchanged.
 */
export function previousMessageId(id: MessageId): MessageId {
  const dash = id.indexOf("-");
  const ms = BigInt(id.slice(0, dash));
  const seq = BigInt(id.slice(dash + 1));
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  if (ms > 0n) return `${ms - 1n}-${MAX_SEQUENCE}`;
  return ZERO_MESSAGE_ID;
}

/** Returns the lowest entry id of the millisecond `windowMs` before `nowMs`, `0-0` at the least. */
export function windowStartId(nowMs: number, windowMs: number): MessageId {
  return `${Math.max(0, Math.floor(nowMs - windowMs))}-0`;
}

/**
 * Returns an id above which the stream in `state` still contains every entry
 * ever added to it, as far as trimming goes. XTRIM and `MAXLEN` remove the
 * oldest entries, so for a stream with entries that is the id right below the
 * first one. An empty stream gives its last-generated-id, and a missing key
 * gives ZERO_MESSAGE_ID. An entry removed with XDEL from the middle of the
 * stream is not noticed.
 */
export function retainedAfter(state: StreamState): MessageId {
  if (!state.exists) return ZERO_MESSAGE_ID;
  if (state.firstEntryId === undefined) return state.lastGeneratedId;
  return previousMessageId(state.firstEntryId);
}

/**
 * Reads whether `key` exists and, for a stream, its `last-generated-id` and
 * the id of its first entry with one pipelined `EXISTS` + `XINFO STREAM`.
 * Unlike the newest entry id, the last-generated-id of a stream stays put on
 * XDEL and XTRIM and only XSETID can lower it, so a lower value means that the
 * key now contains a different stream. Throws the Redis error when the key
 * contains another type (WRONGTYPE).
 */
export async function readStreamState(redis: Redis, key: string): Promise<StreamState> {
  const results = await redis.pipeline().exists(key).xinfo("STREAM", key).exec();
  const [existsResult, infoResult] = results ?? [];
  if (existsResult?.[0]) throw existsResult[0];
  if (existsResult?.[1] === 0) return { exists: false };
  // The key can vanish between the two commands, and XINFO then fails with "no such key".
  if (infoResult?.[0]) throw infoResult[0];

  const info = infoResult?.[1] as unknown[];
  const lastGeneratedId = infoField(info, "last-generated-id");
  if (typeof lastGeneratedId !== "string") {
    throw new Error(`XINFO STREAM ${key} returned no last-generated-id`);
  }
  // "first-entry" is [id, fields], or nil for an empty stream.
  const firstEntry = infoField(info, "first-entry");
  const firstEntryId = Array.isArray(firstEntry) ? firstEntry[0] : undefined;
  const maxDeletedEntryId = infoField(info, "max-deleted-entry-id");
  return {
    exists: true,
    lastGeneratedId,
    firstEntryId: typeof firstEntryId === "string" ? firstEntryId : undefined,
    maxDeletedEntryId: typeof maxDeletedEntryId === "string" ? maxDeletedEntryId : undefined,
  };
}

/**
 * Returns true when the stream in `state` may have lost an entry above
 * `lastId` that a reader positioned at `lastId` has not read. XDEL raises
 * `max-deleted-entry-id` (Redis 7.0 does not raise it on trimming), and a
 * trim past `lastId` raises the first entry. The trim test also fires when
 * the trim past `lastId` removed nothing unread, so a caller errs towards a loss.
 */
export function lostAfter(state: StreamState, lastId: MessageId): boolean {
  if (!state.exists) return false;
  const deleted = state.maxDeletedEntryId;
  if (deleted !== undefined && compareMessageIds(deleted, lastId) > 0) return true;
  return compareMessageIds(retainedAfter(state), lastId) > 0;
}

/** Returns the value after `name` in a flat XINFO reply. */
function infoField(info: unknown[], name: string): unknown {
  const index = info.indexOf(name);
  return index < 0 ? undefined : info[index + 1];
}
