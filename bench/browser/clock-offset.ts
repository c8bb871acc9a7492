/**
 * Offset between the page's clock and this process's clock, both
 * `performance.timeOrigin + performance.now()` in milliseconds. The two start
 * from wall-clock readings taken at different moments and then run on
 * monotonic time, so they differ by a constant plus a slow drift.
 */
import { performance } from "node:perf_hooks";

/** This process's clock, on the same scale as the page's. */
export function nodeClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** One estimate of page clock minus Node clock. */
export interface ClockOffset {
  /** Page clock minus Node clock, in milliseconds. */
  offsetMs: number;
  /**
   * Bound of the error of `offsetMs`: half the round trip of the best
   * sample, in milliseconds. The page read its clock somewhere within that
   * round trip.
   */
  errorBoundMs: number;
  /** Number of round trips taken. */
  samples: number;
}

/**
 * Estimates the offset from `samples` round trips: each reads the Node clock,
 * the page clock (`readPageClock`) and the Node clock again, and assumes the
 * page read its clock halfway. The sample with the shortest round trip wins,
 * because its midpoint is the least uncertain.
 */
export async function estimateClockOffset(
  readPageClock: () => Promise<number>,
  samples: number,
): Promise<ClockOffset> {
  let best: ClockOffset | undefined;
  for (let i = 0; i < samples; i++) {
    const sentAt = nodeClockMs();
    const pageAt = await readPageClock();
    const receivedAt = nodeClockMs();
    const errorBoundMs = (receivedAt - sentAt) / 2;
    if (best === undefined || errorBoundMs < best.errorBoundMs) {
      best = { offsetMs: pageAt - (sentAt + receivedAt) / 2, errorBoundMs, samples };
    }
  }
  if (best === undefined) throw new RangeError(`samples must be at least 1 (got ${samples})`);
  return best;
}
