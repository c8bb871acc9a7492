import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SlotCounter, TokenBucketLimiter } from "./rate-limit.ts";

describe("token bucket limiter", () => {
  it("passes a full burst at once", () => {
    const limiter = new TokenBucketLimiter(3, { now: () => 0 });

    const results = Array.from({ length: 4 }, () => limiter.take("10.0.0.1"));

    assert.deepEqual(results.slice(0, 3), Array(3).fill({ allowed: true }));
    assert.deepEqual(results[3], { allowed: false, retryAfterS: 1 });
  });

  it("refills at the rate", () => {
    let now = 0;
    const limiter = new TokenBucketLimiter(2, { now: () => now });
    limiter.take("a");
    limiter.take("a");

    assert.equal(limiter.take("a").allowed, false);
    now = 499;
    assert.equal(limiter.take("a").allowed, false);
    now = 500;
    assert.equal(limiter.take("a").allowed, true);
    assert.equal(limiter.take("a").allowed, false);
  });

  it("keeps addresses apart", () => {
    const limiter = new TokenBucketLimiter(1, { now: () => 0 });

    assert.equal(limiter.take("a").allowed, true);
    assert.equal(limiter.take("b").allowed, true);
    assert.equal(limiter.take("a").allowed, false);
  });

  it("rounds Retry-After up", () => {
    const limiter = new TokenBucketLimiter(1, { now: () => 0 });
    limiter.take("a");

    const result = limiter.take("a");

    assert.deepEqual(result, { allowed: false, retryAfterS: 1 });
  });

  it("disables itself at rate 0", () => {
    const limiter = new TokenBucketLimiter(0);

    for (let i = 0; i < 100; i += 1) assert.equal(limiter.take("a").allowed, true);
    assert.equal(limiter.size, 0);
  });

  it("prunes refilled buckets", () => {
    let now = 0;
    const limiter = new TokenBucketLimiter(10, { now: () => now });
    limiter.take("a");
    limiter.take("b");
    now = 50;
    limiter.take("b");

    now = 100;
    limiter.prune();

    assert.equal(limiter.size, 1, "b took a token 50 ms ago and is not full yet");
  });

  it("bounds its keys", () => {
    const limiter = new TokenBucketLimiter(1, { now: () => 0, maxKeys: 2 });
    limiter.take("a");
    limiter.take("b");
    limiter.take("c");

    assert.equal(limiter.size, 2);
    assert.equal(limiter.take("a").allowed, true, "the oldest key was dropped");
  });
});

describe("slot counter", () => {
  it("stops at the maximum", () => {
    const counter = new SlotCounter();

    assert.equal(counter.acquire("a", 2), true);
    assert.equal(counter.acquire("a", 2), true);
    assert.equal(counter.acquire("a", 2), false);
    assert.equal(counter.count("a"), 2);
  });

  it("frees a slot on release", () => {
    const counter = new SlotCounter();
    counter.acquire("a", 1);
    counter.release("a");

    assert.equal(counter.acquire("a", 1), true);
    counter.release("a");
    assert.equal(counter.size, 0);
  });

  it("has no limit at 0", () => {
    const counter = new SlotCounter();

    for (let i = 0; i < 50; i += 1) assert.equal(counter.acquire("a", 0), true);
    assert.equal(counter.count("a"), 50);
  });
});
