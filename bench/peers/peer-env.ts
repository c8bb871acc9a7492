/**
 * Helpers that every peer server shares besides the cookie check: its
 * settings from the environment, the ready line, and the wait for SIGTERM or SIGINT.
 */
import { fstatSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Returns the version of a package installed in the repository's node_modules. */
export function packageVersion(name: string): string {
  const path = fileURLToPath(new URL(`../../node_modules/${name}/package.json`, import.meta.url));
  const { version } = JSON.parse(readFileSync(path, "utf8")) as { version?: string };
  return version ?? "unknown";
}

/** Settings of a peer server. */
export interface PeerSettings {
  /** BENCH_PORT: port on 127.0.0.1 to listen on. */
  port: number;
  /** BENCH_AUTH_URL: the portal's auth URL. */
  authUrl: string;
  /** BENCH_REDIS_URL: the Redis that messages arrive through. */
  redisUrl: string;
}

/** Reads the settings from `env`, and throws one error that lists every problem. */
export function readPeerSettings(env: NodeJS.ProcessEnv = process.env): PeerSettings {
  const problems: string[] = [];
  const port = Number(env.BENCH_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    problems.push(`BENCH_PORT: must be an integer from 1 to 65535 (got ${env.BENCH_PORT})`);
  }
  const authUrl = env.BENCH_AUTH_URL ?? "";
  if (!URL.canParse(authUrl)) problems.push(`BENCH_AUTH_URL: must be a URL (got ${authUrl})`);
  const redisUrl = env.BENCH_REDIS_URL ?? "";
  if (!redisUrl.startsWith("redis://")) problems.push("BENCH_REDIS_URL: must be a redis:// URL");

  if (problems.length > 0) throw new Error(`invalid peer settings:\n  ${problems.join("\n  ")}`);
  return { port, authUrl, redisUrl };
}

/** Prints the ready line `{"ready":true,"port":...,"impl":...}` on stdout. */
export function printReadyLine(port: number, impl: string, details: object = {}): void {
  process.stdout.write(`${JSON.stringify({ ready: true, port, impl, ...details })}\n`);
}

/**
 * Resolves with the first SIGTERM or SIGINT, or with "stdin closed" when
 * stdin is a pipe and its writer (the parent process) goes away, so a
 * server whose parent was killed does not keep running.
 */
export function waitForStopSignal(): Promise<NodeJS.Signals | "stdin closed"> {
  return new Promise((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
    if (fstatSync(0).isFIFO()) {
      process.stdin.once("end", () => resolve("stdin closed"));
      process.stdin.resume();
    }
  });
}

/** Returns the topic of a user or of a channel, as the peers name them. */
export function userTopic(user: string): string {
  return `user:${user}`;
}

export function channelTopic(channel: string): string {
  return `channel:${channel}`;
}

/** Recipient of one `bench:done` message: a user or a channel. */
export type DoneRecipient = { user: string } | { channel: string };

/**
 * Returns the recipient named by the JSON text of a `bench:done` message, or
 * undefined for text that is not JSON or names neither a user nor a channel.
 */
export function doneRecipient(text: string): DoneRecipient | undefined {
  let parsed: { user?: unknown; channel?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    return undefined;
  }
  if (typeof parsed.user === "string") return { user: parsed.user };
  if (typeof parsed.channel === "string") return { channel: parsed.channel };
  return undefined;
}
