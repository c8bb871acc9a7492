/**
 * The test bed of every socket scenario against one server. It has its own
 * redis-server, the portal stub, the server pinned to CPU 0 and load generator
 * workers pinned to CPU 1. The publisher runs in this process, which pins
 * itself to CPU 1. {@link startSocketEnv} starts them all, and `stop()` ends
 * exactly those processes.
 */
import { execFileSync } from "node:child_process";
import { Redis } from "ioredis";
import { freePort } from "../../common/free-port.ts";
import { startRedisServer, type RedisTestServer } from "../../common/redis-test-server.ts";
import { nowUs } from "../lib/clock.ts";
import { LoadGenerator, type LoadStats } from "../lib/loadgen.ts";
import type { OpenResult } from "../lib/loadgen-protocol.ts";
import { message, PEERS, waitForReady, type BenchMessage, type Peer, type PeerName, type Recipient } from "../lib/peers.ts";
import { startPortalStub, type PortalStub } from "../lib/portal-stub.ts";
import { spawnPinned, type PinnedProcess } from "../lib/processes.ts";

export const SERVER_CPU = "0";
export const LOAD_CPU = "1";

/** A process counts as saturated at this share of one core. */
const SATURATED_CPU_PCT = 90;

/** Pins every thread of this process (the publisher and the in-process portal stub) to the load CPU. */
export function pinSelfToLoadCpu(): void {
  execFileSync("taskset", ["-a", "-p", "-c", LOAD_CPU, String(process.pid)], { stdio: "ignore" });
}

export const PINNING = {
  server: `taskset -c ${SERVER_CPU}`,
  loadgen: `taskset -c ${LOAD_CPU} (worker processes)`,
  publisher: `taskset -c ${LOAD_CPU} (the scenario process, which also runs the portal stub)`,
  redis: `CPU ${LOAD_CPU} (inherits the scenario process's affinity)`,
};

/** CPU counters at one instant, for {@link cpuShares}. */
export interface CpuSample {
  atMs: number;
  serverMs: number;
  loadgenMs: number;
  publisherMs: number;
  redisMs: number;
}

/** CPU use between two samples, in percent of one core. */
export interface CpuShares {
  serverCpuPct: number;
  loadgenCpuPct: number;
  publisherCpuPct: number;
  redisCpuPct: number;
  saturated: "server" | "loadgen" | "redis" | "none";
}

export interface SocketEnv {
  peer: Peer;
  port: number;
  redis: RedisTestServer;
  publisher: Redis;
  stub: PortalStub;
  server: PinnedProcess;
  loadgen: LoadGenerator;
  sample(): Promise<CpuSample>;
  /** Opens `count` sockets for users 0..count-1 (socket i: user floor(i / socketsPerSession)). */
  open(count: number, options?: OpenExtras): Promise<OpenResult>;
  stop(): Promise<void>;
}

export interface OpenExtras {
  socketsPerSession?: number;
  dedupe?: boolean;
  /** @defaultValue 500 */
  concurrency?: number;
  /** @defaultValue 10000 */
  openTimeoutMs?: number;
  /** @defaultValue 180000 */
  deadlineMs?: number;
}

async function redisCpuMs(client: Redis): Promise<number> {
  const info = await client.info("cpu");
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? Number.NaN);
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? Number.NaN);
  return (sys + user) * 1000;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

/** Returns the CPU share of each side between two samples, and which side (if any) was near one full core. */
export function cpuShares(before: CpuSample, after: CpuSample): CpuShares {
  const wallMs = Math.max(1, after.atMs - before.atMs);
  const pct = (a: number, b: number): number => round1(((b - a) / wallMs) * 100);
  const serverCpuPct = pct(before.serverMs, after.serverMs);
  const loadgenCpuPct = pct(before.loadgenMs, after.loadgenMs);
  const publisherCpuPct = pct(before.publisherMs, after.publisherMs);
  const redisCpuPct = pct(before.redisMs, after.redisMs);
  // The load generator, the publisher and Redis share CPU 1, so their sum is what can saturate it.
  const loadCpuTotal = loadgenCpuPct + publisherCpuPct + redisCpuPct;
  let saturated: CpuShares["saturated"] = "none";
  if (serverCpuPct >= SATURATED_CPU_PCT) saturated = "server";
  else if (redisCpuPct >= SATURATED_CPU_PCT) saturated = "redis";
  else if (loadCpuTotal >= SATURATED_CPU_PCT) saturated = "loadgen";
  return { serverCpuPct, loadgenCpuPct, publisherCpuPct, redisCpuPct, saturated };
}

/** Environments started and not yet stopped, so a signal handler can stop them. */
const runningEnvs = new Set<SocketEnv>();

/** Stops every environment still running, for a SIGINT or SIGTERM handler. */
export async function stopRunningEnvs(): Promise<void> {
  await Promise.all([...runningEnvs].map((env) => env.stop()));
}

/**
 * Starts Redis, the stub, the server of `peerName` (with `nodeFlags` added to
 * its Node.js flags) and enough load generator workers for `maxSockets`.
 */
