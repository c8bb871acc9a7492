/**
 * Socket scenarios S1-S5: idle memory, broadcast, unicast, reconnect storm and
 * recovery after abrupt closes. Each function runs one scenario against the
 * given peers and returns the results JSON; `bench/run.ts` writes it to
 * bench/results/<scenario>.json.
 *
 * CLI: `node --import tsx bench/scenarios/sockets.ts S2 [--quick] [--peers patpush,uws-raw]`
 * prints the JSON on stdout.
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import type { OpenResult } from "../lib/loadgen-protocol.ts";
import { CHANNEL_RECIPIENT, PEER_NAMES, userRecipient, type Recipient } from "../lib/peers.ts";
import {
  failedRow,
  newResult,
  peerNames,
  sleep,
  withEnv,
  type Row,
  type ScenarioOptions,
  type ScenarioResult,
} from "./scenario-result.ts";
import {
  cpuShares,
  publishAtRate,
  stopRunningEnvs,
  waitForDeliveries,
  waitForQuiet,
  warmUp,
  type SocketEnv,
} from "./socket-env.ts";
import { runS4, runS5 } from "./socket-storms.ts";

export type { Row, ScenarioOptions, ScenarioResult } from "./scenario-result.ts";
export { runS4, runS5 };

/** A step fails when its p99 exceeds this or it lost a message; the ladder stops there. */
export const P99_LIMIT_MS = 100;

// ---------------------------------------------------------------- S1 idle

/** Preload that runs two full garbage collections on SIGUSR2, see gc-on-signal.mjs. */
const GC_PRELOAD = fileURLToPath(new URL("../lib/gc-on-signal.mjs", import.meta.url));

/** Time a server gets to collect and give pages back before S1 reads its RSS again. */
const GC_SETTLE_MS = 2_000;

/** Runs two full garbage collections in `server` and returns its RSS after them. */
async function rssAfterGc(server: { pid: number; rssBytes(): number }): Promise<number> {
  process.kill(server.pid, "SIGUSR2");
  await sleep(GC_SETTLE_MS);
  return server.rssBytes();
}

/** Returns the RSS growth per open socket, or null when none is open. */
function perSocket(beforeBytes: number, afterBytes: number, open: number): number | null {
  return open > 0 ? Math.round((afterBytes - beforeBytes) / open) : null;
}

/**
 * S1: the server's RSS per authenticated idle socket, near the fd limit,
 * read as it is and again after full garbage collections in the server.
 */
export async function runS1(options: ScenarioOptions): Promise<ScenarioResult> {
  const sockets = options.quick ? 200 : 19_800;
  const idleMs = options.quick ? 1_000 : 5_000;
  const result = newResult("S1", options, [
    `RSS is VmRSS of the server process: once after a warm-up (200 sockets opened and closed, then ${idleMs / 1000} s idle) and again after ${sockets} sockets opened, authenticated and idle for ${idleMs / 1000} s.`,
    `Each RSS is read twice: as it is, and after two full garbage collections in the server (every server runs with --expose-gc and a preload that calls gc() on SIGUSR2, then gets ${GC_SETTLE_MS / 1000} s). Without them the result depends on when V8 last collected: the same server measured 4.0 to 5.9 KB per socket in runs minutes apart. The target uses the collected value.`,
    "Sockets open 100 at a time: each upgrade in flight may hold one keep-alive connection to the portal stub, and those count against the server's 20,000 fd limit too.",
  ]);
  const nodeFlags = ["--expose-gc", "--import", GC_PRELOAD];
  for (const peer of peerNames(options.peers)) {
    try {
      const row = await withEnv(
        peer,
        sockets,
        async (env) => {
          await env.open(200, { concurrency: 100 });
          await env.loadgen.closeAll();
          await sleep(idleMs);
          const rssBeforeBytes = env.server.rssBytes();
          const rssBeforeGcBytes = await rssAfterGc(env.server);
          const opened = await env.open(sockets, { concurrency: 100 });
          await sleep(idleMs);
          const rssAfterBytes = env.server.rssBytes();
          const rssAfterGcBytes = await rssAfterGc(env.server);
          const stats = await env.loadgen.stats();
          const open = stats.open;
          return {
            peer,
            sockets: open,
            requested: sockets,
            failed: opened.failed,
            closedByServer: stats.closed,
            openDurationMs: opened.durationMs,
            rssBeforeBytes,
            rssAfterBytes,
            bytesPerSocket: perSocket(rssBeforeBytes, rssAfterBytes, open),
            rssBeforeGcBytes,
            rssAfterGcBytes,
            bytesPerSocketAfterGc: perSocket(rssBeforeGcBytes, rssAfterGcBytes, open),
          };
        },
        nodeFlags,
      );
      result.rows.push(row);
    } catch (error) {
      result.rows.push(failedRow(peer, error));
    }
  }
  return result;
}

