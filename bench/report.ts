/**
 * Writes docs/benchmarks.md and its SVG charts from the JSON files in
 * bench/results/. Run on its own to redo the page without measuring again:
 *
 *   node --import tsx bench/report.ts
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { barChart, formatNumber, lineChart, type Series } from "./report/svg-charts.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RESULTS_DIR = path.join(ROOT, "bench", "results");
const DOCS_DIR = path.join(ROOT, "docs");
const CHART_DIR = path.join(DOCS_DIR, "benchmarks");
const FINDINGS = path.join(ROOT, "bench", "report", "findings.md");

type Row = Record<string, unknown>;

interface ScenarioResults {
  command?: string;
  pinning?: Record<string, string>;
  rows: Row[];
  notes?: string[];
  sizes?: Record<string, unknown>;
}

/** One bench/results/<id>.json file, as bench/run.ts writes it. */
interface RecordFile {
  id: string;
  title: string;
  command: string;
  finishedAt: string;
  durationS: number;
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  results?: ScenarioResults;
  error?: string;
}

const PEER_ORDER = ["patpush", "patpush-live", "uws-raw", "ws-ioredis", "socketio", "bullmq-bare", "celery"];

function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function cell(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") {
    // Counts by reason, such as failed attempts by HTTP status: "0" when there are none.
    const entries = Object.entries(value as Record<string, unknown>);
    return entries.length === 0 ? "0" : entries.map(([reason, n]) => `${reason}: ${cell(n)}`).join(", ");
  }
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value).replace(/\|/g, "\\|");
}

