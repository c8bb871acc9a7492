/**
 * The load generator's coordinator: starts worker processes (loadgen-worker.ts)
 * pinned to a CPU, splits sockets between them, and merges their counters and
 * latency histograms. Every request has a deadline, so a stuck worker fails
 * the step instead of hanging it.
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mergeEncoded, type LatencySummary } from "./histogram.ts";
import type { OpenResult, OpenSpec, WorkerReply, WorkerRequest, WorkerStats } from "./loadgen-protocol.ts";
import { spawnPinned, type PinnedProcess } from "./processes.ts";

/** Sockets per worker: the fd limit is 20,000 per process, with room for the process's own files. */
export const SOCKETS_PER_WORKER = 9_950;

const WORKER_FILE = fileURLToPath(new URL("./loadgen-worker.ts", import.meta.url));
/** Extra time a worker gets to reply past the deadline of its own work. */
const REPLY_GRACE_MS = 10_000;

/** Options of {@link LoadGenerator.open}: the socket count, which it splits between workers, and the rest of the spec. */
export type OpenOptions = Omit<OpenSpec, "first" | "count"> & { count: number; deadlineMs: number };

/** Counters of every worker, merged: the histograms as summaries, the per-user counts as a map. */
export type LoadStats = Omit<WorkerStats, "latency" | "replayLatency" | "perUser"> & {
  latency: LatencySummary;
  replayLatency: LatencySummary;
  perUser?: Map<number, number>;
};

class WorkerClient {
  #nextId = 1;
  #waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();

  constructor(readonly process: PinnedProcess) {
    const child: ChildProcess = process.child;
    child.on("message", (reply: WorkerReply) => {
      const waiter = this.#waiting.get(reply.id);
      if (!waiter) return;
      this.#waiting.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new Error(`load generator worker failed: ${reply.error}`));
    });
    child.once("exit", (code, signal) => {
      for (const waiter of this.#waiting.values()) {
        waiter.reject(new Error(`load generator worker exited (${code ?? signal})\n${process.stderrTail()}`));
      }
      this.#waiting.clear();
    });
  }

