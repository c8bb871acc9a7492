/**
 * The machine a benchmark ran on and the versions of every component,
 * recorded beside the numbers so a reader can compare runs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { createRequire } from "node:module";

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memGiB: number;
  kernel: string;
  openFilesLimit: string;
}

/** Returns the CPU, memory, kernel and file limit of this machine. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cpus: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    openFilesLimit: commandOutput("sh", ["-c", "ulimit -n"]) ?? "unknown",
  };
}

const PACKAGES = [
  "@trufflesuite/uws-js-unofficial",
  "ws",
  "socket.io",
  "@socket.io/redis-adapter",
  "@socket.io/redis-emitter",
  "ioredis",
  "bullmq",
  "undici",
  "playwright-core",
] as const;

/** Versions of Node.js, patpush, the npm packages compared and the external programs. */
export function componentVersions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const versions: Record<string, string> = { node: process.version };
  const own = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  versions.patpush = own.version;
  for (const name of PACKAGES) {
    try {
      const manifest = require(`${name}/package.json`) as { version: string };
      versions[name] = manifest.version;
    } catch {
      versions[name] = "not installed";
    }
  }
  versions["redis-server"] =
    commandOutput("redis-server", ["--version"])?.match(/v=(\S+)/)?.[1] ?? "not found";
  versions.chromium = commandOutput("/usr/bin/chromium", ["--version"]) ?? "not found";
  versions.celery =
    commandOutput("/usr/bin/python3", ["-c", "import celery; print(celery.__version__)"]) ??
    "not found";
  versions.requests =
    commandOutput("/usr/bin/python3", ["-c", "import requests; print(requests.__version__)"]) ??
    "not found";
  return versions;
}

function commandOutput(command: string, args: string[]): string | undefined {
  try {
    return execFileSync(command, args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return undefined;
  }
}
