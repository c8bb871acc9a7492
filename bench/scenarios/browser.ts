/**
 * Browser benchmark: time from publishing a done message through Redis to
 * the moment pat-push has swapped the fragment it names into a page in
 * headless Chromium. One message at a time, so each latency is that of an
 * idle system: publish (XADD), push server (RedisBus, uWebSockets.js),
 * socket frame, pat-push, fragment fetch from the portal, swap.
 *
 * CLI: `node --import tsx bench/scenarios/browser.ts [--quick]` prints the results JSON.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { BrowserMeasurement } from "../browser/driver.ts";
import type { LatencySplit } from "../browser/timings.ts";
import { componentVersions, machineInfo } from "../lib/machine.ts";

/** One measured configuration: where the time from publish to swap goes. */
export interface BrowserRow {
  peer: "patpush";
  measurement: "publish-to-swap";
  published: number;
  expected: number;
  /** Messages whose fragment was swapped into the page. */
  delivered: number;
  lost: number;
  /** Measured messages whose fragment element, found by its sequence number, is in the page at the end. */
  foundInDom: number;
  /** Sequence numbers of measured messages whose fragment element is not in the page. */
  missingFromDom: number[];
  /** Number of latencies in the percentiles. */
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  split: LatencySplit;
  /** Publish-to-swap latency of each message, in publish order, in milliseconds. */
  latenciesMs: number[];
  /** CPU time of the push server during the measured loop, in milliseconds. */
  serverCpuMs: number;
  serverIdleCpuMsPerSecond: number;
  loopDurationMs: number;
  saturated: "none";
  /** Error message of a failed run, whose other fields are then zero. */
  error?: string;
}

/** Results of the browser scenario, in the shape every scenario writes to bench/results. */
export interface BrowserResults {
  scenario: "browser";
  startedAt: string;
  machine: { cpus: number; model: string; memGiB: number; kernel: string; node: string };
  versions: Record<string, string>;
  command: string;
  pinning: Record<string, string>;
  sizes: { messages: number; warmup: number; pauseMs: number };
  /** Page clock minus Node clock, and the bound of its error, in milliseconds. */
  clock?: BrowserMeasurement["clock"];
  rows: BrowserRow[];
  notes: string[];
}

/** Options of {@link runBrowserScenario}. */
export interface BrowserScenarioOptions {
  /** 10 messages instead of 200, for a test. */
  quick?: boolean;
}

const FULL_SIZES = { messages: 200, warmup: 10, pauseMs: 50 };
const QUICK_SIZES = { messages: 10, warmup: 3, pauseMs: 20 };
const PUSH_CPUS = "0";
const DRIVER_CPUS = "1";
/** Time for the driver to start every part and stop them again, in milliseconds. */
const DRIVER_OVERHEAD_MS = 60_000;
/** Time allowed per message, far above a normal latency plus the pause, in milliseconds. */
const PER_MESSAGE_MS = 500;
/** Time between SIGTERM and SIGKILL to an overdue driver, in milliseconds. */
const KILL_GRACE_MS = 10_000;

const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DRIVER_PATH = fileURLToPath(new URL("../browser/driver.ts", import.meta.url));

/**
 * Runs bench/browser/driver.ts pinned to {@link DRIVER_CPUS}, so that
 * Chromium, Redis and the page server it starts share that CPU, and returns
 * the JSON line it prints. Stops it with SIGTERM, then SIGKILL, after `timeoutMs`.
 */
async function runDriver(args: string[], timeoutMs: number): Promise<BrowserMeasurement> {
  const child = spawn(
    "taskset",
    ["-c", DRIVER_CPUS, process.execPath, "--import", "tsx", DRIVER_PATH, ...args],
    { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));

  let timedOut = false;
  const killTimer = setTimeout(() => child.kill("SIGKILL"), timeoutMs + KILL_GRACE_MS);
  const termTimer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
  }, timeoutMs);
  const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
  clearTimeout(termTimer);
  clearTimeout(killTimer);

  if (timedOut) throw new Error(`browser driver timed out after ${timeoutMs} ms\n${stderr}`);
  const line = stdout.trim().split("\n").pop() ?? "";
  if (code !== 0 || !line.startsWith("{")) {
    throw new Error(`browser driver failed (exit ${code ?? signal})\n${stderr}`);
  }
  return JSON.parse(line) as BrowserMeasurement;
}

