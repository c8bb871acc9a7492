import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runBrowserScenario } from "../scenarios/browser.ts";

describe("browser scenario", () => {
  it("swaps every quick message", { timeout: 90_000 }, async () => {
    const results = await runBrowserScenario({ quick: true });
    const [row] = results.rows;

    assert.ok(row, "no row in the results");
    assert.equal(row.error, undefined, `the run failed: ${row.error}`);
    assert.equal(row.expected, 10);
    assert.equal(row.published, 10);
    assert.equal(row.delivered, 10, `lost ${row.lost} of 10 messages`);
    assert.equal(row.foundInDom, 10, "fragments missing from the page");
    assert.deepEqual(row.missingFromDom, []);
    assert.equal(row.count, 10, "some swapped messages lack page times");
    assert.equal(row.latenciesMs.length, 10);
    for (const latency of row.latenciesMs) {
      assert.ok(latency > 0, `latency ${latency} ms is not positive`);
    }
    assert.ok(row.p50Ms > 0);
    assert.ok(row.p99Ms >= row.p50Ms);
    assert.ok(row.maxMs >= row.p99Ms);
    assert.ok(row.split.frameToFetchDone.p50Ms > 0);
    assert.ok(row.split.fetchDoneToSwap.p50Ms >= 0);
    assert.ok(results.clock !== undefined, "no clock offset in the results");
    assert.ok(results.clock.errorBoundMs >= 0);
  });
});
