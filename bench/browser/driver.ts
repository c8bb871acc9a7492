/**
 * Measures publish-to-swap latency in Chromium. Starts Redis, the page
 * server, a `patpush push-server` pinned to its own CPUs and Chromium, opens
 * the page with a session cookie, then publishes messages one at a time and
 * prints one JSON line with the result.
 *
 * Run it pinned, as the browser scenario does:
 *   taskset -c 1 node --import tsx bench/browser/driver.ts --messages 200
 * Chromium, Redis and the page server inherit that CPU list. The push server
 * gets `--push-cpus`.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import type { Browser, Page } from "playwright-core";
import { createLogger } from "../../common/logger.ts";
import { freePort } from "../../common/free-port.ts";
import { startRedisServer } from "../../common/redis-test-server.ts";
import { launchChromium } from "../../e2e/browser.ts";
import { BUNDLE_PATH, ensureBrowserBundle } from "../../examples/portal/bundle.ts";
import { startPeer } from "../lib/peers.ts";
import type { PinnedProcess } from "../lib/processes.ts";
import { estimateClockOffset, nodeClockMs } from "./clock-offset.ts";
import { BENCH_SESSION, LOG_ELEMENT_ID, startPageServer } from "./page-server.ts";
import { installProbe, readPageClock, readProbeReport, waitForWelcome } from "./page-probe.ts";
import { publishOneByOne } from "./publish-loop.ts";
import { computeLatencies, type ClockReadings, type MessageLatencies } from "./timings.ts";

/** Options of {@link measureBrowserLatency}. */
export interface DriverOptions {
  /** Messages measured. */
  messages: number;
  /** Messages published before the measured ones to warm up every part. They are not counted. */
  warmup: number;
  /** Pause between a swap and the next publish, in milliseconds. */
  pauseMs: number;
  /** CPU list of the push server, for `taskset -c`. */
  pushCpus: string;
}

/** Result of one driver run. */
export interface BrowserMeasurement extends MessageLatencies {
  published: number;
  swapped: number;
  warmup: number;
  pauseMs: number;
  /** Number of measured messages whose fragment element is in the page's log element at the end. */
  foundInDom: number;
  /** Measured sequence numbers whose fragment element is not in the page at the end. */
  missingFromDom: number[];
  /** Sequence numbers of the measured messages, first to last. */
  sequences: number[];
  /** Failure events the page fired (fetch failed, invalid snippet, missing target). */
  pageFailures: string[];
  clock: {
    offsetBeforeMs: number;
    offsetAfterMs: number;
    driftMs: number;
    /** Largest error bound of the two offset estimates, in milliseconds. */
    errorBoundMs: number;
    samplesPerEstimate: number;
  };
  /** Wall time of the measured loop, pauses included, in milliseconds. */
  loopDurationMs: number;
  /** CPU time of the push server during the measured loop, in milliseconds. */
  serverCpuMs: number;
  /**
   * CPU time of the push server while no message flows, per second of wall
   * time, measured over {@link IDLE_WINDOW_MS} before the loop. /proc counts
   * CPU time in clock ticks (10 ms at USER_HZ 100), so this is coarse.
   */
  serverIdleCpuMsPerSecond: number;
  /** CPU lists: the push server's, and the driver's, which Chromium, Redis and the page server share. */
  pinning: { pushServer: string; driver: string };
  chromiumVersion: string;
}

/** Round trips per clock offset estimate. */
const CLOCK_SAMPLES = 30;
const READY_TIMEOUT_MS = 20_000;
const SWAP_TIMEOUT_MS = 5_000;
/** Wall time over which the push server's idle CPU time is read, in milliseconds. */
const IDLE_WINDOW_MS = 2_000;

/** Returns this process's allowed CPU list from /proc/self/status, such as "1". */
function allowedCpus(): string {
  const status = readFileSync("/proc/self/status", "utf8");
  return /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? "unknown";
}

async function readClock(page: Page): Promise<ClockReadings["before"]> {
  const offset = await estimateClockOffset(() => readPageClock(page), CLOCK_SAMPLES);
  return { ...offset, at: nodeClockMs() };
}

/** Cleanup steps, run in reverse order of registration; each failure is reported and skipped. */
const cleanups: Array<() => Promise<void>> = [];

async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup().catch((error: unknown) => console.error("cleanup step failed:", error));
  }
}

/** Starts every part, runs the measured loop and stops every part again. */
export async function measureBrowserLatency(options: DriverOptions): Promise<BrowserMeasurement> {
  try {
    return await measure(options);
  } finally {
    await cleanUp();
  }
}