function table(header: string[], rows: unknown[][]): string {
  const lines = [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`];
  for (const row of rows) lines.push(`| ${row.map(cell).join(" | ")} |`);
  return lines.join("\n");
}

function byPeer(rows: Row[]): Map<string, Row[]> {
  const map = new Map<string, Row[]>();
  for (const row of rows) {
    const peer = String(row.peer);
    map.set(peer, [...(map.get(peer) ?? []), row]);
  }
  return new Map([...map].sort(([a], [b]) => PEER_ORDER.indexOf(a) - PEER_ORDER.indexOf(b)));
}

/** Steps of a rate ladder: rows with a rate that are neither summaries nor the half-rate step. */
function ladderSteps(rows: Row[]): Row[] {
  return rows.filter((r) => num(r.rate) !== undefined && r.summary !== true && r.halfOfUwsRaw !== true && r.failed !== true);
}

function summary(rows: Row[], peer: string): Row | undefined {
  return rows.find((r) => r.peer === peer && r.summary === true);
}

async function loadRecords(): Promise<Map<string, RecordFile>> {
  const records = new Map<string, RecordFile>();
  for (const id of ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]) {
    const file = path.join(RESULTS_DIR, `${id}.json`);
    if (!existsSync(file)) continue;
    records.set(id, JSON.parse(await readFile(file, "utf8")) as RecordFile);
  }
  return records;
}

interface Target {
  scenario: string;
  target: string;
  measured: string;
  met: boolean | undefined;
}

/** Formats a count in full, with thousands separators. */
function count(value: unknown): string {
  return typeof value === "number" ? value.toLocaleString("en-US") : cell(value);
}

function metText(met: boolean | undefined): string {
  if (met === undefined) return "not measured";
  return met ? "yes" : "no";
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

function pct(value: number | undefined): string {
  return value === undefined ? "not measured" : `${Math.round(value * 100)}%`;
}

function times(value: number | undefined): string {
  return value === undefined ? "not measured" : `${value.toFixed(1)}x`;
}

function check(value: number | undefined, pass: (v: number) => boolean): boolean | undefined {
  return value === undefined ? undefined : pass(value);
}

function targets(records: Map<string, RecordFile>): Target[] {
  const out: Target[] = [];
  const rows = (id: string): Row[] => records.get(id)?.results?.rows ?? [];

  // The target uses RSS after full garbage collections; the value without them is shown beside it.
  const s1 = rows("S1").find((r) => r.peer === "patpush");
  const perSocket = num(s1?.bytesPerSocketAfterGc);
  const perSocketNoGc = num(s1?.bytesPerSocket);
  out.push({
    scenario: "S1",
    target: "patpush RSS per authenticated socket <= 4 KB",
    measured:
      perSocket === undefined
        ? "not measured"
        : `${count(perSocket)} bytes at ${count(s1?.sockets)} sockets after garbage collection ` +
          `(${count(perSocketNoGc)} bytes without it)`,
    met: check(perSocket, (v) => v <= 4096),
  });

  const best = (id: string, peer: string) => num(summary(rows(id), peer)?.bestDeliveriesPerSec);
  const lossless = (id: string, peer: string) => num(summary(rows(id), peer)?.maxLosslessDeliveriesPerSec);
  // When no server keeps p99 under 100 ms (the load generator's core limits the broadcast), the
  // highest rate without loss is compared instead, and the row names that basis.
  const s2Best = (peer: string) => {
    const value = best("S2", peer);
    return value !== undefined && value > 0 ? value : undefined;
  };
  const underLimit = s2Best("patpush") !== undefined && s2Best("uws-raw") !== undefined && s2Best("ws-ioredis") !== undefined;
  const s2 = (peer: string) => (underLimit ? s2Best(peer) : lossless("S2", peer));
  const basis = underLimit ? "with p99 < 100 ms" : "highest lossless rate, since not every server had a step with p99 < 100 ms";
  const s2Uws = ratio(s2("patpush"), s2("uws-raw"));
  const s2Ws = ratio(s2("patpush"), s2("ws-ioredis"));
  const s2LiveUws = ratio(s2("patpush-live"), s2("uws-raw"));
  const s2LiveWs = ratio(s2("patpush-live"), s2("ws-ioredis"));
  out.push({ scenario: "S2", target: "patpush >= 50% of raw uWebSockets.js deliveries/s", measured: `stream ${pct(s2Uws)}, channel ${pct(s2LiveUws)} (${basis})`, met: check(s2Uws, (v) => v >= 0.5) });
  out.push({ scenario: "S2", target: "patpush >= 6x ws + ioredis deliveries/s", measured: `stream ${times(s2Ws)}, channel ${times(s2LiveWs)} (${basis})`, met: check(s2Ws, (v) => v >= 6) });

  const s3Uws = ratio(best("S3", "patpush"), best("S3", "uws-raw"));
  const s3LiveUws = ratio(best("S3", "patpush-live"), best("S3", "uws-raw"));
  out.push({ scenario: "S3", target: "patpush >= 80% of raw uWebSockets.js unicast deliveries/s (p99 < 100 ms)", measured: `stream ${pct(s3Uws)}, channel ${pct(s3LiveUws)}`, met: check(s3Uws, (v) => v >= 0.8) });
  const halfP99 = (peer: string) => num(rows("S3").find((r) => r.peer === peer && r.halfOfUwsRaw === true)?.p99Ms);
  const half = rows("S3").find((r) => r.peer === "patpush" && r.halfOfUwsRaw === true);
  const liveP99 = halfP99("patpush-live");
  out.push({
    scenario: "S3",
    target: "patpush p99 <= 20 ms at half of raw uWebSockets.js's rate",
    measured:
      halfP99("patpush") === undefined
        ? "not measured"
        : `stream ${formatNumber(halfP99("patpush") ?? 0)} ms, channel ${liveP99 === undefined ? "not measured" : `${formatNumber(liveP99)} ms`} at ${cell(half?.rate)} msg/s`,
    met: check(halfP99("patpush"), (v) => v <= 20),
  });

  const s4 = rows("S4").find((r) => r.peer === "patpush");
  const s4Ms = num(s4?.reconnectMs);
  const allBack = num(s4?.missing) === 0;
  out.push({
    scenario: "S4",
    target: "19,900 sockets all open again within 5 s",
    measured: s4Ms === undefined ? "not measured" : `${count(s4?.reopened)} of ${count(s4?.sockets)} in ${formatNumber(s4Ms / 1000)} s`,
    met: s4Ms === undefined ? undefined : allBack && s4Ms <= 5000 && (num(s4?.sockets) ?? 0) >= 19_900,
  });
  const maxCalls = num(s4?.portalMaxCallsPerSession);
  out.push({
    scenario: "S4",
    target: "at most one portal auth call per distinct session",
    measured: maxCalls === undefined ? "not measured" : `${cell(s4?.portalCalls)} calls for ${cell(s4?.sessions)} sessions, at most ${maxCalls} per session`,
    met: check(maxCalls, (v) => v <= 1),
  });

  const s5 = rows("S5").find((r) => r.peer === "patpush");
  const delivered = num(s5?.deliveredPct);
  out.push({ scenario: "S5", target: "100% delivered under forced closes", measured: delivered === undefined ? "not measured" : `${delivered}% (${cell(s5?.lost)} lost)`, met: check(delivered, (v) => v >= 100) });
  const replayP99 = num(s5?.replayP99Ms);
  out.push({ scenario: "S5", target: "p99 replay delay <= 1 s", measured: replayP99 === undefined ? "not measured" : `${formatNumber(replayP99)} ms`, met: check(replayP99, (v) => v <= 1000) });

  const s6 = rows("S6");
  const tasks = (peer: string, measurement: string) => s6.find((r) => r.peer === peer && r.measurement === measurement);
  const rate = (peer: string) => num(tasks(peer, "throughput")?.tasksPerSec);
  const cpu = (peer: string) => num(tasks(peer, "throughput")?.workerCpuMsPerTask);
  const vsCelery = ratio(rate("patpush"), rate("celery"));
  const celeryCpu = ratio(cpu("celery"), cpu("patpush"));
  out.push({
    scenario: "S6",
    target: "patpush >= 8x the tasks/s of Celery + requests",
    measured: vsCelery === undefined ? "not measured" : `${times(vsCelery)} (worker CPU per task: ${times(celeryCpu)} less)`,
    met: check(vsCelery, (v) => v >= 8),
  });
  const vsBare = ratio(rate("patpush"), rate("bullmq-bare"));
  const bareCpu = ratio(cpu("patpush"), cpu("bullmq-bare"));
  out.push({
    scenario: "S6",
    target: "patpush >= 80% of the bare BullMQ + undici worker's tasks/s",
    measured: vsBare === undefined ? "not measured" : `${pct(vsBare)} (worker CPU per task: ${times(bareCpu)} the bare worker's)`,
    met: check(vsBare, (v) => v >= 0.8),
  });
  const p50 = num(tasks("patpush", "latency")?.p50Ms);
  out.push({ scenario: "S6", target: "enqueue-to-POST p50 <= 2 ms at 200 tasks/s", measured: p50 === undefined ? "not measured" : `${formatNumber(p50)} ms`, met: check(p50, (v) => v <= 2) });
  return out;
}