// ---------------------------------------------------------------- S2 / S3 ladders

interface StepPlan {
  rate: number;
  durationMs: number;
  drainMs: number;
  recipientOf: (n: number) => Recipient;
  /** Deliveries each published message should cause. */
  fanout: number;
}

/** Publishes at one rate and returns the row: deliveries, latency, loss and CPU shares. */
async function runStep(env: SocketEnv, plan: StepPlan, firstN: number, sockets: number): Promise<Row & { nextN: number }> {
  await env.loadgen.resetStats(firstN);
  const before = await env.sample();
  const published = await publishAtRate(env, plan.rate, plan.durationMs, firstN, plan.recipientOf);
  const expected = published.published * plan.fanout;
  const stats = await waitForDeliveries(env, expected, plan.drainMs);
  const after = await env.sample();
  const lost = Math.max(0, expected - stats.delivered);
  return {
    peer: env.peer.name,
    rate: plan.rate,
    sockets,
    published: published.published,
    publishErrors: published.errors,
    publishDurationMs: published.durationMs,
    expected,
    delivered: stats.delivered,
    lost,
    duplicates: stats.duplicates,
    deliveriesPerSec: Math.round((stats.delivered * 1000) / Math.max(plan.durationMs, published.durationMs)),
    p50Ms: stats.latency.p50,
    p90Ms: stats.latency.p90,
    p99Ms: stats.latency.p99,
    maxMs: stats.latency.max,
    latency: stats.latency,
    ...cpuShares(before, after),
    socketsOpen: stats.open,
    socketsClosed: stats.closed,
    nextN: published.nextN,
  };
}

function stepPassed(row: Row): boolean {
  return (row.lost as number) === 0 && (row.p99Ms as number) <= P99_LIMIT_MS;
}

interface LadderOutcome {
  rows: Row[];
  /** Highest deliveries/s of a step that passed. */
  bestDeliveriesPerSec: number;
  /** Highest rate of a step that passed. */
  bestRate: number;
  saturationRate: number | null;
  /** Highest deliveries/s of a step without loss, whatever its latency. */
  maxLosslessDeliveriesPerSec: number;
  nextN: number;
}

/**
 * Runs steps at increasing rates until one loses a message or its p99 exceeds `stopP99Ms`
 * (the saturation rate). `bestDeliveriesPerSec` only counts steps that passed.
 */
async function runLadder(
  env: SocketEnv,
  rates: readonly number[],
  plan: Omit<StepPlan, "rate">,
  sockets: number,
  firstN: number,
  stopP99Ms = P99_LIMIT_MS,
  afterStep?: (rate: number, nextN: number) => Promise<number>,
): Promise<LadderOutcome> {
  const outcome: LadderOutcome = {
    rows: [],
    bestDeliveriesPerSec: 0,
    bestRate: 0,
    saturationRate: null,
    maxLosslessDeliveriesPerSec: 0,
    nextN: firstN,
  };
  for (const rate of rates) {
    let step: Awaited<ReturnType<typeof runStep>>;
    try {
      step = await runStep(env, { ...plan, rate }, outcome.nextN, sockets);
    } catch (error) {
      // An overloaded load generator may not reply in time: the step fails, and so does the rest of the ladder.
      outcome.rows.push({ ...failedRow(env.peer.name, error), rate, sockets });
      outcome.saturationRate = rate;
      break;
    }
    const { nextN, ...row } = step;
    outcome.nextN = nextN;
    const passed = stepPassed(row);
    row.passed = passed;
    outcome.rows.push(row);
    if (passed) {
      outcome.bestRate = rate;
      outcome.bestDeliveriesPerSec = Math.max(outcome.bestDeliveriesPerSec, row.deliveriesPerSec as number);
    }
    outcome.maxLosslessDeliveriesPerSec = Math.max(
      outcome.maxLosslessDeliveriesPerSec,
      (row.lost as number) === 0 ? (row.deliveriesPerSec as number) : 0,
    );
    const saturated = (row.lost as number) > 0 || (row.p99Ms as number) > stopP99Ms;
    if (saturated) {
      outcome.saturationRate = rate;
      await waitForQuiet(env, 1_000, 20_000);
    }
    if (afterStep) outcome.nextN = await afterStep(rate, outcome.nextN);
    if (saturated) break;
  }
  return outcome;
}