async function measure(options: DriverOptions): Promise<BrowserMeasurement> {
  await ensureBrowserBundle(createLogger({ level: "warn" }));
  const redisServer = await startRedisServer();
  cleanups.push(() => redisServer.stop());

  const pushPort = await freePort();
  const page = await startPageServer({
    bundlePath: BUNDLE_PATH,
    pushUrl: `ws://127.0.0.1:${pushPort}/push`,
  });
  cleanups.push(() => page.close());

  // The same `patpush push-server` command, settings and readiness check as the socket scenarios.
  const pushServer: PinnedProcess = await startPeer("patpush", {
    cpus: options.pushCpus,
    port: pushPort,
    redisUrl: redisServer.url,
    authUrl: page.authUrl,
    origin: page.origin,
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  cleanups.push(() => pushServer.stop());

  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  cleanups.push(async () => redis.disconnect());

  const browser: Browser = await launchChromium();
  cleanups.push(() => browser.close());
  const context = await browser.newContext();
  await context.addCookies([{ name: "__ac", value: BENCH_SESSION, url: page.origin }]);
  const tab = await context.newPage();
  await installProbe(tab);
  await tab.goto(`${page.origin}/`);
  await waitForWelcome(tab, READY_TIMEOUT_MS);

  const loop = { page: tab, redis, origin: page.origin, swapTimeoutMs: SWAP_TIMEOUT_MS };
  await publishOneByOne({ ...loop, firstSequence: 1, count: options.warmup, pauseMs: 20 });

  const idleCpuBefore = pushServer.cpuMs();
  await sleep(IDLE_WINDOW_MS);
  const serverIdleCpuMsPerSecond = ((pushServer.cpuMs() - idleCpuBefore) * 1000) / IDLE_WINDOW_MS;

  const before = await readClock(tab);
  const cpuBefore = pushServer.cpuMs();
  const loopStartedAt = nodeClockMs();
  const published = await publishOneByOne({
    ...loop,
    firstSequence: options.warmup + 1,
    count: options.messages,
    pauseMs: options.pauseMs,
  });
  const serverCpuMs = pushServer.cpuMs() - cpuBefore;
  const loopDurationMs = nodeClockMs() - loopStartedAt;
  const after = await readClock(tab);

  const report = await readProbeReport(tab, LOG_ELEMENT_ID);
  const inDom = new Set(report.sequencesInDom);
  const sequences = published.map((message) => message.sequence);
  return {
    ...computeLatencies(published, report.records, { before, after }),
    published: published.length,
    swapped: published.filter((message) => message.swapped).length,
    warmup: options.warmup,
    pauseMs: options.pauseMs,
    foundInDom: sequences.filter((sequence) => inDom.has(sequence)).length,
    missingFromDom: sequences.filter((sequence) => !inDom.has(sequence)),
    sequences,
    pageFailures: report.failures,
    clock: {
      offsetBeforeMs: before.offsetMs,
      offsetAfterMs: after.offsetMs,
      driftMs: after.offsetMs - before.offsetMs,
      errorBoundMs: Math.max(before.errorBoundMs, after.errorBoundMs),
      samplesPerEstimate: CLOCK_SAMPLES,
    },
    loopDurationMs: Math.round(loopDurationMs),
    serverCpuMs,
    serverIdleCpuMsPerSecond,
    pinning: { pushServer: options.pushCpus, driver: allowedCpus() },
    chromiumVersion: browser.version(),
  };
}

function parseDriverArgs(argv: string[]): DriverOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      messages: { type: "string", default: "200" },
      warmup: { type: "string", default: "10" },
      "pause-ms": { type: "string", default: "50" },
      "push-cpus": { type: "string", default: "0" },
    },
  });
  const number = (name: string, text: string, min: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
      throw new RangeError(`--${name} must be an integer of at least ${min} (got ${text})`);
    }
    return value;
  };
  return {
    messages: number("messages", values.messages, 1),
    warmup: number("warmup", values.warmup, 0),
    pauseMs: number("pause-ms", values["pause-ms"], 0),
    pushCpus: values["push-cpus"],
  };
}

async function main(): Promise<void> {
  // The scenario stops an overdue driver with SIGTERM: stop Chromium, Redis and the push server first.
  process.once("SIGTERM", () => {
    void cleanUp().finally(() => process.exit(143));
  });
  const measurement = await measureBrowserLatency(parseDriverArgs(process.argv.slice(2)));
  process.stdout.write(`${JSON.stringify(measurement)}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
