/**
 * Enqueue loops of the Node.js task producers: a burst as fast as the queue
 * accepts, or a fixed rate. Both stamp nothing themselves; the caller's
 * `enqueue(n)` stamps the task when it builds it.
 */
import { nowUs } from "../lib/clock.ts";

/** Result line of a producer: enqueue counts, times and CPU. */
export interface EnqueueReport {
  result: true;
  enqueued: number;
  failed: number;
  /** Time of the first and last enqueue call, in microseconds on CLOCK_MONOTONIC. */
  firstEnqueueUs: number;
  lastEnqueueUs: number;
  /** Producer CPU time (user plus system) during the loop, in milliseconds. */
  cpuMs: number;
  firstError?: string;
}

/** Settings a producer child reads from its environment. */
export interface ProducerSettings {
  mode: "burst" | "paced";
  count: number;
  /** Tasks per second in paced mode. */
  rate: number;
  /** Enqueue calls in flight at once in burst mode. */
  window: number;
  /** The whole loop must end within this many milliseconds, or the producer exits with status 1. */
  deadlineMs: number;
}

/** Environment of a producer child: its Redis, the portal endpoint's origin and its loop. */
export interface ProducerEnv {
  redisUrl: string;
  endpoint: string;
  settings: ProducerSettings;
}

/** Reads BENCH_REDIS_URL, BENCH_ENDPOINT_URL and the loop settings; throws when one is missing. */
export function readProducerEnv(env: NodeJS.ProcessEnv): ProducerEnv {
  const redisUrl = env.BENCH_REDIS_URL;
  const endpoint = env.BENCH_ENDPOINT_URL;
  if (redisUrl === undefined || endpoint === undefined) {
    throw new Error("BENCH_REDIS_URL and BENCH_ENDPOINT_URL are required");
  }
  return { redisUrl, endpoint, settings: readProducerSettings(env) };
}

/** Reads BENCH_MODE, BENCH_COUNT, BENCH_RATE, BENCH_WINDOW and BENCH_DEADLINE_MS. */
export function readProducerSettings(env: NodeJS.ProcessEnv): ProducerSettings {
  const mode = env.BENCH_MODE === "paced" ? "paced" : "burst";
  const count = Number(env.BENCH_COUNT ?? 200);
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new Error(`invalid BENCH_COUNT ${env.BENCH_COUNT}: expected a whole number >= 1`);
  }
  return {
    mode,
    count,
    rate: Number(env.BENCH_RATE ?? 200),
    window: Number(env.BENCH_WINDOW ?? 64),
    deadlineMs: Number(env.BENCH_DEADLINE_MS ?? 120_000),
  };
}

type Enqueue = (n: number) => Promise<unknown>;

class Tally {
  readonly cpuStart = process.cpuUsage();
  enqueued = 0;
  failed = 0;
  firstEnqueueUs = 0;
  lastEnqueueUs = 0;
  firstError: string | undefined;

  async run(enqueue: Enqueue, n: number): Promise<void> {
    const startedUs = nowUs();
    if (this.firstEnqueueUs === 0) this.firstEnqueueUs = startedUs;
    this.lastEnqueueUs = startedUs;
    try {
      await enqueue(n);
      this.enqueued++;
    } catch (error) {
      this.failed++;
      this.firstError ??= error instanceof Error ? error.message : String(error);
    }
  }

  report(): EnqueueReport {
    const cpu = process.cpuUsage(this.cpuStart);
    const report: EnqueueReport = {
      result: true,
      enqueued: this.enqueued,
      failed: this.failed,
      firstEnqueueUs: this.firstEnqueueUs,
      lastEnqueueUs: this.lastEnqueueUs,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
    if (this.firstError !== undefined) report.firstError = this.firstError;
    return report;
  }
}

/** Enqueues tasks 0..count-1 with `window` calls in flight at once. */
export async function enqueueBurst(
  count: number,
  window: number,
  enqueue: Enqueue,
): Promise<EnqueueReport> {
  const tally = new Tally();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const n = next++;
      await tally.run(enqueue, n);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, window) }, lane));
  return tally.report();
}

/**
 * Enqueues tasks 0..count-1 at `rate` per second on a fixed schedule: task n
 * is due at start + n / rate, and a late loop catches up without waiting.
 */
export async function enqueuePaced(
  count: number,
  rate: number,
  enqueue: Enqueue,
): Promise<EnqueueReport> {
  const tally = new Tally();
  const periodUs = 1_000_000 / rate;
  const startUs = nowUs();
  const pending: Promise<void>[] = [];
  for (let n = 0; n < count; n++) {
    const waitUs = startUs + n * periodUs - nowUs();
    if (waitUs >= 1000) await new Promise((resolve) => setTimeout(resolve, Math.floor(waitUs / 1000)));
    pending.push(tally.run(enqueue, n));
  }
  await Promise.all(pending);
  return tally.report();
}

/**
 * Runs the loop the settings name and prints its report as one JSON line;
 * exits with status 1 when the loop passes the deadline.
 */
export async function runProducer(
  settings: ProducerSettings,
  enqueue: Enqueue,
): Promise<EnqueueReport> {
  const deadline = setTimeout(() => {
    console.error(`producer did not finish within ${settings.deadlineMs} ms`);
    process.exit(1);
  }, settings.deadlineMs);
  const report =
    settings.mode === "paced"
      ? await enqueuePaced(settings.count, settings.rate, enqueue)
      : await enqueueBurst(settings.count, settings.window, enqueue);
  clearTimeout(deadline);
  console.log(JSON.stringify(report));
  return report;
}
