/**
 * Measures one task queue: a fresh redis-server, the portal endpoint on
 * core 1, the system's worker on core 0, then a burst of tasks (throughput)
 * and a fixed rate (latency), each from a new producer process on core 1.
 */
import { execFileSync } from "node:child_process";
import { Redis } from "ioredis";
import { startRedisServer, type RedisTestServer } from "../../common/redis-test-server.ts";
import { readCpuMs, spawnPinned, type PinnedProcess } from "../lib/processes.ts";
import type { EndpointStats } from "./portal-endpoint.ts";
import type { EnqueueReport } from "./pacing.ts";
import { machineBusyMs, treeCpuMs } from "./process-tree.ts";
import { REPO_ROOT, type SystemContext, type TaskSystem } from "./systems.ts";

/** Sizes of one run. */
export interface TaskSizes {
  /** Tasks of the throughput burst. */
  throughputCount: number;
  /** Tasks sent and discarded before measuring, so every worker has started and warmed up. */
  warmupCount: number;
  /** Tasks per second of the latency measurement, and its length in seconds. */
  latencyRate: number;
  latencySeconds: number;
  /** Jobs each worker runs at once. */
  concurrency: number;
  /** Enqueue calls in flight in a Node.js producer's burst. */
  producerWindow: number;
  /** Maximum wait for a quiet machine before a measurement, in ms; then it runs anyway. */
  quietWaitMs: number;
  /** CPU list that redis-server is pinned to, or undefined to leave it unpinned. */
  redisCpus: string | undefined;
  /** JSON bytes of patpush's stored job. */
  jobBytes: number;
}

/** Part that limited a measurement: "server" is the worker, "loadgen" is core 1. */
export type Saturation = "server" | "loadgen" | "redis" | "none";

/** One result row: one system, one measurement. */
export interface TaskRow {
  peer: TaskSystem["name"];
  measurement: "throughput" | "latency";
  /** Target enqueue rate in tasks per second (latency rows). */
  rate?: number;
  concurrency: number;
  published: number;
  expected: number;
  delivered: number;
  lost: number;
  duplicates: number;
  /** Tasks received per second, from the first enqueue to the last POST received. */
  tasksPerSec: number;
  deliveriesPerSec: number;
  /** Tasks enqueued per second, from the first to the last enqueue call. */
  enqueuePerSec: number;
  /** Latencies recorded by the endpoint: one per task received. */
  latencyCount: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  workerCpuMs: number;
  workerCpuMsPerTask: number;
  /** CPU use over the measured window, in percent of one core. */
  serverCpuPct: number;
  producerCpuPct: number;
  endpointCpuPct: number;
  loadgenCpuPct: number;
  redisCpuPct: number;
  /**
   * CPU use of everything else on the machine over the window, in percent of
   * one core (out of 100 per core). Above a few percent, other programs
   * competed with the benchmark for the cores and the numbers are low.
   */
  otherCpuPct: number;
  /** Busy time of core 0 (worker) and core 1 (producer, endpoint), counting every process. */
  core0BusyPct: number;
  core1BusyPct: number;
  producerCpuMsPerTask: number;
  redisCpuMsPerTask: number;
  workerRssMiB: number;
  saturated: Saturation;
  saturatedDetail: string;
  /** Set when the measurement did not run to the end; `error` gives the reason. */
  failed?: true;
  error?: string;
}

/** A process at or above this share of its core counts as saturated. */
const SATURATED_PCT = 85;

/** Rejects with a message naming `step` when `promise` does not settle within `ms`. */
async function withDeadline<T>(promise: Promise<T>, ms: number, step: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${step} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Returns the PID of the redis-server at `url`, from INFO server. */
async function redisPid(url: string): Promise<number> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const info = await client.info("server");
    const match = /process_id:(\d+)/.exec(info);
    if (match === null) throw new Error(`INFO server of ${url} has no process_id`);
    return Number(match[1]);
  } finally {
    client.disconnect();
  }
}

