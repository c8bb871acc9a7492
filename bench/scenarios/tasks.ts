/**
 * Task dispatch benchmark: tasks per second delivered to a portal endpoint,
 * and enqueue-to-POST latency at a fixed rate, for patpush's dispatcher, a
 * bare BullMQ worker (the floor of the queue) and Celery with requests.
 *
 * CLI: `node --import tsx bench/scenarios/tasks.ts [--quick]` prints the results JSON.
 */
import { pathToFileURL } from "node:url";
import { componentVersions, machineInfo, type MachineInfo } from "../lib/machine.ts";
import { freePort } from "../../common/free-port.ts";
import { measureSystem, QUIET_PCT, type TaskRow, type TaskSizes } from "../tasks/measure.ts";
import { TASK_SYSTEMS, type TaskSystem } from "../tasks/systems.ts";
import { stopChildrenOnSignal } from "../lib/processes.ts";
import { PAD_BYTES, patpushJobBytes } from "../tasks/task-payload.ts";

/** Results of the task scenario, in the shape every scenario writes to bench/results. */
export interface TasksResults {
  scenario: "tasks";
  startedAt: string;
  machine: MachineInfo & { model: string; node: string };
  versions: Record<string, string>;
  command: string;
  pinning: Record<string, string>;
  sizes: TaskSizes;
  rows: TaskRow[];
  notes: string[];
}

/** Options of {@link runTasksScenario}. */
export interface TasksScenarioOptions {
  /** Small sizes that finish in seconds. */
  quick?: boolean;
  /** Systems to run, by name; all of them when absent. */
  systems?: readonly TaskSystem["name"][];
}

const FULL_SIZES = {
  throughputCount: 20_000,
  warmupCount: 1_000,
  latencyRate: 200,
  latencySeconds: 10,
  quietWaitMs: 60_000,
};
const QUICK_SIZES = {
  throughputCount: 200,
  warmupCount: 50,
  latencyRate: 200,
  latencySeconds: 1,
  quietWaitMs: 0,
};

/** Jobs each worker runs at once: patpush's default PATPUSH_CONCURRENCY. */
const CONCURRENCY = 8;
/** Enqueue calls a Node.js producer keeps in flight, like a portal serving many requests at once. */
const PRODUCER_WINDOW = 64;

/** Returns the notes that state how the systems compare and what each target is. */
function comparisonNotes(rows: readonly TaskRow[]): string[] {
  const find = (peer: TaskRow["peer"], measurement: TaskRow["measurement"]): TaskRow | undefined =>
    rows.find((row) => row.peer === peer && row.measurement === measurement && row.error === undefined);
  const notes: string[] = [];
  const patpush = find("patpush", "throughput");
  const bare = find("bullmq-bare", "throughput");
  const celery = find("celery", "throughput");
  if (patpush && celery) {
    const ratio = patpush.tasksPerSec / celery.tasksPerSec;
    notes.push(`patpush / Celery tasks/s = ${ratio.toFixed(2)} (target >= 8)`);
  }
  if (patpush && bare) {
    const share = (patpush.tasksPerSec / bare.tasksPerSec) * 100;
    const cpu = patpush.workerCpuMsPerTask / bare.workerCpuMsPerTask;
    notes.push(`patpush / bare BullMQ tasks/s = ${share.toFixed(1)}% (target >= 80%)`);
    notes.push(`patpush / bare BullMQ worker CPU per task = ${cpu.toFixed(2)}x`);
  }
  const latency = find("patpush", "latency");
  if (latency) {
    notes.push(`patpush p50 at ${latency.rate} tasks/s = ${latency.p50Ms} ms (target <= 2 ms)`);
  }
  return notes;
}


/** Returns a note for each row during which other programs competed for the cores. */
function contentionNotes(rows: readonly TaskRow[]): string[] {
  return rows
    .filter((row) => row.otherCpuPct > QUIET_PCT)
    .map(
      (row) =>
        `${row.peer} ${row.measurement}: other programs used ${row.otherCpuPct}% of a core ` +
        "during the measurement, so its tasks/s is low and its latency high",
    );
}

