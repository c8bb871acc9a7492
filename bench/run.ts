/**
 * Runs the patpush benchmarks: each scenario in a child process of its own,
 * bounded in time, its JSON written to bench/results/<id>.json (or
 * bench/results/quick/ with --quick), then the report in docs/benchmarks.md.
 *
 *   node --import tsx bench/run.ts [--quick] [--only S1,S2] [--no-report]
 */
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { componentVersions, machineInfo } from "./lib/machine.ts";
import { writeReport } from "./report.ts";

interface Scenario {
  id: string;
  title: string;
  /** Script and arguments, relative to the project folder. */
  argv: string[];
  /** Maximum duration of a full run; past it the child's process group is killed. */
  timeoutMinutes: number;
}

export const SCENARIOS: readonly Scenario[] = [
  { id: "S1", title: "Idle sockets: RSS per socket", argv: ["bench/scenarios/sockets.ts", "S1"], timeoutMinutes: 8 },
  { id: "S2", title: "Broadcast to one channel", argv: ["bench/scenarios/sockets.ts", "S2"], timeoutMinutes: 12 },
  { id: "S3", title: "Unicast through Redis", argv: ["bench/scenarios/sockets.ts", "S3"], timeoutMinutes: 12 },
  { id: "S4", title: "Reconnect storm", argv: ["bench/scenarios/sockets.ts", "S4"], timeoutMinutes: 8 },
  { id: "S5", title: "Recovery under forced closes", argv: ["bench/scenarios/sockets.ts", "S5"], timeoutMinutes: 8 },
  { id: "S6", title: "Tasks: dispatch rate and latency", argv: ["bench/scenarios/tasks.ts"], timeoutMinutes: 12 },
  { id: "S7", title: "Browser: publish to swapped fragment", argv: ["bench/scenarios/browser.ts"], timeoutMinutes: 6 },
];

/** Set by Ctrl+C or SIGTERM: the running scenario is stopped and no other starts. */
let interrupted = false;

const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Options {
  quick: boolean;
  only: Set<string> | undefined;
  report: boolean;
}

function parseArgs(args: string[]): Options {
  const options: Options = { quick: false, only: undefined, report: true };
  for (let index = 0; index < args.length; index++) {
    const arg = args[index];
    if (arg === "--quick") options.quick = true;
    else if (arg === "--no-report") options.report = false;
    else if (arg === "--only") {
      const list = args[++index];
      if (list === undefined) throw new Error("--only needs a list of scenarios, e.g. --only S2,S3");
      const ids = list.split(",").map((id) => id.trim().toUpperCase());
      const unknown = ids.filter((id) => !SCENARIOS.some((s) => s.id === id));
      if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.id).join(", ")}`);
      options.only = new Set(ids);
    } else if (arg === "--help" || arg === "-h") {
      console.log("usage: npm run bench -- [--quick] [--only S1,S2,...] [--no-report]");
      for (const s of SCENARIOS) console.log(`  ${s.id}  ${s.title}`);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}; try --help`);
  }
  return options;
}

/** Parses the results object a scenario printed: its whole standard output, or its last line. */
function parseResults(stdout: string): unknown {
  const text = stdout.trim();
  try {
    return JSON.parse(text);
  } catch {
    const last = text.split("\n").at(-1) ?? "";
    return JSON.parse(last);
  }
}

interface ScenarioOutcome {
  ok: boolean;
  results?: unknown;
  error?: string;
  durationS: number;
}

/** Runs one scenario in its own process group, so a timeout stops every process it started. */
function runScenario(scenario: Scenario, quick: boolean): Promise<ScenarioOutcome> {
  const started = Date.now();
  const args = ["--import", "tsx", ...scenario.argv, ...(quick ? ["--quick"] : [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "inherit"] });
  // Ctrl+C reaches only this process, since the child has a group of its own: pass it on.
  const stop = () => {
    interrupted = true;
    killGroup(child.pid, "SIGTERM");
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  let stdout = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk;
  });
  const limitMs = (quick ? 3 : scenario.timeoutMinutes) * 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, "SIGTERM");
    setTimeout(() => killGroup(child.pid, "SIGKILL"), 5_000).unref();
  }, limitMs);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      const durationS = Math.round((Date.now() - started) / 100) / 10;
      if (timedOut) {
        resolve({ ok: false, error: `stopped after ${limitMs / 60_000} minutes`, durationS });
        return;
      }
      if (code !== 0) {
        resolve({ ok: false, error: `exited with ${signal ?? code}`, durationS });
        return;
      }
      try {
        resolve({ ok: true, results: parseResults(stdout), durationS });
      } catch (error) {
        resolve({ ok: false, error: `printed no results JSON: ${(error as Error).message}`, durationS });
      }
    });
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group has already exited.
  }
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const outDir = path.join(ROOT, "bench", "results", ...(options.quick ? ["quick"] : []));
  await mkdir(outDir, { recursive: true });
  const machine = machineInfo();
  const versions = componentVersions();
  let failures = 0;
  for (const scenario of SCENARIOS) {
    if (options.only && !options.only.has(scenario.id)) continue;
    if (interrupted) break;
    console.log(`bench: ${scenario.id} ${scenario.title}`);
    const outcome = await runScenario(scenario, options.quick);
    if (interrupted) {
      console.error(`bench: interrupted during ${scenario.id}; its results are not written`);
      process.exitCode = 130;
      return;
    }
    if (!outcome.ok) failures++;
    const command = `node --import tsx ${scenario.argv.join(" ")}${options.quick ? " --quick" : ""}`;
    const file = path.join(outDir, `${scenario.id}.json`);
    const record = {
      id: scenario.id,
      title: scenario.title,
      quick: options.quick,
      command,
      finishedAt: new Date().toISOString(),
      durationS: outcome.durationS,
      machine,
      versions,
      ...(outcome.ok ? { results: outcome.results } : { error: outcome.error }),
    };
    await writeFile(file, `${JSON.stringify(record, null, 2)}\n`);
    console.log(`bench: ${scenario.id} ${outcome.ok ? "done" : `failed: ${outcome.error}`} in ${outcome.durationS} s -> ${path.relative(ROOT, file)}`);
  }
  if (options.report && !options.quick) {
    const written = await writeReport();
    console.log(`bench: report written to ${written.join(", ")}`);
  }
  if (failures > 0) {
    console.error(`bench: ${failures} scenario(s) failed; see their JSON files`);
    process.exitCode = 1;
  }
}

await main();