/** Adds a note when sockets failed to open, or opened only after failed attempts. */
/** Builds the summary row of one peer's ladder. */
function summaryRow(peer: string, ladder: LadderOutcome): Row {
  return {
    peer,
    summary: true,
    bestDeliveriesPerSec: ladder.bestDeliveriesPerSec,
    bestRate: ladder.bestRate,
    maxLosslessDeliveriesPerSec: ladder.maxLosslessDeliveriesPerSec,
    saturationRate: ladder.saturationRate,
  };
}

function noteOpenProblems(result: ScenarioResult, peer: string, sockets: number, opened: OpenResult): void {
  if (opened.open < sockets) {
    result.notes.push(`${peer}: only ${opened.open} of ${sockets} sockets opened (failed attempts: ${JSON.stringify(opened.failed)})`);
  } else if (Object.keys(opened.failed).length > 0) {
    result.notes.push(`${peer}: all ${sockets} sockets opened after retries (failed attempts: ${JSON.stringify(opened.failed)})`);
  }
}

/**
 * The broadcast ladder goes on past p99 > 100 ms up to this p99: one broadcast is a burst of one
 * frame per socket, and reading 10,000 of them takes the load generator on one core about 70-160 ms
 * (measured with uws-raw at 1 msg/s), so the 100 ms limit alone would end every ladder at its first step.
 */
const BROADCAST_STOP_P99_MS = 1_000;

/** S2: one channel, every socket subscribed, publish rates rising until p99 > 100 ms or a loss. */
export async function runS2(options: ScenarioOptions): Promise<ScenarioResult> {
  const sockets = options.quick ? 200 : 10_000;
  const rates = options.quick ? [5, 10] : [1, 2, 5, 10, 20, 50, 100, 200];
  const durationMs = options.quick ? 1_000 : 5_000;
  const drainMs = options.quick ? 2_000 : 3_000;
  const result = newResult("S2", options, [
    `Broadcast to channel "bench" with ${sockets} sockets subscribed; each step publishes for ${durationMs / 1000} s, then waits up to ${drainMs / 1000} s for deliveries.`,
    `A step passes with p99 <= ${P99_LIMIT_MS} ms and no loss. The ladder stops at the first step with a loss or p99 > ${BROADCAST_STOP_P99_MS} ms (the saturation rate), because one broadcast is a burst of one frame per socket that the load generator, on one core, takes tens of ms to read.`,
    "saturated names a side at >= 90% of one core: the server (CPU 0) or CPU 1, which the load generator, the publisher and Redis share.",
  ]);
  for (const peer of peerNames(options.peers)) {
    try {
      await withEnv(peer, sockets, async (env) => {
        const opened = await env.open(sockets);
        noteOpenProblems(result, peer, sockets, opened);
        const recipientOf = (): Recipient => CHANNEL_RECIPIENT;
        const firstN = await warmUp(env, recipientOf, 1);
        const plan = { durationMs, drainMs, recipientOf, fanout: opened.open };
        const ladder = await runLadder(env, rates, plan, opened.open, firstN, BROADCAST_STOP_P99_MS);
        result.rows.push(...ladder.rows);
        result.rows.push(summaryRow(peer, ladder));
      });
    } catch (error) {
      result.rows.push(failedRow(peer, error));
    }
  }
  return result;
}

/** Options of S3 besides scale; `recipientUsers` above the socket count sends messages to users without a socket. */
export interface UnicastOptions extends ScenarioOptions {
  recipientUsers?: number;
}

