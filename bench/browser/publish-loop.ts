/**
 * The measured loop: publish one done message through Redis, wait until the
 * page has swapped its fragment in, pause, and go on with the next. One
 * message at a time, so no message waits behind another.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { Page } from "playwright-core";
import { publishDoneMessage } from "../../server/index.ts";
import { nodeClockMs } from "./clock-offset.ts";
import { BENCH_USER, snippetFor } from "./page-server.ts";
import { waitForSwap } from "./page-probe.ts";

/** Options of {@link publishOneByOne}. */
export interface PublishLoopOptions {
  page: Page;
  redis: Redis;
  /** Origin of the page server that the snippets' fragment URLs point to. */
  origin: string;
  /** Sequence number of the first message; the others follow one by one. */
  firstSequence: number;
  count: number;
  /** Pause after each swap before the next publish, in milliseconds. */
  pauseMs: number;
  /** Time one message may take from publish to swap before it counts as lost, in milliseconds. */
  swapTimeoutMs: number;
}

/** Publish time of one message on the Node clock, and whether its fragment arrived. */
export interface PublishedMessage {
  sequence: number;
  /** `performance.timeOrigin + performance.now()` right before XADD, in milliseconds. */
  publishedAt: number;
  swapped: boolean;
}

/**
 * Publishes `count` messages to the benchmark user, each naming the fragment
 * of its sequence number, and waits for each swap in turn. The publish time
 * is taken before publishDoneMessage, so it includes the message validation
 * and the XADD round trip to Redis.
 */
export async function publishOneByOne(options: PublishLoopOptions): Promise<PublishedMessage[]> {
  const published: PublishedMessage[] = [];
  for (let i = 0; i < options.count; i++) {
    const sequence = options.firstSequence + i;
    const message = { user: BENCH_USER, html: snippetFor(options.origin, sequence) };

    const publishedAt = nodeClockMs();
    await publishDoneMessage(options.redis, message);
    const swapped = await waitForSwap(options.page, sequence, options.swapTimeoutMs);
    published.push({ sequence, publishedAt, swapped });

    await sleep(options.pauseMs);
  }
  return published;
}
