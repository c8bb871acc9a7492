import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runS1, runS2, runS3, type Row, type ScenarioResult } from "./scenarios/sockets.ts";

const PEERS = ["patpush", "uws-raw"];
const RESULT_FIELDS = ["scenario", "startedAt", "machine", "versions", "command", "pinning", "rows", "notes"];
const ROW_FIELDS = [
  "peer", "rate", "sockets", "published", "expected", "delivered", "lost", "deliveriesPerSec",
  "p50Ms", "p99Ms", "maxMs", "serverCpuPct", "loadgenCpuPct", "redisCpuPct", "saturated",
];

function stepRows(result: ScenarioResult, peer: string): Row[] {
  return result.rows.filter((row) => row.peer === peer && row.summary !== true);
}

function checkResult(result: ScenarioResult): void {
  for (const field of RESULT_FIELDS) assert.ok(field in result, `result has no "${field}"`);
  for (const peer of PEERS) {
    const rows = stepRows(result, peer);
    assert.ok(rows.length > 0, `${result.scenario} has no step of ${peer}: ${JSON.stringify(result.rows)}`);
    for (const row of rows) {
      const label = `${result.scenario} ${peer} at ${String(row.rate)} msg/s`;
      for (const field of ROW_FIELDS) assert.ok(field in row, `${label}: row has no "${field}"`);
      assert.ok((row.published as number) > 0, `${label}: nothing published`);
      assert.equal(row.delivered, row.expected, `${label}: delivered`);
      assert.equal(row.lost, 0, `${label}: lost`);
      assert.equal((row.latency as { count: number }).count, row.delivered, `${label}: latency count`);
    }
  }
}

describe("socket scenarios", { timeout: 120_000 }, () => {
  it("S1 quick measures RSS with and without collection", async () => {
    const result = await runS1({ quick: true, peers: PEERS });
    for (const peer of PEERS) {
      const row = result.rows.find((candidate) => candidate.peer === peer);
      assert.ok(row !== undefined, `S1 has no row of ${peer}: ${JSON.stringify(result.rows)}`);
      assert.notEqual(row.failed, true, `${peer}: ${String(row.error)}`);
      // A server that ignored the collection signal would have died of SIGUSR2 before this count.
      assert.equal(row.sockets, 200, `${peer}: sockets open`);
      for (const field of ["rssBeforeGcBytes", "rssAfterGcBytes"]) {
        assert.ok((row[field] as number) > 0, `${peer}: ${field} is ${String(row[field])}`);
      }
      assert.equal(typeof row.bytesPerSocketAfterGc, "number", `${peer}: bytesPerSocketAfterGc`);
    }
  });

  it("S2 quick delivers every broadcast", async () => {
    checkResult(await runS2({ quick: true, peers: PEERS }));
  });

  it("S3 quick delivers every unicast", async () => {
    checkResult(await runS3({ quick: true, peers: PEERS }));
  });

  it("S3 counts messages to absent users as lost", async () => {
    // 200 sockets, recipients drawn from 400 users: about half the messages have no socket.
    const result = await runS3({ quick: true, peers: ["uws-raw"], recipientUsers: 400 });
    const first = stepRows(result, "uws-raw")[0]!;
    assert.ok((first.lost as number) > 0, `no loss seen: ${JSON.stringify(first)}`);
    assert.equal((first.delivered as number) + (first.lost as number), first.expected);
    assert.equal(first.passed, false);
  });
});
