import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { backoffCeilingMs, backoffDelayMs } from "./backoff.ts";

describe("backoff", () => {
  const options = { baseMs: 100, maxMs: 1000 };

  it("doubles the ceiling per attempt", () => {
    assert.equal(backoffCeilingMs(1, options), 100);
    assert.equal(backoffCeilingMs(2, options), 200);
    assert.equal(backoffCeilingMs(4, options), 800);
  });

  it("caps the ceiling at maxMs", () => {
    assert.equal(backoffCeilingMs(5, options), 1000);
    assert.equal(backoffCeilingMs(500, options), 1000);
  });

  it("draws delays within the ceiling", () => {
    assert.equal(backoffDelayMs(3, options, () => 0), 0);
    assert.equal(backoffDelayMs(3, options, () => 0.5), 200);
    assert.equal(backoffDelayMs(3, options, () => 0.999), 399);
  });
});