/** S3: one socket per user, random recipients, rates rising; then half of uws-raw's best rate for every peer. */
export async function runS3(options: UnicastOptions): Promise<ScenarioResult> {
  const sockets = options.quick ? 200 : 10_000;
  const rates = options.quick ? [200, 500] : [1_000, 2_000, 5_000, 10_000, 20_000, 40_000, 60_000];
  const durationMs = options.quick ? 1_000 : 5_000;
  const drainMs = options.quick ? 2_000 : 3_000;
  const recipientUsers = options.recipientUsers ?? sockets;
  const result = newResult("S3", options, [
    `Unicast: ${sockets} users with one socket each; each message goes to a uniformly random user of ${recipientUsers}. Each step publishes for ${durationMs / 1000} s.`,
    `A step passes with p99 <= ${P99_LIMIT_MS} ms and no loss; the ladder stops at the first step that does not.`,
    "Each peer also runs one step at half of uws-raw's best passing rate (the ceiling) measured in this run: uws-raw after its ladder, the others right after their first ladder step at or above that rate.",
  ]);
  const names = peerNames(options.peers);
  // uws-raw runs first so that its best rate is known for the half-rate step of the others.
  names.sort((a, b) => Number(b === "uws-raw") - Number(a === "uws-raw"));
  let halfRate: number | undefined;
  for (const peer of names) {
    try {
      await withEnv(peer, sockets, async (env) => {
        const opened = await env.open(sockets);
        noteOpenProblems(result, peer, sockets, opened);
        const recipientOf = (): Recipient => userRecipient(Math.floor(Math.random() * recipientUsers));
        let nextN = await warmUp(env, recipientOf, 1);
        const plan = { durationMs, drainMs, recipientOf, fanout: 1 };
        let halfStep: Row | undefined;
        const runHalfStep = async (rate: number, firstN: number): Promise<number> => {
          const { nextN: after, ...row } = await runStep(env, { ...plan, rate }, firstN, sockets);
          halfStep = { ...row, halfOfUwsRaw: true, passed: stepPassed(row) };
          result.rows.push(halfStep);
          return after;
        };
        // The other peers run the half-rate step right after the first ladder step at or above
        // that rate, so the server is warm and has no backlog. uws-raw runs it after its ladder.
        const knownHalfRate = halfRate;
        const afterStep = async (rate: number, firstN: number): Promise<number> => {
          if (knownHalfRate === undefined || halfStep !== undefined || rate < knownHalfRate) return firstN;
          return runHalfStep(knownHalfRate, firstN);
        };
        const ladder = await runLadder(env, rates, plan, sockets, nextN, P99_LIMIT_MS, afterStep);
        nextN = ladder.nextN;
        result.rows.push(...ladder.rows);
        if (peer === "uws-raw") {
          halfRate = Math.max(1, Math.round(ladder.bestRate / 2));
          await sleep(3_000);
          nextN = await runHalfStep(halfRate, nextN);
        } else if (knownHalfRate !== undefined && halfStep === undefined) {
          // The ladder ended below the half rate.
          await sleep(3_000);
          nextN = await runHalfStep(knownHalfRate, nextN);
        }
        result.rows.push({
          ...summaryRow(peer, ladder),
          halfOfUwsRawRate: halfRate ?? null,
          halfOfUwsRawP99Ms: halfStep?.p99Ms ?? null,
        });
      });
    } catch (error) {
      result.rows.push(failedRow(peer, error));
    }
  }
  if (halfRate === undefined) result.notes.push("uws-raw did not run, so no half-rate step was measured.");
  return result;
}

/** The socket scenarios by name. */
export const SOCKET_SCENARIOS: Record<string, (options: ScenarioOptions) => Promise<ScenarioResult>> = {
  S1: runS1,
  S2: runS2,
  S3: runS3,
  S4: runS4,
  S5: runS5,
};

async function main(argv: string[]): Promise<void> {
  const usage = `usage: sockets.ts S1|S2|S3|S4|S5 [--quick] [--peers ${PEER_NAMES.join(",")}]\n`;
  const name = argv[0] ?? "";
  let quick = false;
  let peers: string[] = [...PEER_NAMES];
  for (let index = 1; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === "--quick") quick = true;
    else if (arg === "--peers" && (argv[index + 1] ?? "").split(",").some(Boolean)) {
      peers = (argv[++index] ?? "").split(",").filter(Boolean);
    } else {
      process.stderr.write(`${arg === "--peers" ? "--peers needs a list of peers" : `unknown argument ${arg}`}\n${usage}`);
      process.exit(2);
    }
  }
  const scenario = SOCKET_SCENARIOS[name];
  if (!scenario) {
    process.stderr.write(usage);
    process.exit(2);
  }
  const result = await scenario({ quick, peers });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void stopRunningEnvs().finally(() => process.exit(130));
    });
  }
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