function ladderCharts(rows: Row[], id: string, title: string, charts: Map<string, string>): void {
  const peers = byPeer(ladderSteps(rows));
  const series: Series[] = [];
  for (const [peer, steps] of peers) {
    series.push({ name: `${peer} p99`, points: steps.flatMap((s) => (num(s.p99Ms) !== undefined ? [[num(s.rate) ?? 0, num(s.p99Ms) ?? 0] as [number, number]] : [])) });
  }
  for (const [peer, steps] of peers) {
    if (peer !== "patpush" && peer !== "uws-raw") continue;
    series.push({ name: `${peer} p50`, points: steps.flatMap((s) => (num(s.p50Ms) !== undefined ? [[num(s.rate) ?? 0, num(s.p50Ms) ?? 0] as [number, number]] : [])) });
  }
  charts.set(
    `${id.toLowerCase()}-latency.svg`,
    lineChart({ title: `${id} ${title}: latency by publish rate`, xLabel: "published messages/s", yLabel: "latency, ms", series, logX: true, logY: true, limit: { y: 100, label: "100 ms" } }),
  );
  const summaries = [...byPeer(rows.filter((r) => r.summary === true))];
  const anyUnderLimit = summaries.some(([, [row]]) => (num(row?.bestDeliveriesPerSec) ?? 0) > 0);
  const field = anyUnderLimit ? "bestDeliveriesPerSec" : "maxLosslessDeliveriesPerSec";
  const bars = summaries.map(([peer, [row]]) => ({ label: peer, value: num(row?.[field]) ?? 0 }));
  const measure = anyUnderLimit ? "deliveries/s with p99 < 100 ms" : "highest deliveries/s without loss";
  charts.set(`${id.toLowerCase()}-deliveries.svg`, barChart({ title: `${id} ${title}: ${measure}`, unit: "/s", bars }));
}

/** Server CPU time per delivered frame, in microseconds: comparable even when the load side saturated. */
function serverMicrosPerDelivery(row: Row): number | undefined {
  const cpu = num(row.serverCpuPct);
  const rate = num(row.deliveriesPerSec);
  return cpu === undefined || rate === undefined || rate === 0 ? undefined : (cpu / 100) * 1e6 / rate;
}