class Endpoint {
  constructor(
    readonly process: PinnedProcess,
    readonly origin: string,
  ) {}

  async reset(): Promise<void> {
    const response = await fetch(`${this.origin}/stats/reset`, { method: "POST" });
    if (!response.ok) throw new Error(`POST /stats/reset returned ${response.status}`);
  }

  async stats(expected: number): Promise<EndpointStats> {
    const response = await fetch(`${this.origin}/stats?expected=${expected}`);
    return (await response.json()) as EndpointStats;
  }

  /** Resolves once `count` tasks arrived, or after `timeoutMs` with the counts so far. */
  async waitFor(count: number, timeoutMs: number): Promise<EndpointStats> {
    const response = await fetch(`${this.origin}/wait?count=${count}&timeoutMs=${timeoutMs}`);
    return (await response.json()) as EndpointStats;
  }
}

/** The processes of one system under test. */
interface Rig {
  redis: RedisTestServer;
  redisPid: number;
  endpoint: Endpoint;
  worker: PinnedProcess;
  context: SystemContext;
}

async function startRig(system: TaskSystem, sizes: TaskSizes): Promise<Rig> {
  const redis = await startRedisServer();
  const pid = await redisPid(redis.url);
  if (sizes.redisCpus !== undefined) {
    execFileSync("taskset", ["-pc", sizes.redisCpus, String(pid)], { stdio: "ignore" });
  }
  let endpointProcess: PinnedProcess | undefined;
  try {
    endpointProcess = await spawnPinned({
      cpus: "1",
      cwd: REPO_ROOT,
      command: [process.execPath, "--import", "tsx", `${REPO_ROOT}bench/tasks/portal-endpoint.ts`],
      env: { ...process.env, BENCH_PORT: "0" },
    });
    const origin = `http://127.0.0.1:${String(endpointProcess.ready.port)}`;
    const endpoint = new Endpoint(endpointProcess, origin);
    const context: SystemContext = {
      redisUrl: redis.url,
      endpointOrigin: endpoint.origin,
      concurrency: sizes.concurrency,
      jobBytes: sizes.jobBytes,
    };
    const { command, env } = system.worker(context);
    const readyTimeoutMs = 30_000;
    const worker = await spawnPinned({ cpus: "0", cwd: REPO_ROOT, command, env, readyTimeoutMs });
    return { redis, redisPid: pid, endpoint, worker, context };
  } catch (error) {
    await endpointProcess?.stop();
    await redis.kill();
    throw error;
  }
}

async function stopRig(rig: Rig): Promise<void> {
  await rig.worker.stop(10_000);
  await rig.endpoint.process.stop();
  await rig.redis.kill();
}

/** Starts a producer; `done` resolves with its report once it exited. */
async function startProducer(
  system: TaskSystem,
  rig: Rig,
  env: NodeJS.ProcessEnv,
): Promise<{ producer: PinnedProcess; done: Promise<EnqueueReport> }> {
  const spec = system.producer(rig.context);
  let report: EnqueueReport | undefined;
  const producer = await spawnPinned({
    cpus: "1",
    cwd: REPO_ROOT,
    command: spec.command,
    env: { ...spec.env, ...env },
    onLine: (line) => {
      if (line.startsWith('{"result"')) report = JSON.parse(line) as EnqueueReport;
    },
  });
  // "close" comes after the last stdout line, which carries the report; "exit" may come before it.
  const done = new Promise<number | null>((resolve) => {
    producer.child.once("close", (code) => resolve(code));
  }).then((exitCode) => {
    if (report !== undefined) return report;
    throw new Error(`producer exited with ${exitCode} without a report\n${producer.stderrTail()}`);
  });
  return { producer, done };
}

interface CpuReading {
  worker: number;
  redis: number;
  endpoint: number;
  /** Busy time of all cores, to find load from processes outside the benchmark. */
  machine: number;
  core0: number;
  core1: number;
}

function busyReading(): Pick<CpuReading, "machine" | "core0" | "core1"> {
  const busy = machineBusyMs();
  return { machine: busy.total, core0: busy.cores[0] ?? 0, core1: busy.cores[1] ?? 0 };
}