function rowOf(measurement: BrowserMeasurement, expected: number): BrowserRow {
  const { total } = measurement;
  return {
    peer: "patpush",
    measurement: "publish-to-swap",
    published: measurement.published,
    expected,
    delivered: measurement.swapped,
    lost: expected - measurement.swapped,
    foundInDom: measurement.foundInDom,
    missingFromDom: measurement.missingFromDom,
    count: total.count,
    p50Ms: total.p50Ms,
    p90Ms: total.p90Ms,
    p99Ms: total.p99Ms,
    maxMs: total.maxMs,
    meanMs: total.meanMs,
    split: measurement.split,
    latenciesMs: measurement.latenciesMs,
    serverCpuMs: measurement.serverCpuMs,
    serverIdleCpuMsPerSecond: measurement.serverIdleCpuMsPerSecond,
    loopDurationMs: measurement.loopDurationMs,
    saturated: "none",
  };
}

function failedRow(expected: number, error: string): BrowserRow {
  const empty = { count: 0, minMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0 };
  return {
    peer: "patpush",
    measurement: "publish-to-swap",
    published: 0,
    expected,
    delivered: 0,
    lost: expected,
    foundInDom: 0,
    missingFromDom: [],
    ...empty,
    split: {
      publishToFrame: empty,
      frameToFetchStart: empty,
      frameToFetchDone: empty,
      fetchDoneToSwap: empty,
    },
    latenciesMs: [],
    serverCpuMs: 0,
    serverIdleCpuMsPerSecond: 0,
    loopDurationMs: 0,
    saturated: "none",
    error,
  };
}

function notesOf(measurement: BrowserMeasurement): string[] {
  const notes = [
    "One page, one socket, one message at a time: each latency is that of an idle system.",
    "Publish time: Node performance.timeOrigin + performance.now() right before publishDoneMessage (validation + XADD).",
    "Swap time: page performance.timeOrigin + performance.now() in the patpush:injected listener, " +
      "which pat-push dispatches synchronously after placing the nodes (DOM insertion, not paint).",
    `Clock offset page - Node from ${measurement.clock.samplesPerEstimate} page.evaluate round trips ` +
      "before and after the loop (minimum round trip), interpolated per message; " +
      `error bound ${measurement.clock.errorBoundMs.toFixed(3)} ms, drift ${measurement.clock.driftMs.toFixed(3)} ms.`,
    "Split: publishToFrame crosses clocks (same error bound); the other parts are on the page clock, " +
      "which Chromium coarsens to 0.1 ms without cross-origin isolation. Fetch times are Resource Timing " +
      "fetchStart and responseEnd; fetchDoneToSwap includes moving the body to the renderer and response.text().",
    `Chromium ${measurement.chromiumVersion} headless, pinned with Redis, the page server and the publisher ` +
      `to CPU ${measurement.pinning.driver}; the push server to CPU ${measurement.pinning.pushServer}.`,
  ];
  if (measurement.incomplete.length > 0) {
    notes.push(`Swapped but missing page times, left out: ${measurement.incomplete.join(", ")}.`);
  }
  if (measurement.pageFailures.length > 0) {
    notes.push(`Page failure events: ${measurement.pageFailures.slice(0, 5).join(" | ")}`);
  }
  return notes;
}

/** Runs the browser scenario in a pinned driver process and returns its results JSON. */
export async function runBrowserScenario(
  options: BrowserScenarioOptions = {},
): Promise<BrowserResults> {
  const startedAt = new Date().toISOString();
  const sizes = options.quick ? QUICK_SIZES : FULL_SIZES;
  const machine = machineInfo();
  const args = [
    `--messages=${sizes.messages}`,
    `--warmup=${sizes.warmup}`,
    `--pause-ms=${sizes.pauseMs}`,
    `--push-cpus=${PUSH_CPUS}`,
  ];
  const timeoutMs = DRIVER_OVERHEAD_MS + (sizes.messages + sizes.warmup) * PER_MESSAGE_MS;

  let measurement: BrowserMeasurement | undefined;
  let row: BrowserRow;
  try {
    measurement = await runDriver(args, timeoutMs);
    row = rowOf(measurement, sizes.messages);
  } catch (error) {
    row = failedRow(sizes.messages, error instanceof Error ? error.message : String(error));
  }

  return {
    scenario: "browser",
    startedAt,
    machine: {
      cpus: machine.cpus,
      model: machine.cpuModel,
      memGiB: machine.memGiB,
      kernel: machine.kernel,
      node: process.version,
    },
    versions: componentVersions(),
    command: `node --import tsx bench/scenarios/browser.ts${options.quick ? " --quick" : ""}`,
    pinning: {
      pushServer: PUSH_CPUS,
      chromium: DRIVER_CPUS,
      publisher: DRIVER_CPUS,
      pageServer: DRIVER_CPUS,
      redis: DRIVER_CPUS,
    },
    sizes,
    ...(measurement === undefined ? {} : { clock: measurement.clock }),
    rows: [row],
    notes: measurement === undefined ? [] : notesOf(measurement),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const results = await runBrowserScenario({ quick: process.argv.includes("--quick") });
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  if (results.rows.some((row) => row.error !== undefined)) process.exitCode = 1;
}
