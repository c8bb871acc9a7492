/**
 * CPU time of a process together with its descendants, such as a Celery
 * prefork pool, and of the whole machine.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { readCpuMs } from "../lib/processes.ts";

const clockTicks = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
const TICKS_PER_SECOND = Number(clockTicks.trim()) || 100;

/** Returns the busy time (user, nice, system, irq, softirq, steal) of a /proc/stat line, in ms. */
function busyMs(line: string): number {
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  const busy = [user, nice, system, irq, softirq, steal];
  const ticks = busy.reduce<number>((sum, value) => sum + (value ?? 0), 0);
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/**
 * Returns the busy CPU time since boot, in milliseconds, of the whole
 * machine (`total`) and of each core (`cores[i]` for cpu i), from /proc/stat.
 */
export function machineBusyMs(): { total: number; cores: number[] } {
  const lines = readFileSync("/proc/stat", "utf8").split("\n");
  const cores: number[] = [];
  for (const line of lines) {
    const match = /^cpu(\d+) /.exec(line);
    if (match !== null) cores[Number(match[1])] = busyMs(line);
  }
  return { total: busyMs(lines[0] ?? ""), cores };
}

/** Returns the parent PID of every live process, keyed by PID. */
function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Field 4 (ppid) is the second field after the command name's closing bracket.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // The process exited between readdir and read.
    }
  }
  return parents;
}

/** Returns `pid` and the PIDs of all its live descendants. */
export function processTree(pid: number): number[] {
  const parents = parentPids();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

/**
 * Returns the user plus system CPU time of `pid` and its live descendants, in
 * milliseconds. A descendant that exited between two readings drops out of
 * the sum, so compare readings only while the process tree is stable.
 */
export function treeCpuMs(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    const ms = readCpuMs(member);
    if (!Number.isNaN(ms)) total += ms;
  }
  return total;
}
