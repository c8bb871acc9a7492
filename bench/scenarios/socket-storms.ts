/**
 * Socket scenarios with abrupt disconnects: S4, a reconnect storm of every
 * socket at once, and S5, recovery while messages flow and some sockets
 * drop every few seconds.
 */
import { userRecipient, type Recipient } from "../lib/peers.ts";
import { failedRow, newResult, peerNames, sleep, withEnv, type ScenarioOptions, type ScenarioResult } from "./scenario-result.ts";
import { cpuShares, publishAtRate, waitForDeliveries, warmUp } from "./socket-env.ts";

/** A reconnecting client waits a random delay up to this before its first attempt, like a backoff. */
const STORM_JITTER_MS = 1_000;
/** Two sockets (two tabs) share each session, so a per-session cache can save a portal call. */
const STORM_SOCKETS_PER_SESSION = 2;

const AUTH_CACHE_EXPIRY_WAIT_MS = 11_000;

/**
 * Every server keeps at most 32 connections to the portal (patpush's default authConnections,
 * and the same limit in the peers' cookie check), so 19,900 sockets leave room under the
 * server's 20,000 fd limit for those and for Redis.
 */
const STORM_SOCKETS = 19_900;
const STORM_CONCURRENCY = 1_000;

/** S4: drop every socket at once; measure the time until all are open again and the portal calls it cost. */
export async function runS4(options: ScenarioOptions): Promise<ScenarioResult> {
  const sockets = options.quick ? 200 : STORM_SOCKETS;
  const sessions = Math.ceil(sockets / STORM_SOCKETS_PER_SESSION);
  const stormConcurrency = options.quick ? 200 : STORM_CONCURRENCY;
  const deadlineMs = options.quick ? 20_000 : 120_000;
  const result = newResult("S4", options, [
    `${sockets} sockets in ${sessions} sessions (${STORM_SOCKETS_PER_SESSION} sockets per session), all TCP connections destroyed at once.`,
    `Each socket reconnects after a uniformly random delay of 0-${STORM_JITTER_MS} ms, like a client backoff; the load generator keeps at most ${stormConcurrency} upgrades in flight; a failed attempt retries after 250-750 ms until ${deadlineMs / 1000} s.`,
    `The storm starts ${AUTH_CACHE_EXPIRY_WAIT_MS / 1000} s after the last socket opened, after patpush's auth cache (10 s by default) has expired.`,
    "reconnectMs runs from the drop until the last socket is open again (patpush: welcome frame received). portalCalls counts GET /auth at the stub during the storm.",
  ]);
  for (const peer of peerNames(options.peers)) {
    try {
      const row = await withEnv(peer, sockets, async (env) => {
        const opened = await env.open(sockets, { socketsPerSession: STORM_SOCKETS_PER_SESSION, concurrency: 100 });
        // Waits past patpush's default auth cache lifetime (10 s), so the storm finds no fresh
        // cached session and the portal calls show how many requests each server sends per session.
        await sleep(AUTH_CACHE_EXPIRY_WAIT_MS);
        env.stub.reset();
        const before = await env.sample();
        const storm = await env.loadgen.dropAll(STORM_JITTER_MS, stormConcurrency, deadlineMs);
        const after = await env.sample();
        const portal = env.stub.stats();
        return {
          peer,
          sockets,
          sessions,
          openBefore: opened.open,
          openFailures: opened.failed,
          reopened: storm.open,
          missing: storm.missing,
          reconnectMs: storm.durationMs,
          failedAttempts: storm.failed,
          portalCalls: portal.calls,
          portalDistinctSessions: portal.distinctCookies,
          portalCallsPerSession: Math.round((portal.calls / sessions) * 100) / 100,
          portalMaxCallsPerSession: portal.maxCallsPerCookie,
          ...cpuShares(before, after),
        };
      });
      result.rows.push(row);
    } catch (error) {
      result.rows.push(failedRow(peer, error));
    }
  }
  return result;
}

/** Options of S5; `rate` in messages per second defaults to 2,000 (quick: 200). */
export interface RecoveryOptions extends ScenarioOptions {
  rate?: number;
}

/** S5: unicast load while 10% of sockets close abruptly every 2 s and resume (patpush: with ?last=). */
export async function runS5(options: RecoveryOptions): Promise<ScenarioResult> {
  const sockets = options.quick ? 200 : 10_000;
  const rate = options.rate ?? (options.quick ? 200 : 2_000);
  const durationMs = options.quick ? 3_000 : 20_000;
  const closeEveryMs = options.quick ? 1_000 : 2_000;
  const closeFraction = 0.1;
  const reconnectDelayMs = 1_000;
  const result = newResult("S5", options, [
    `Unicast at ${rate} msg/s to ${sockets} users with one socket each, for ${durationMs / 1000} s. Every ${closeEveryMs / 1000} s, ${closeFraction * 100}% of the open sockets are destroyed without a close frame and reconnect after a random 0-${reconnectDelayMs} ms; patpush clients send ?last=<last message id>, the others have no resume.`,
    "delivered counts each message once per socket (deduplicated by sequence number); duplicates counts the repeats.",
    "replay latency: publish -> receive for messages that were published while their socket was down.",
  ]);
  for (const peer of peerNames(options.peers)) {
    try {
      const row = await withEnv(peer, sockets, async (env) => {
        const opened = await env.open(sockets, { dedupe: true });
        const recipientOf = (): Recipient => userRecipient(Math.floor(Math.random() * sockets));
        const firstN = await warmUp(env, recipientOf, 1);
        await env.loadgen.resetStats(firstN);

        // Publish for the whole step, and force closes every closeEveryMs while it runs.
        const before = await env.sample();
        const publishing = publishAtRate(env, rate, durationMs, firstN, recipientOf);
        let forcedCloses = 0;
        let publishDone = false;
        void publishing.finally(() => (publishDone = true));
        await sleep(closeEveryMs);
        while (!publishDone) {
          forcedCloses += await env.loadgen.forceClose(closeFraction, reconnectDelayMs);
          await Promise.race([sleep(closeEveryMs), publishing]);
        }
        const published = await publishing;

        // Wait for every socket to reopen, then for the deliveries, including replays.
        const reopenDeadline = Date.now() + 15_000;
        while (Date.now() < reopenDeadline) {
          const stats = await env.loadgen.stats();
          if (stats.pending === 0) break;
          await sleep(200);
        }
        const stats = await waitForDeliveries(env, published.published, 10_000);
        const after = await env.sample();
        const expected = published.published;

        return {
          peer,
          rate,
          sockets: opened.open,
          published: published.published,
          expected,
          delivered: stats.delivered,
          lost: Math.max(0, expected - stats.delivered),
          deliveredPct: Math.round((stats.delivered / Math.max(1, expected)) * 10_000) / 100,
          duplicates: stats.duplicates,
          forcedCloses,
          reconnects: stats.opens,
          reconnectFailures: stats.failed,
          socketsOpenAtEnd: stats.open,
          deliveriesPerSec: Math.round((stats.delivered * 1000) / Math.max(durationMs, published.durationMs)),
          p50Ms: stats.latency.p50,
          p99Ms: stats.latency.p99,
          maxMs: stats.latency.max,
          replayed: stats.replayed,
          replayP50Ms: stats.replayLatency.p50,
          replayP99Ms: stats.replayLatency.p99,
          replayMaxMs: stats.replayLatency.max,
          ...cpuShares(before, after),
        };
      });
      result.rows.push(row);
    } catch (error) {
      result.rows.push(failedRow(peer, error));
    }
  }
  return result;
}
