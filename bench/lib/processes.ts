import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";

/** Options of {@link spawnPinned}. */
export interface SpawnPinnedOptions {
  /** CPU list for `taskset -c`, e.g. "0" or "1". */
  cpus: string;
  /** Program and arguments, e.g. ["node", "--import", "tsx", "bench/peers/uws-raw.ts"]. */
  command: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Decides whether a stdout line reports readiness. `null` resolves as soon as
   * the process has spawned, for servers that print nothing; poll their ready URL then.
   * @defaultValue a JSON line with `"ready": true`
   */
  isReady?: ((line: string) => boolean) | null;
  /** @defaultValue 20000 */
  readyTimeoutMs?: number;
  /** Receives every stdout line after the ready line. */
  onLine?: (line: string) => void;
  /** Adds an IPC channel (for `child.send`). @defaultValue false */
  ipc?: boolean;
}

/** A child process pinned to CPUs, started and ready. */
export interface PinnedProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** The ready line, parsed as JSON when it is JSON, else `{ line }`. */
  readonly ready: Record<string, unknown>;
  /** User plus system CPU time in ms (from /proc/<pid>/stat). */
  cpuMs(): number;
  /** Resident set size in bytes (VmRSS from /proc/<pid>/status). */
  rssBytes(): number;
  /** Sends SIGTERM, then SIGKILL after `graceMs`; resolves when the process exited. */
  stop(graceMs?: number): Promise<void>;
  /** Last lines of stderr, for error messages. */
  stderrTail(): string;
}

let clockTicksPerSecond: number | undefined;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    const output = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    clockTicksPerSecond = Number(output.trim()) || 100;
  }
  return clockTicksPerSecond;
}

/** User plus system CPU time of a process in ms, or NaN when it has exited. */
export function readCpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return Number.NaN;
  }
  // The command name (field 2) may contain spaces, so count fields after its closing bracket.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / ticksPerSecond();
}

/** Resident set size of a process in bytes, or NaN when it has exited. */
export function readRssBytes(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return Number.NaN;
  }
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

function isJsonReadyLine(line: string): boolean {
  if (!line.startsWith("{")) return false;
  try {
    return (JSON.parse(line) as { ready?: unknown }).ready === true;
  } catch {
    return false;
  }
}

function parseReadyLine(line: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(line);
    if (value !== null && typeof value === "object") return value as Record<string, unknown>;
  } catch {
    // Not JSON: fall through.
  }
  return { line };
}

/**
 * Starts `taskset -c <cpus> <command...>` and resolves once a stdout line passes `isReady`.
 * Rejects (and kills the child) when it exits first or the timeout passes.
 */
export async function spawnPinned(options: SpawnPinnedOptions): Promise<PinnedProcess> {
  const isReady = options.isReady === undefined ? isJsonReadyLine : options.isReady;
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  const stdio: ("pipe" | "ipc")[] = ["pipe", "pipe", "pipe"];
  if (options.ipc) stdio.push("ipc");
  const child = spawn("taskset", ["-c", options.cpus, ...options.command], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio,
  });
  const stderrLines: string[] = [];
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderrLines.push(line);
    if (stderrLines.length > 40) stderrLines.shift();
  });
  let exited = child.exitCode !== null;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );
  const describe = (): string => `${options.command.join(" ")} (pid ${child.pid})`;
  const stderrTail = (): string => stderrLines.join("\n");

  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill("SIGKILL");
      reject(new Error(`${describe()} did not print a ready line within ${readyTimeoutMs} ms\n${stderrTail()}`));
    }, readyTimeoutMs);
    if (isReady === null) {
      child.once("spawn", () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({});
      });
    }
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (done) {
        options.onLine?.(line);
        return;
      }
      if (isReady === null || !isReady(line)) return;
      done = true;
      clearTimeout(timer);
      resolve(parseReadyLine(line));
    });
    void exit.then(() => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${describe()} exited with ${child.exitCode ?? child.signalCode} before it was ready\n${stderrTail()}`));
    });
  });

  const pid = child.pid!;
  const stop = async (graceMs = 5_000): Promise<void> => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exit;
    clearTimeout(timer);
  };
  return {
    pid,
    child,
    ready,
    cpuMs: () => readCpuMs(pid),
    rssBytes: () => readRssBytes(pid),
    stop,
    stderrTail,
  };
}

/** Returns the PIDs of this process's direct children, read from /proc. */
export function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // The command name is in parentheses and may hold spaces; the parent PID follows the state.
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent === process.pid) pids.push(Number(entry));
    } catch {
      // The process exited while the list was read.
    }
  }
  return pids;
}

/**
 * Stops this process's children on SIGINT or SIGTERM, by PID: SIGTERM first,
 * SIGKILL to what is left after `graceMs`, then exits with 130. For scenario
 * scripts whose servers would otherwise outlive an interrupted run.
 */
export function stopChildrenOnSignal(graceMs = 3_000): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const pid of childPids()) signalPid(pid, "SIGTERM");
      setTimeout(() => {
        for (const pid of childPids()) signalPid(pid, "SIGKILL");
        process.exit(130);
      }, graceMs);
    });
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // It has exited already.
  }
}