export async function startSocketEnv(
  peerName: PeerName,
  maxSockets: number,
  nodeFlags: readonly string[] = [],
): Promise<SocketEnv> {
  const peer = PEERS[peerName];
  const cleanups: (() => Promise<unknown>)[] = [];
  let env: SocketEnv | undefined;
  const stop = async (): Promise<void> => {
    if (env) runningEnvs.delete(env);
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
  };
  try {
    const redis = await startRedisServer();
    cleanups.push(() => redis.kill());
    const publisher = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    publisher.on("error", () => undefined);
    cleanups.push(async () => publisher.disconnect());
    const stub = await startPortalStub();
    cleanups.push(() => stub.close());

    const port = await freePort();
    const command = peer.command({
      port,
      authUrl: stub.authUrl,
      origin: stub.origin,
      redisUrl: redis.url,
      nodeFlags,
    });
    const server = await spawnPinned({
      cpus: SERVER_CPU,
      command: [command.command, ...command.args],
      cwd: command.cwd,
      env: { ...process.env, ...command.env },
      isReady: peer.printsReadyLine ? undefined : null,
    });
    cleanups.push(() => server.stop());
    await waitForReady(peer.readyUrl(port));

    const loadgen = await LoadGenerator.start(maxSockets, LOAD_CPU);
    cleanups.push(() => loadgen.stop());

    const socketUrl = new URL(peer.socketUrl(port));
    const sample = async (): Promise<CpuSample> => {
      const own = process.cpuUsage();
      return {
        atMs: Date.now(),
        serverMs: server.cpuMs(),
        loadgenMs: loadgen.cpuMs(),
        publisherMs: (own.user + own.system) / 1000,
        redisMs: await redisCpuMs(publisher),
      };
    };
    const open = (count: number, extras: OpenExtras = {}): Promise<OpenResult> =>
      loadgen.open({
        count,
        host: socketUrl.hostname,
        port,
        path: socketUrl.pathname + socketUrl.search,
        protocol: peer.protocol,
        origin: stub.origin,
        socketsPerSession: extras.socketsPerSession ?? 1,
        awaitWelcome: peer.name === "patpush" || peer.name === "patpush-live",
        resume: peer.name === "patpush",
        dedupe: extras.dedupe ?? false,
        concurrency: extras.concurrency ?? 500,
        openTimeoutMs: extras.openTimeoutMs ?? 10_000,
        deadlineMs: extras.deadlineMs ?? 180_000,
      });
    env = { peer, port, redis, publisher, stub, server, loadgen, sample, open, stop };
    runningEnvs.add(env);
    return env;
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Result of {@link publishAtRate}. */
export interface PublishResult {
  published: number;
  /** Sequence number after the last message published. */
  nextN: number;
  durationMs: number;
  /** Pipelines that Redis rejected or that failed. */
  errors: number;
}

/** Pipelines in flight at once; past it the publisher waits, so it cannot queue without bound. */
const MAX_PIPELINES_IN_FLIGHT = 16;
const PUBLISH_TICK_MS = 5;

/**
 * Publishes `rate` messages per second for `durationMs`, each stamped with nowUs()
 * when its batch is built, with sequence numbers from `firstN` on.
 */
export async function publishAtRate(
  env: SocketEnv,
  rate: number,
  durationMs: number,
  firstN: number,
  recipientOf: (n: number) => Recipient,
): Promise<PublishResult> {
  const startedMs = Date.now();
  const total = Math.round((rate * durationMs) / 1000);
  let published = 0;
  let errors = 0;
  const inFlight = new Set<Promise<void>>();
  while (published < total) {
    const elapsedMs = Date.now() - startedMs;
    const due = Math.min(total, Math.floor((rate * elapsedMs) / 1000) + 1) - published;
    if (due > 0 && inFlight.size < MAX_PIPELINES_IN_FLIGHT) {
      const t = nowUs();
      const batch: BenchMessage[] = [];
      for (let i = 0; i < due; i++) {
        const n = firstN + published + i;
        batch.push(message(recipientOf(n), t, n));
      }
      published += due;
      const sent = env.peer.publish(env.publisher, batch).then(
        () => undefined,
        () => {
          errors++;
        },
      );
      inFlight.add(sent);
      void sent.then(() => inFlight.delete(sent));
    } else if (inFlight.size >= MAX_PIPELINES_IN_FLIGHT) {
      await Promise.race(inFlight);
      continue;
    }
    await new Promise((resolve) => setTimeout(resolve, PUBLISH_TICK_MS));
  }
  await Promise.all(inFlight);
  return { published, nextN: firstN + published, durationMs: Date.now() - startedMs, errors };
}

/** Polls the load generator until `delivered` reaches `expected` or `timeoutMs` passes. */
export async function waitForDeliveries(env: SocketEnv, expected: number, timeoutMs: number): Promise<LoadStats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await env.loadgen.stats();
    if (stats.delivered >= expected || Date.now() >= deadline) return stats;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Waits until deliveries stop arriving (no change in delivered + late for `quietMs`),
 * so a backlog from an overloaded step does not spill into the next one.
 */
export async function waitForQuiet(env: SocketEnv, quietMs: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let stableSinceMs = Date.now();
  while (Date.now() < deadline) {
    const stats = await env.loadgen.stats();
    const seen = stats.delivered + stats.late + stats.duplicates;
    if (seen !== last) {
      last = seen;
      stableSinceMs = Date.now();
    } else if (Date.now() - stableSinceMs >= quietMs) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Publishes a few messages and waits for them, so the first measured step does not pay for JIT warm-up. */
export async function warmUp(env: SocketEnv, recipientOf: (n: number) => Recipient, firstN: number): Promise<number> {
  const published = await publishAtRate(env, 50, 200, firstN, recipientOf);
  await waitForQuiet(env, 300, 5_000);
  return published.nextN;
}
