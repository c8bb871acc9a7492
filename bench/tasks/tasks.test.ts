import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { runTasksScenario, type TasksResults } from "../scenarios/tasks.ts";
import { celerySystem } from "./systems.ts";
import type { TaskRow } from "./measure.ts";

const celeryMissing = celerySystem.unavailable();

describe("tasks scenario, quick", { timeout: 120_000 }, () => {
  let results: TasksResults;

  before(async () => {
    results = await runTasksScenario({ quick: true });
  });

  function rowsOf(peer: TaskRow["peer"]): TaskRow[] {
    return results.rows.filter((row) => row.peer === peer);
  }

  function assertExactlyOnce(peer: TaskRow["peer"]): void {
    const rows = rowsOf(peer);
    assert.deepEqual(
      rows.map((row) => row.measurement),
      ["throughput", "latency"],
      `${peer} has one row per measurement`,
    );
    for (const row of rows) {
      const label = `${peer} ${row.measurement}`;
      assert.equal(row.error, undefined, `${label}: ${row.error}`);
      assert.equal(row.published, row.expected, `${label}: every task was enqueued`);
      assert.equal(row.delivered, row.expected, `${label}: every task arrived`);
      assert.equal(row.lost, 0, `${label}: no task number is missing`);
      assert.equal(row.duplicates, 0, `${label}: no task arrived twice`);
      assert.equal(row.latencyCount, row.delivered, `${label}: one latency per arrival`);
      assert.ok(row.tasksPerSec > 0, `${label}: tasks/s is positive`);
      assert.ok(row.p50Ms > 0, `${label}: p50 ${row.p50Ms} ms is positive`);
      assert.ok(row.p50Ms <= row.p99Ms, `${label}: p50 ${row.p50Ms} ms <= p99 ${row.p99Ms} ms`);
      assert.ok(row.workerCpuMsPerTask > 0, `${label}: worker CPU was measured`);
    }
  }

  test("patpush delivers each task once", () => assertExactlyOnce("patpush"));

  test("bare BullMQ delivers each task once", () => assertExactlyOnce("bullmq-bare"));

  test("Celery delivers each task once", { skip: celeryMissing }, () => assertExactlyOnce("celery"));

  test("latency rows run at the fixed rate", () => {
    for (const row of results.rows.filter((item) => item.measurement === "latency")) {
      assert.equal(row.rate, results.sizes.latencyRate, `${row.peer} latency rate`);
    }
  });
});
