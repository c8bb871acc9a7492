/**
 * Turns publish times on the Node clock and page times on the page's clock
 * into per-message latencies: publish to swap, and its split into publish to
 * frame, frame to fetch done and fetch done to swap.
 */
import type { ClockOffset } from "./clock-offset.ts";
import { summarizeLatencies, type LatencySummary } from "./latency-summary.ts";
import type { PageRecord } from "./page-probe.ts";
import type { PublishedMessage } from "./publish-loop.ts";

/** Clock offsets measured before and after the loop, with the Node clock time of each. */
export interface ClockReadings {
  before: ClockOffset & { at: number };
  after: ClockOffset & { at: number };
}

/** Summaries of each part of the path from publish to swap, in milliseconds. */
export interface LatencySplit {
  /** Publish (before XADD) to `patpush:message` in the page. Crosses clocks. */
  publishToFrame: LatencySummary;
  /** `patpush:message` to the fragment request's `fetchStart`: snippet parsing and URL checks. */
  frameToFetchStart: LatencySummary;
  /** `patpush:message` to the fragment response's `responseEnd`. */
  frameToFetchDone: LatencySummary;
  /** Fragment `responseEnd` to `patpush:injected`: reading and parsing the body, clean-up, swap. */
  fetchDoneToSwap: LatencySummary;
}

/** Latencies of the messages whose fragment was swapped in. */
export interface MessageLatencies {
  /** Publish to swap, corrected for the clock offset, in publish order. */
  latenciesMs: number[];
  total: LatencySummary;
  split: LatencySplit;
  /** Messages that were swapped but lack a page time, such as a missing Resource Timing entry. */
  incomplete: number[];
}

/**
 * Returns the page-minus-Node offset at Node time `at`, interpolated
 * linearly between the readings before and after the loop, which absorbs a
 * steady drift between the two clocks.
 */
export function offsetAt(readings: ClockReadings, at: number): number {
  const { before, after } = readings;
  const span = after.at - before.at;
  if (span <= 0) return before.offsetMs;
  const fraction = Math.min(1, Math.max(0, (at - before.at) / span));
  return before.offsetMs + (after.offsetMs - before.offsetMs) * fraction;
}

/** Computes the latencies of the swapped messages in `published` from the page's records. */
export function computeLatencies(
  published: readonly PublishedMessage[],
  records: readonly PageRecord[],
  readings: ClockReadings,
): MessageLatencies {
  const bySequence = new Map(records.map((record) => [record.sequence, record]));
  const latenciesMs: number[] = [];
  const publishToFrame: number[] = [];
  const frameToFetchStart: number[] = [];
  const frameToFetchDone: number[] = [];
  const fetchDoneToSwap: number[] = [];
  const incomplete: number[] = [];

  for (const message of published) {
    if (!message.swapped) continue;
    const record = bySequence.get(message.sequence);
    const { frameAt, fetchStartAt, fetchDoneAt, swappedAt } = record ?? {};
    if (
      frameAt === undefined ||
      fetchStartAt === undefined ||
      fetchDoneAt === undefined ||
      swappedAt === undefined
    ) {
      incomplete.push(message.sequence);
      continue;
    }
    const publishedOnPageClock = message.publishedAt + offsetAt(readings, message.publishedAt);
    latenciesMs.push(swappedAt - publishedOnPageClock);
    publishToFrame.push(frameAt - publishedOnPageClock);
    frameToFetchStart.push(fetchStartAt - frameAt);
    frameToFetchDone.push(fetchDoneAt - frameAt);
    fetchDoneToSwap.push(swappedAt - fetchDoneAt);
  }

  return {
    latenciesMs: latenciesMs.map((value) => Math.round(value * 1000) / 1000),
    total: summarizeLatencies(latenciesMs),
    split: {
      publishToFrame: summarizeLatencies(publishToFrame),
      frameToFetchStart: summarizeLatencies(frameToFetchStart),
      frameToFetchDone: summarizeLatencies(frameToFetchDone),
      fetchDoneToSwap: summarizeLatencies(fetchDoneToSwap),
    },
    incomplete,
  };
}
