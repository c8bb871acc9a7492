import * as hdr from "hdr-histogram-js";

/** Latency percentiles in milliseconds; `count` is the number of recorded values. */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Highest value the histogram tracks: 10 minutes in microseconds. Larger values are clamped. */
const MAX_TRACKABLE_US = 600_000_000;

/** Latency histogram that records microseconds and can travel between processes as base64. */
export class LatencyHistogram {
  #histogram: hdr.Histogram;

  constructor(encoded?: string) {
    this.#histogram =
      encoded === undefined
        ? hdr.build({
            lowestDiscernibleValue: 1,
            highestTrackableValue: MAX_TRACKABLE_US,
            numberOfSignificantValueDigits: 3,
          })
        : hdr.decodeFromCompressedBase64(encoded);
  }

  /** Records one latency in microseconds; a negative value (clock skew) counts as 0. */
  record(latencyUs: number): void {
    const clamped = Math.min(Math.max(latencyUs, 0), MAX_TRACKABLE_US);
    this.#histogram.recordValue(clamped);
  }

  get count(): number {
    return this.#histogram.totalCount;
  }

  /** Adds the values of another histogram, for example one decoded from a worker's stats. */
  merge(other: LatencyHistogram): void {
    this.#histogram.add(other.#histogram);
  }

  reset(): void {
    this.#histogram.reset();
  }

  /** Compressed base64 form, for IPC; `new LatencyHistogram(encoded)` reads it back. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.#histogram);
  }

  summary(): LatencySummary {
    const h = this.#histogram;
    const ms = (us: number): number => Math.round(us) / 1000;
    if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      count: h.totalCount,
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      p999: ms(h.getValueAtPercentile(99.9)),
      max: ms(h.maxValue),
    };
  }
}

/** Merges encoded histograms (one per worker) into one summary. */
export function mergeEncoded(encoded: readonly string[]): LatencySummary {
  const merged = new LatencyHistogram();
  for (const item of encoded) merged.merge(new LatencyHistogram(item));
  return merged.summary();
}