function ladderTable(rows: Row[]): string {
  const steps = rows.filter((r) => num(r.rate) !== undefined && r.failed !== true);
  return table(
    ["peer", "rate msg/s", "deliveries/s", "lost", "p50 ms", "p99 ms", "max ms", "server CPU %", "server µs/delivery", "load CPU % (gen+pub)", "Redis CPU %", "saturated", "passed"],
    steps.map((s) => [
      `${s.peer}${s.halfOfUwsRaw === true ? " (half of uws-raw)" : ""}`,
      s.rate,
      s.deliveriesPerSec,
      s.lost,
      s.p50Ms,
      s.p99Ms,
      s.maxMs,
      s.serverCpuPct,
      serverMicrosPerDelivery(s),
      (num(s.loadgenCpuPct) ?? 0) + (num(s.publisherCpuPct) ?? 0),
      s.redisCpuPct,
      s.saturated,
      s.passed,
    ]),
  );
}

/** Names the servers that passed every step: their best rate is only a lower bound. */
function ladderTops(rows: Row[]): string {
  const top = rows.filter((r) => r.summary === true && r.saturationRate === null).map((r) => String(r.peer));
  if (top.length === 0) return "";
  return `\n${top.join(", ")} passed every step up to the top of the ladder, so ${top.length === 1 ? "its" : "their"} best rate is a lower bound, not a ceiling.\n`;
}

function failures(rows: Row[]): string {
  const failed = rows.filter((r) => r.failed === true);
  if (failed.length === 0) return "";
  return `\nFailed runs:\n\n${failed.map((r) => `- ${cell(r.peer)}: ${cell(r.error)}`).join("\n")}\n`;
}

function notes(results: ScenarioResults | undefined): string {
  const list = results?.notes ?? [];
  return list.length === 0 ? "" : `\n${list.map((n) => `- ${n}`).join("\n")}\n`;
}

const TITLES: Record<string, string> = {
  S1: "Idle sockets: RSS per socket",
  S2: "Broadcast to one channel",
  S3: "Unicast through Redis",
  S4: "Reconnect storm",
  S5: "Recovery under forced closes",
  S6: "Tasks: dispatch rate and latency",
  S7: "Browser: publish to swapped fragment",
};

function section(record: RecordFile | undefined, id: string, body: (results: ScenarioResults) => string): string {
  if (record === undefined) return `## ${id} ${TITLES[id] ?? ""}\n\nNot run yet: \`npm run bench -- --only ${id}\`.\n`;
  const head = `## ${id} ${record.title}\n\nCommand: \`${record.results?.command ?? record.command}\` (${record.durationS} s, ${record.finishedAt}).\n`;
  if (record.error !== undefined || record.results === undefined) return `${head}\nThe run failed: ${record.error ?? "no results"}.\n`;
  return `${head}${notes(record.results)}\n${body(record.results)}${failures(record.results.rows)}`;
}