  request<T>(request: WorkerRequest, timeoutMs: number): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`load generator worker did not reply to "${request.op}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.child.send({ ...request, id });
    });
  }
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, value] of Object.entries(from)) into[key] = (into[key] ?? 0) + value;
}

function mergeOpenResults(results: readonly OpenResult[]): OpenResult {
  const merged: OpenResult = { durationMs: 0, open: 0, missing: 0, failed: {} };
  for (const result of results) {
    merged.durationMs = Math.max(merged.durationMs, result.durationMs);
    merged.open += result.open;
    merged.missing += result.missing;
    addCounts(merged.failed, result.failed);
  }
  return merged;
}

/** Worker processes that together hold the client sockets. */
export class LoadGenerator {
  #workers: WorkerClient[];
  /** Number of sockets per worker since the last open. */
  #counts: number[] = [];

  private constructor(workers: WorkerClient[]) {
    this.#workers = workers;
  }

  /** Starts enough workers for `maxSockets`, pinned to `cpus` with taskset. */
  static async start(maxSockets: number, cpus = "1"): Promise<LoadGenerator> {
    const count = Math.max(1, Math.ceil(maxSockets / SOCKETS_PER_WORKER));
    const started = await Promise.allSettled(
      Array.from({ length: count }, () =>
        spawnPinned({ cpus, command: [process.execPath, "--import", "tsx", WORKER_FILE], ipc: true }),
      ),
    );
    const processes = started.flatMap((item) => (item.status === "fulfilled" ? [item.value] : []));
    const failure = started.find((item) => item.status === "rejected");
    if (failure) {
      await Promise.all(processes.map((item) => item.stop()));
      throw failure.reason;
    }
    return new LoadGenerator(processes.map((item) => new WorkerClient(item)));
  }

  get pids(): number[] {
    return this.#workers.map((worker) => worker.process.pid);
  }

  /** CPU time of every worker, in ms. */
  cpuMs(): number {
    return this.#workers.reduce((sum, worker) => sum + worker.process.cpuMs(), 0);
  }

  /** Opens `count` sockets (global indexes 0..count-1), split evenly between the workers. */
  async open(options: OpenOptions): Promise<OpenResult> {
    const { count, deadlineMs, ...rest } = options;
    const perWorker = Math.ceil(count / this.#workers.length);
    this.#counts = this.#workers.map((_, i) => Math.max(0, Math.min(perWorker, count - i * perWorker)));
    const perWorkerConcurrency = Math.max(1, Math.ceil(options.concurrency / this.#workers.length));
    const results = await Promise.all(
      this.#workers.map((worker, i) => {
        const spec: OpenSpec = { ...rest, concurrency: perWorkerConcurrency, first: i * perWorker, count: this.#counts[i]! };
        return worker.request<OpenResult>({ op: "open", spec, deadlineMs }, deadlineMs + REPLY_GRACE_MS);
      }),
    );
    return mergeOpenResults(results);
  }

  /**
   * Destroys every socket at once and reconnects each after a random delay of up to
   * `jitterMs`, with at most `concurrency` upgrades in flight overall. A failed attempt
   * retries after 250-750 ms until `deadlineMs`.
   */
  async dropAll(jitterMs: number, concurrency: number, deadlineMs: number): Promise<OpenResult> {
    const perWorker = Math.max(1, Math.ceil(concurrency / this.#workers.length));
    const results = await Promise.all(
      this.#workers.map((worker) =>
        worker.request<OpenResult>(
          { op: "dropAll", jitterMs, concurrency: perWorker, deadlineMs },
          deadlineMs + REPLY_GRACE_MS,
        ),
      ),
    );
    return mergeOpenResults(results);
  }

  /** Destroys a random `fraction` of open sockets; they reconnect (patpush: with ?last=). Returns how many. */
  async forceClose(fraction: number, reconnectDelayMs: number): Promise<number> {
    const closed = await this.#all<number>({ op: "forceClose", fraction, reconnectDelayMs });
    return closed.reduce((sum, value) => sum + value, 0);
  }

  /** Zeroes the counters; messages with `n` below `minN` count as late from now on. */
  async resetStats(minN = 0, perUser = false): Promise<void> {
    await this.#all({ op: "resetStats", minN, perUser });
  }

  async stats(): Promise<LoadStats> {
    const all = await this.#all<WorkerStats>({ op: "stats" });
    const merged: LoadStats = {
      open: 0,
      pending: 0,
      opens: 0,
      failed: {},
      closed: {},
      delivered: 0,
      duplicates: 0,
      late: 0,
      replayed: 0,
      latency: mergeEncoded(all.map((item) => item.latency)),
      replayLatency: mergeEncoded(all.map((item) => item.replayLatency)),
    };
    for (const item of all) {
      merged.open += item.open;
      merged.pending += item.pending;
      merged.opens += item.opens;
      merged.delivered += item.delivered;
      merged.duplicates += item.duplicates;
      merged.late += item.late;
      merged.replayed += item.replayed;
      addCounts(merged.failed, item.failed);
      addCounts(merged.closed, item.closed);
      if (item.perUser) {
        merged.perUser ??= new Map();
        for (const [user, value] of Object.entries(item.perUser)) {
          merged.perUser.set(Number(user), (merged.perUser.get(Number(user)) ?? 0) + value);
        }
      }
    }
    return merged;
  }

  async closeAll(): Promise<void> {
    await this.#all({ op: "closeAll" });
  }

  /** Stops every worker process. */
  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.process.stop(2_000)));
  }

  /** Sends `request` to every worker. A worker busy reading sockets may take long to reply, hence the generous default. */
  #all<T>(request: WorkerRequest, timeoutMs = 60_000): Promise<T[]> {
    return Promise.all(this.#workers.map((worker) => worker.request<T>(request, timeoutMs)));
  }
}