function readCpu(rig: Rig): CpuReading {
  return {
    worker: treeCpuMs(rig.worker.pid),
    redis: readCpuMs(rig.redisPid),
    endpoint: rig.endpoint.process.cpuMs(),
    ...busyReading(),
  };
}

interface PhaseResult {
  report: EnqueueReport;
  stats: EndpointStats;
  cpu: CpuReading;
}

/** Busy share of all cores, in percent of one core, that counts as a quiet machine. */
export const QUIET_PCT = 10;

/**
 * Waits until processes outside `rig` use less than QUIET_PCT of a core over
 * half a second, or until `maxWaitMs` passed, so a measurement does not start
 * in the middle of another program's burst. Returns whether the machine got quiet.
 */
async function waitForQuietMachine(rig: Rig, maxWaitMs: number): Promise<boolean> {
  const deadline = Date.now() + maxWaitMs;
  const sampleMs = 500;
  do {
    const before = readCpu(rig);
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    const after = readCpu(rig);
    const ours =
      after.worker - before.worker + (after.redis - before.redis) + (after.endpoint - before.endpoint);
    const otherPct = ((after.machine - before.machine - ours) / sampleMs) * 100;
    if (otherPct < QUIET_PCT) return true;
  } while (Date.now() < deadline);
  return false;
}

/**
 * Waits up to `quietWaitMs` for a quiet machine, then sends `count` tasks
 * with the producer settings in `env` and waits until they arrived or
 * `deadlineMs` passed. CPU is read from the producer's ready
 * line, just before its first enqueue, to the last arrival.
 */
async function runPhase(
  system: TaskSystem,
  rig: Rig,
  count: number,
  env: NodeJS.ProcessEnv,
  deadlineMs: number,
  quietWaitMs: number,
): Promise<PhaseResult> {
  if (quietWaitMs > 0) await waitForQuietMachine(rig, quietWaitMs);
  await rig.endpoint.reset();
  const arrived = rig.endpoint.waitFor(count, deadlineMs);
  // A failed producer leaves this request open until the endpoint stops, which rejects it.
  arrived.catch(() => undefined);
  const producerEnv = { ...env, BENCH_COUNT: String(count), BENCH_DEADLINE_MS: String(deadlineMs) };
  const { producer, done } = await startProducer(system, rig, producerEnv);
  const before = readCpu(rig);
  try {
    const [report, arrival] = await withDeadline(
      Promise.all([done, arrived]),
      deadlineMs + 10_000,
      `${system.name} phase of ${count} tasks`,
    );
    const after = readCpu(rig);
    const cpu = {
      worker: after.worker - before.worker,
      redis: after.redis - before.redis,
      endpoint: after.endpoint - before.endpoint,
      machine: after.machine - before.machine,
      core0: after.core0 - before.core0,
      core1: after.core1 - before.core1,
    };
    const stats = { ...(await rig.endpoint.stats(count)), ...arrivalTimes(arrival) };
    return { report, stats, cpu };
  } finally {
    await producer.stop(2_000);
  }
}

/** Returns the arrival times of a /wait response, sent when the last task arrived. */
function arrivalTimes(stats: EndpointStats): Pick<EndpointStats, "firstArrivalUs" | "lastArrivalUs"> {
  return { firstArrivalUs: stats.firstArrivalUs, lastArrivalUs: stats.lastArrivalUs };
}

function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/**
 * Names the part that limited a measurement: the worker when core 0 was busy,
 * core 1 (producer and endpoint) when it was busy, Redis when it used most of
 * a core. Core busy time counts every process, so load from other programs
 * shows up in `saturatedDetail` as `other programs`.
 */