/** Runs every available system in turn, each with its own redis-server. */
export async function runTasksScenario(options: TasksScenarioOptions = {}): Promise<TasksResults> {
  const startedAt = new Date().toISOString();
  const base = options.quick ? QUICK_SIZES : FULL_SIZES;
  // The job size depends on the origin's length only, so any loopback port gives the same bytes.
  const jobBytes = await patpushJobBytes(`http://127.0.0.1:${await freePort()}`);
  const sizes: TaskSizes = {
    ...base,
    concurrency: CONCURRENCY,
    producerWindow: PRODUCER_WINDOW,
    redisCpus: undefined,
    jobBytes,
  };

  const rows: TaskRow[] = [];
  const notes: string[] = [];
  for (const system of TASK_SYSTEMS) {
    if (options.systems !== undefined && !options.systems.includes(system.name)) continue;
    const reason = system.unavailable();
    if (reason !== undefined) {
      notes.push(`${system.name} skipped: ${reason}`);
      continue;
    }
    notes.push(`${system.name}: ${system.description}`);
    rows.push(...(await measureSystem(system, sizes)));
  }

  notes.push(
    `every system: concurrency ${CONCURRENCY}, job data ${jobBytes} JSON bytes ` +
      `(form pad ${PAD_BYTES}+ bytes), ` +
      "the same cookie, X-Task-Name header and _authenticator field; a fresh redis-server per system",
    `throughput: ${sizes.throughputCount} tasks enqueued as fast as the producer can ` +
      `(Node.js: ${PRODUCER_WINDOW} enqueue calls in flight; Celery: one apply_async after another), ` +
      "timed from the first enqueue to the last POST received, after a warm-up of " +
      `${sizes.warmupCount} tasks`,
    `latency: ${sizes.latencyRate} tasks/s for ${sizes.latencySeconds} s; ` +
      "latency = arrival at the endpoint - " +
      "enqueue time carried in form field t (CLOCK_MONOTONIC in both Node.js and Python)",
    "CPU percentages are of one core over the measured window; saturated names a part at 85% or more",
    `before each measurement the run waits up to ${sizes.quietWaitMs / 1000} s ` +
      "for other programs to use " +
      `less than ${QUIET_PCT}% of a core; otherCpuPct is what they used during it`,
    ...comparisonNotes(rows),
    ...contentionNotes(rows),
  );

  const machine = machineInfo();
  return {
    scenario: "tasks",
    startedAt,
    machine: { ...machine, model: machine.cpuModel, node: process.version },
    versions: componentVersions(),
    command: `node --import tsx bench/scenarios/tasks.ts${options.quick ? " --quick" : ""}`,
    pinning: {
      worker: "core 0 (taskset -c 0; a Celery worker's pool processes inherit it)",
      producer: "core 1",
      endpoint: "core 1",
      redis: sizes.redisCpus === undefined ? "unpinned" : `core ${sizes.redisCpus}`,
    },
    sizes,
    rows,
    notes,
  };
}

const USAGE = `usage: tasks.ts [--quick] [--systems=${TASK_SYSTEMS.map((s) => s.name).join(",")}]`;

/** Parses the command line; exits with status 2 and the usage on anything else. */
function parseCommandLine(args: string[]): { quick: boolean; systems: TaskSystem["name"][] | undefined } {
  let quick = false;
  let systems: TaskSystem["name"][] | undefined;
  for (const arg of args) {
    if (arg === "--quick") quick = true;
    else if (arg.startsWith("--systems=")) {
      const names = arg.slice("--systems=".length).split(",").filter(Boolean);
      const known = TASK_SYSTEMS.map((s) => s.name as string);
      const unknown = names.filter((name) => !known.includes(name));
      if (names.length === 0 || unknown.length > 0) {
        process.stderr.write(`unknown system ${unknown.join(", ") || "(none given)"}\n${USAGE}\n`);
        process.exit(2);
      }
      systems = names as TaskSystem["name"][];
    } else {
      process.stderr.write(`${arg === "--help" || arg === "-h" ? "" : `unknown argument ${arg}\n`}${USAGE}\n`);
      process.exit(arg === "--help" || arg === "-h" ? 0 : 2);
    }
  }
  return { quick, systems };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  stopChildrenOnSignal();
  const { quick, systems } = parseCommandLine(process.argv.slice(2));
  const results = await runTasksScenario({ quick, systems });
  console.log(JSON.stringify(results, null, 2));
  // Pending timers of a failed step must not keep the process alive after the results are out.
  process.exit(0);
}