/** Writes docs/benchmarks.md and docs/benchmarks/*.svg; returns the paths written. */
export async function writeReport(): Promise<string[]> {
  const records = await loadRecords();
  const charts = new Map<string, string>();
  const parts: string[] = [];
  const first = [...records.values()][0];

  parts.push(`# Benchmarks

patpush measured against the servers people would otherwise pick, on the same
work and the same machine. \`npm run bench\` runs every scenario one after
another; each scenario's section gives the time it finished, since scenarios
can also be run again on their own. This page is generated by \`bench/report.ts\` from the JSON in
\`bench/results/\`; do not edit it by hand.

Run everything (about 15 minutes on two cores; it installs what is missing, like
\`npm test\`):

\`\`\`sh
npm run bench
\`\`\`

\`npm run bench -- --only S2,S3\` runs some scenarios and keeps the others'
results; \`npm run bench -- --quick\` runs every scenario at small sizes into
\`bench/results/quick/\` (a check that the harness works, not a measurement);
\`node --import tsx bench/report.ts\` redoes this page from the JSON.

The peers, each a small server in \`bench/peers/\` with the same cookie check
against the same portal stub, Redis Pub/Sub in and per-user delivery out:

| peer | what it is |
| --- | --- |
| patpush | \`patpush push-server\` with a Redis bus, fed through the done stream (XADD, stored for recovery), limits per address and user turned off |
| patpush-live | the same server fed through the done channel (PUBLISH, never stored), the path the other peers take |
| uws-raw | uWebSockets.js pub/sub with no logic of its own: the ceiling |
| ws-ioredis | \`ws\` on \`node:http\` with ioredis: the common baseline |
| socketio | Socket.IO 4 with its Redis adapter, published through \`@socket.io/redis-emitter\` |

The load generator (\`bench/lib/loadgen*.ts\`) is a lean WebSocket client on
\`node:net\` in several processes, each below the file limit, with source
addresses spread over 127.0.0.2-254. It sends the session cookie and Origin as a
browser does, reads the publisher's timestamp (CLOCK_MONOTONIC, in microseconds)
from each frame and records delivered count, loss and latency percentiles
(HdrHistogram). Every row reports the CPU of the server, the load generator,
the publisher and Redis, and names the side that saturated.
`);

  if (first !== undefined) {
    const m = first.machine;
    parts.push(`## Machine and versions

${table(["", ""], [
      ["CPU", `${cell(m.cpuModel)}, ${cell(m.cpus)} cores`],
      ["memory", `${cell(m.memGiB)} GiB`],
      ["kernel", m.kernel],
      ["open files per process", m.openFilesLimit],
      ...Object.entries(first.versions).map(([name, version]) => [name, version]),
    ])}

Pinning: the server under test runs on CPU 0 (\`taskset -c 0\`). In S1-S5 the
load generator, the publisher, the portal stub and Redis share CPU 1. In S6
the worker runs on CPU 0, the producer and the endpoint on CPU 1, and Redis
is not pinned. Each JSON file records its pinning.
With two cores, the load side shares one core, so a row whose \`saturated\` is
\`loadgen\` measured the load generator, not the server: compare those by server
CPU per delivery.
`);
  }

  const goals = targets(records);
  parts.push(`## Targets

Ratios from the same run. "stream" is patpush fed through the done stream
(XADD, stored for recovery), "channel" is patpush-live, fed through the done
channel (PUBLISH) like every peer; a target counts as met only on the stream
path. "no" rows are explained under [Findings](#findings).

${table(["scenario", "target", "measured", "met"], goals.map((t) => [t.scenario, t.target, t.measured, metText(t.met)]))}
`);

  parts.push(
    section(records.get("S1"), "S1", (results) => {
      const rows = results.rows.filter((r) => r.failed !== true);
      const mib = (value: unknown) => (num(value) ?? 0) / 2 ** 20;
      charts.set("s1-rss.svg", barChart({ title: "S1 idle: RSS per authenticated socket, after garbage collection", unit: "bytes", bars: rows.map((r) => ({ label: String(r.peer), value: num(r.bytesPerSocketAfterGc) ?? 0 })) }));
      return `${table(
        ["peer", "sockets open", "failed", "RSS before MiB", "RSS after MiB", "bytes per socket", "RSS before, collected MiB", "RSS after, collected MiB", "bytes per socket, collected"],
        rows.map((r) => [r.peer, r.sockets, r.failed, mib(r.rssBeforeBytes), mib(r.rssAfterBytes), r.bytesPerSocket, mib(r.rssBeforeGcBytes), mib(r.rssAfterGcBytes), r.bytesPerSocketAfterGc]),
      )}\n\n![RSS per socket](benchmarks/s1-rss.svg)\n`;
    }),
  );

  parts.push(
    section(records.get("S2"), "S2", (results) => {
      ladderCharts(results.rows, "S2", "broadcast", charts);
      return `${ladderTable(results.rows)}\n${ladderTops(results.rows)}\n\n![S2 latency by rate](benchmarks/s2-latency.svg)\n\n![S2 deliveries by peer](benchmarks/s2-deliveries.svg)\n`;
    }),
  );

  parts.push(
    section(records.get("S3"), "S3", (results) => {
      ladderCharts(results.rows, "S3", "unicast", charts);
      return `${ladderTable(results.rows)}\n${ladderTops(results.rows)}\n\n![S3 latency by rate](benchmarks/s3-latency.svg)\n\n![S3 deliveries by peer](benchmarks/s3-deliveries.svg)\n`;
    }),
  );

  parts.push(
    section(records.get("S4"), "S4", (results) => {
      const rows = results.rows.filter((r) => r.failed !== true);
      charts.set("s4-reconnect.svg", barChart({ title: "S4 reconnect storm: time until all sockets are open again", unit: "s", bars: rows.map((r) => ({ label: String(r.peer), value: (num(r.reconnectMs) ?? 0) / 1000 })) }));
      return `${table(
        ["peer", "sockets", "sessions", "open again", "missing", "seconds", "failed attempts", "portal calls", "calls per session (max)", "server CPU %"],
        rows.map((r) => [r.peer, r.sockets, r.sessions, r.reopened, r.missing, (num(r.reconnectMs) ?? 0) / 1000, r.failedAttempts, r.portalCalls, `${cell(r.portalCallsPerSession)} (${cell(r.portalMaxCallsPerSession)})`, r.serverCpuPct]),
      )}\n\n![S4 reconnect time](benchmarks/s4-reconnect.svg)\n`;
    }),
  );

  parts.push(
    section(records.get("S5"), "S5", (results) => {
      const rows = results.rows.filter((r) => r.failed !== true);
      return `${table(
        ["peer", "rate msg/s", "published", "expected", "delivered", "delivered %", "duplicates dropped", "reconnects", "p50 ms", "p99 ms", "replayed", "replay p50 ms", "replay p99 ms", "replay max ms"],
        rows.map((r) => [r.peer, r.rate, r.published, r.expected, r.delivered, r.deliveredPct, r.duplicates, r.reconnects, r.p50Ms, r.p99Ms, r.replayed, r.replayP50Ms, r.replayP99Ms, r.replayMaxMs]),
      )}\n`;
    }),
  );

  parts.push(
    section(records.get("S6"), "S6", (results) => {
      const rows = results.rows.filter((r) => r.failed !== true);
      const throughput = rows.filter((r) => r.measurement === "throughput");
      charts.set("s6-tasks.svg", barChart({ title: "S6 tasks dispatched per second", unit: "tasks/s", bars: throughput.map((r) => ({ label: String(r.peer), value: num(r.tasksPerSec) ?? 0 })) }));
      return `${table(
        ["system", "measurement", "tasks/s", "worker CPU ms/task", "p50 ms", "p99 ms", "max ms", "saturated", "detail"],
        rows.map((r) => [r.peer, r.measurement, r.tasksPerSec, r.workerCpuMsPerTask, r.p50Ms, r.p99Ms, r.maxMs, r.saturated, r.saturatedDetail]),
      )}\n\nThroughput latencies are queueing times of a burst, not a service level; the latency rows are the fixed 200 tasks/s.\n\n![S6 tasks per second](benchmarks/s6-tasks.svg)\n`;
    }),
  );

  parts.push(
    section(records.get("S7"), "S7", (results) => {
      const rows = results.rows.filter((r) => r.failed !== true);
      const split = (r: Row) => (typeof r.split === "object" && r.split !== null ? (r.split as Record<string, unknown>) : {});
      const splitRows = rows.flatMap((r) =>
        Object.entries(split(r)).map(([part, value]) => {
          const s = typeof value === "object" && value !== null ? (value as Row) : {};
          return [part, s.p50Ms ?? s.p50, s.p99Ms ?? s.p99, s.maxMs ?? s.max];
        }),
      );
      return `${table(
        ["peer", "messages", "swapped", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        rows.map((r) => [r.peer, r.published, r.count, r.p50Ms, r.p90Ms, r.p99Ms, r.maxMs]),
      )}\n${splitRows.length > 0 ? `\nWhere the time goes:\n\n${table(["part", "p50 ms", "p99 ms", "max ms"], splitRows)}\n` : ""}`;
    }),
  );

  if (existsSync(FINDINGS)) parts.push((await readFile(FINDINGS, "utf8")).trim() + "\n");

  await mkdir(CHART_DIR, { recursive: true });
  // A chart of a scenario without results would show numbers the page no longer has.
  for (const name of await readdir(CHART_DIR)) {
    if (name.endsWith(".svg") && !charts.has(name)) await rm(path.join(CHART_DIR, name));
  }
  const written: string[] = [];
  for (const [name, svg] of charts) {
    const file = path.join(CHART_DIR, name);
    await writeFile(file, svg);
    written.push(path.relative(ROOT, file));
  }
  const page = path.join(DOCS_DIR, "benchmarks.md");
  await writeFile(page, parts.join("\n"));
  written.unshift(path.relative(ROOT, page));
  return written;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const written = await writeReport();
  console.log(`report: wrote ${written.join(", ")}`);
}