function judgeSaturation(shares: {
  worker: number;
  loadgen: number;
  redis: number;
  core0: number;
  core1: number;
  other: number;
}): Pick<TaskRow, "saturated" | "saturatedDetail"> {
  const detail =
    `core 0 ${round(shares.core0)}% busy (worker ${round(shares.worker)}%), ` +
    `core 1 ${round(shares.core1)}% busy (producer + endpoint ${round(shares.loadgen)}%), ` +
    `redis ${round(shares.redis)}%, other programs ${round(shares.other)}%`;
  const candidates: [Exclude<Saturation, "none">, number][] = [
    ["server", shares.core0],
    ["loadgen", shares.core1],
    ["redis", shares.redis],
  ];
  const [part, pct] = candidates.sort((a, b) => b[1] - a[1])[0]!;
  if (pct < SATURATED_PCT) {
    return { saturated: "none", saturatedDetail: `no core at ${SATURATED_PCT}%: ${detail}` };
  }
  return { saturated: part, saturatedDetail: detail };
}

function buildRow(
  system: TaskSystem,
  measurement: TaskRow["measurement"],
  count: number,
  phase: PhaseResult,
  rig: Rig,
  sizes: TaskSizes,
): TaskRow {
  const { report, stats, cpu } = phase;
  const windowMs = Math.max(1, (stats.lastArrivalUs - report.firstEnqueueUs) / 1000);
  const enqueueMs = Math.max(1, (report.lastEnqueueUs - report.firstEnqueueUs) / 1000);
  const delivered = stats.received;
  const pct = (ms: number): number => (ms / windowMs) * 100;
  const redisOnCore1 = sizes.redisCpus === "1" ? cpu.redis : 0;
  const otherMs = cpu.machine - cpu.worker - cpu.redis - cpu.endpoint - report.cpuMs;
  const loadgenPct = pct(report.cpuMs + cpu.endpoint + redisOnCore1);
  const row: TaskRow = {
    peer: system.name,
    measurement,
    concurrency: sizes.concurrency,
    published: report.enqueued,
    expected: count,
    delivered,
    lost: stats.missing,
    duplicates: stats.duplicates,
    tasksPerSec: round((delivered / windowMs) * 1000),
    deliveriesPerSec: round((delivered / windowMs) * 1000),
    enqueuePerSec: round((report.enqueued / enqueueMs) * 1000),
    latencyCount: stats.latency.count,
    p50Ms: stats.latency.p50,
    p90Ms: stats.latency.p90,
    p99Ms: stats.latency.p99,
    maxMs: stats.latency.max,
    workerCpuMs: round(cpu.worker),
    workerCpuMsPerTask: round(cpu.worker / Math.max(1, delivered), 3),
    serverCpuPct: round(pct(cpu.worker)),
    producerCpuPct: round(pct(report.cpuMs)),
    endpointCpuPct: round(pct(cpu.endpoint)),
    loadgenCpuPct: round(loadgenPct),
    redisCpuPct: round(pct(cpu.redis)),
    otherCpuPct: round(Math.max(0, pct(otherMs))),
    core0BusyPct: round(pct(cpu.core0)),
    core1BusyPct: round(pct(cpu.core1)),
    producerCpuMsPerTask: round(report.cpuMs / Math.max(1, report.enqueued), 3),
    redisCpuMsPerTask: round(cpu.redis / Math.max(1, delivered), 3),
    workerRssMiB: round(rig.worker.rssBytes() / 2 ** 20),
    ...judgeSaturation({
      worker: pct(cpu.worker),
      loadgen: loadgenPct,
      redis: pct(cpu.redis),
      core0: pct(cpu.core0),
      core1: pct(cpu.core1),
      other: pct(otherMs),
    }),
  };
  if (measurement === "latency") row.rate = sizes.latencyRate;

  const problems = phaseProblems(phase, count);
  if (problems.length > 0) row.error = problems.join("; ");
  return row;
}

/** Lists what went wrong in a phase that finished: failed enqueues, rejected POSTs, missing tasks. */
function phaseProblems({ report, stats }: PhaseResult, count: number): string[] {
  const problems: string[] = [];
  if (report.failed > 0) {
    problems.push(`${report.failed} enqueue calls failed: ${report.firstError ?? "?"}`);
  }
  if (stats.missingHeader > 0) {
    problems.push(`${stats.missingHeader} POSTs without the task-name header`);
  }
  if (stats.invalidBody > 0) problems.push(`${stats.invalidBody} POSTs without t and n`);
  if (stats.missing > 0) {
    problems.push(`${stats.missing} of ${count} tasks did not arrive before the deadline`);
  }
  return problems;
}

