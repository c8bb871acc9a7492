import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LogThrottle } from "./log-throttle.ts";

describe("log throttle", () => {
  it("logs the first line of a key", () => {
    const throttle = new LogThrottle(1000, { now: () => 0 });

    assert.equal(throttle.admit("origin|10.0.0.1"), 0);
  });

  it("skips repeats within the interval", () => {
    const throttle = new LogThrottle(1000, { now: () => 0 });
    throttle.admit("a");

    assert.equal(throttle.admit("a"), undefined);
    assert.equal(throttle.admit("a"), undefined);
    assert.equal(throttle.admit("b"), 0, "another key is logged");
  });

  it("counts skipped lines in the next", () => {
    let now = 0;
    const throttle = new LogThrottle(1000, { now: () => now });
    throttle.admit("a");
    throttle.admit("a");
    throttle.admit("a");

    now = 1000;
    assert.equal(throttle.admit("a"), 2);
    now = 2000;
    assert.equal(throttle.admit("a"), 0);
  });

  it("prunes quiet keys only", () => {
    let now = 0;
    const throttle = new LogThrottle(1000, { now: () => now, maxKeys: 10 });
    throttle.admit("quiet");
    throttle.admit("busy");
    throttle.admit("busy");

    now = 1000;
    throttle.prune();

    assert.equal(throttle.admit("quiet"), 0);
    assert.equal(throttle.admit("busy"), 1, "the skipped count survived the prune");
  });

  it("bounds its keys", () => {
    const throttle = new LogThrottle(1000, { now: () => 0, maxKeys: 2 });
    throttle.admit("a");
    throttle.admit("b");
    throttle.admit("c");

    assert.equal(throttle.admit("a"), 0, "a was dropped, so its line is logged again");
  });
});
