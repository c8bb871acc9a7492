import type { Redis } from "ioredis";

/** State of the done stream key at one check. */
export type StreamState = { exists: false } | { exists: true; lastGeneratedId: string };

/**
 * Compares two stream entry ids (`<ms>-<seq>`) numerically. Returns a negative
 * number, zero or a positive number when `a` is lower than, equal to or higher than `b`.
 */
export function compareStreamIds(a: string, b: string): number {
  const [aMs, aSeq] = splitStreamId(a);
  const [bMs, bSeq] = splitStreamId(b);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

function splitStreamId(id: string): [bigint, bigint] {
  const [ms = "0", seq = "0"] = id.split("-");
  return [BigInt(ms), BigInt(seq)];
}

/**
 * Reads whether `key` exists and, for a stream, its `last-generated-id` with
 * one pipelined `EXISTS` + `XINFO STREAM`. Unlike the newest entry id, the
 * last-generated-id of a stream stays put on XDEL and XTRIM and only XSETID can
 * lower it, so a lower value means that the key now contains a different stream.
 * Throws the Redis error when the key contains another type (WRONGTYPE).
 */
export async function readStreamState(redis: Redis, key: string): Promise<StreamState> {
  const results = await redis.pipeline().exists(key).xinfo("STREAM", key).exec();
  const [existsResult, infoResult] = results ?? [];
  if (existsResult?.[0]) throw existsResult[0];
  if (existsResult?.[1] === 0) return { exists: false };
  // The key can vanish between the two commands, and XINFO then fails with "no such key".
  if (infoResult?.[0]) throw infoResult[0];

  const info = infoResult?.[1] as unknown[];
  const index = info.indexOf("last-generated-id");
  const lastGeneratedId = info[index + 1];
  if (index < 0 || typeof lastGeneratedId !== "string") {
    throw new Error(`XINFO STREAM ${key} returned no last-generated-id`);
  }
  return { exists: true, lastGeneratedId };
}