function failedRow(
  system: TaskSystem,
  measurement: TaskRow["measurement"],
  count: number,
  sizes: TaskSizes,
  error: unknown,
): TaskRow {
  return {
    peer: system.name,
    measurement,
    concurrency: sizes.concurrency,
    published: 0,
    expected: count,
    delivered: 0,
    lost: count,
    duplicates: 0,
    tasksPerSec: 0,
    deliveriesPerSec: 0,
    enqueuePerSec: 0,
    latencyCount: 0,
    p50Ms: 0,
    p90Ms: 0,
    p99Ms: 0,
    maxMs: 0,
    workerCpuMs: 0,
    workerCpuMsPerTask: 0,
    serverCpuPct: 0,
    producerCpuPct: 0,
    endpointCpuPct: 0,
    loadgenCpuPct: 0,
    redisCpuPct: 0,
    otherCpuPct: 0,
    core0BusyPct: 0,
    core1BusyPct: 0,
    producerCpuMsPerTask: 0,
    redisCpuMsPerTask: 0,
    workerRssMiB: 0,
    saturated: "none",
    saturatedDetail: "not measured",
    failed: true,
    error: error instanceof Error ? error.message : String(error),
  };
}

/** Deadline of a phase of `count` tasks: generous for the slowest system, still bounded. */
function phaseDeadlineMs(count: number, minimumSeconds: number): number {
  return Math.max(minimumSeconds * 1000, 20_000) + count * 5;
}

/**
 * Measures `system`: warm-up, throughput burst, fixed-rate latency. A step
 * that fails or passes its deadline becomes a row with `error`, and the
 * system's processes are stopped either way.
 */
export async function measureSystem(system: TaskSystem, sizes: TaskSizes): Promise<TaskRow[]> {
  const latencyCount = Math.round(sizes.latencyRate * sizes.latencySeconds);
  let rig: Rig;
  try {
    rig = await withDeadline(startRig(system, sizes), 60_000, `${system.name} start`);
  } catch (error) {
    return [
      failedRow(system, "throughput", sizes.throughputCount, sizes, error),
      failedRow(system, "latency", latencyCount, sizes, error),
    ];
  }

  const rows: TaskRow[] = [];
  const burst = { BENCH_MODE: "burst", BENCH_WINDOW: String(sizes.producerWindow) };
  try {
    await runPhase(system, rig, sizes.warmupCount, burst, phaseDeadlineMs(sizes.warmupCount, 0), 0);
    const throughputDeadlineMs = phaseDeadlineMs(sizes.throughputCount, 0);
    const throughput = await runPhase(
      system,
      rig,
      sizes.throughputCount,
      burst,
      throughputDeadlineMs,
      sizes.quietWaitMs,
    );
    rows.push(buildRow(system, "throughput", sizes.throughputCount, throughput, rig, sizes));
  } catch (error) {
    rows.push(failedRow(system, "throughput", sizes.throughputCount, sizes, error));
  }
  try {
    const paced = { BENCH_MODE: "paced", BENCH_RATE: String(sizes.latencyRate) };
    const latencyDeadlineMs = phaseDeadlineMs(latencyCount, sizes.latencySeconds * 2);
    const quietWaitMs = sizes.quietWaitMs;
    const latency = await runPhase(system, rig, latencyCount, paced, latencyDeadlineMs, quietWaitMs);
    rows.push(buildRow(system, "latency", latencyCount, latency, rig, sizes));
  } catch (error) {
    rows.push(failedRow(system, "latency", latencyCount, sizes, error));
  }
  await withDeadline(stopRig(rig), 30_000, `${system.name} stop`).catch(() => undefined);
  return rows;
}
