import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecoveryHistory } from "./history.ts";

const T = 1_700_000_000_000;

/** Returns a history whose clock the test sets through `clock.now`. */
function historyAt(options: { windowMs?: number; maxMessages?: number } = {}) {
  const clock = { now: T };
  const history = new RecoveryHistory({
    windowMs: options.windowMs ?? 60_000,
    maxMessages: options.maxMessages ?? 100,
    now: () => clock.now,
  });
  return { history, clock };
}

/** Stores a frame whose text names its id, so a test can read the ids back. */
function store(history: RecoveryHistory, topic: string, id: string): void {
  assert.equal(history.store(topic, id, `frame ${id}`), true, `stored ${id}`);
}

function idsOf(frames: string[]): string[] {
  return frames.map((text) => text.slice("frame ".length));
}

describe("recovery history", () => {
  it("replays later frames in id order", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);
    store(history, "channel:news", `${T}-2`);
    store(history, "user:bob", `${T}-3`);
    store(history, "user:alice", `${T}-4`);
    store(history, "channel:news", `${T + 1}-1`);

    const replay = history.replay(["user:alice", "channel:news"], `${T}-1`);

    assert.equal(replay.recovery, "complete");
    assert.deepEqual(idsOf(replay.frames), [`${T}-2`, `${T}-4`, `${T + 1}-1`]);
  });

  it("replays the stored text unchanged", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-0`, false);
    const text = '{"type":"message","id":"1700000000000-1","html":"<a></a>"}';
    history.store("user:alice", `${T}-1`, text);

    assert.deepEqual(history.replay(["user:alice"], `${T}-0`).frames, [text]);
  });

  it("never replays other topics", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-0`, false);
    store(history, "user:bob", `${T}-1`);
    store(history, "channel:sports", `${T}-2`);

    const replay = history.replay(["user:alice", "channel:news"], `${T}-0`);

    assert.deepEqual(replay, { recovery: "complete", frames: [] });
  });

  it("reports a gap without coverage", () => {
    const { history } = historyAt();
    store(history, "user:alice", `${T}-1`);

    assert.deepEqual(history.replay(["user:alice"], `${T}-0`), { recovery: "gap", frames: [] });
  });

  it("reports a gap before the coverage", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-5`, false);
    store(history, "user:alice", `${T}-6`);

    assert.equal(history.replay(["user:alice"], `${T}-4`).recovery, "gap");
    assert.equal(history.replay(["user:alice"], `${T}-5`).recovery, "complete");
  });

  it("keeps the highest coverage", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-5`, false);
    history.setCoverage(`${T}-2`, false);

    assert.equal(history.coverage, `${T}-5`);
    history.setCoverage(`${T}-9`, false);
    assert.equal(history.coverage, `${T}-9`);
  });

  it("reports a gap after count eviction", () => {
    const { history } = historyAt({ maxMessages: 2 });
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);
    store(history, "user:bob", `${T}-2`);
    store(history, "user:alice", `${T}-3`);
    store(history, "user:alice", `${T}-4`);

    assert.equal(history.replay(["user:alice"], `${T}-0`).recovery, "gap");
    // Bob's topic lost nothing, so his replay from the same id is complete.
    assert.deepEqual(idsOf(history.replay(["user:bob"], `${T}-0`).frames), [`${T}-2`]);
    // From the evicted id on, alice's replay is complete again.
    const fromEvicted = history.replay(["user:alice"], `${T}-1`);
    assert.equal(fromEvicted.recovery, "complete");
    assert.deepEqual(idsOf(fromEvicted.frames), [`${T}-3`, `${T}-4`]);
  });

  it("reports a gap in a full channel", () => {
    const { history } = historyAt({ maxMessages: 1 });
    history.setCoverage(`${T}-0`, false);
    store(history, "channel:news", `${T}-1`);
    store(history, "channel:news", `${T}-2`);

    assert.equal(history.replay(["user:alice"], `${T}-0`).recovery, "complete");
    assert.equal(history.replay(["user:alice", "channel:news"], `${T}-0`).recovery, "gap");
  });

  it("drops frames past the window", () => {
    const { history, clock } = historyAt({ windowMs: 1000 });
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);
    store(history, "user:bob", `${T + 500}-1`);
    store(history, "user:alice", `${T + 900}-1`);

    clock.now = T + 1200;
    history.prune();

    assert.equal(history.size, 2);
    // Any socket whose last id is older than a dropped frame may miss it.
    assert.equal(history.replay(["user:bob"], `${T}-0`).recovery, "gap");
    const replay = history.replay(["user:alice"], `${T}-1`);
    assert.equal(replay.recovery, "complete");
    assert.deepEqual(idsOf(replay.frames), [`${T + 900}-1`]);

    clock.now = T + 5000;
    assert.equal(history.replay(["user:alice"], `${T}-1`).recovery, "gap");
    assert.equal(history.size, 0);
    assert.deepEqual(history.replay(["user:alice"], `${T + 900}-1`), {
      recovery: "complete",
      frames: [],
    });
  });

  it("drops old frames while storing", () => {
    const { history, clock } = historyAt({ windowMs: 1000 });
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);
    clock.now = T + 2000;
    store(history, "user:alice", `${T + 2000}-1`);

    assert.equal(history.size, 1);
  });

  it("clears everything on reset", () => {
    const { history } = historyAt({ maxMessages: 1 });
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);
    store(history, "user:alice", `${T}-2`);

    // The new stream starts lower than the ids stored before.
    const from = `${T - 10_000}-0`;
    history.setCoverage(from, true);

    assert.equal(history.coverage, from);
    assert.equal(history.size, 0);
    store(history, "user:alice", `${T - 10_000}-1`);
    store(history, "user:alice", `${T}-3`);
    assert.equal(history.size, 1, "the count limit applies to the new stream");
    const replay = history.replay(["user:alice"], `${T}-2`);
    assert.equal(replay.recovery, "gap", "the last id may belong to the old stream");
  });

  it("reports a gap for old-range ids after reset", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-5`);

    // The replacing stream's ids pass the old newest id: an id up to it may come from either stream.
    history.setCoverage(`${T - 1000}-0`, true);
    store(history, "user:alice", `${T - 1000}-1`);
    store(history, "user:alice", `${T}-9`);

    assert.equal(history.replay(["user:alice"], `${T}-5`).recovery, "gap");
    assert.equal(history.replay(["user:alice"], `${T - 1000}-1`).recovery, "gap");
    const after = history.replay(["user:alice"], `${T}-6`);
    assert.equal(after.recovery, "complete");
    assert.deepEqual(idsOf(after.frames), [`${T}-9`]);
  });

  it("ignores ids not above the newest", () => {
    const { history } = historyAt();
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-2`);

    assert.equal(history.store("user:alice", `${T}-2`, "again"), false);
    assert.equal(history.store("user:bob", `${T}-1`, "older"), false);
    assert.equal(history.size, 1);
  });

  it("stores nothing with zero maxMessages", () => {
    const { history } = historyAt({ maxMessages: 0 });
    history.setCoverage(`${T}-0`, false);
    store(history, "user:alice", `${T}-1`);

    assert.equal(history.size, 0);
    assert.equal(history.replay(["user:alice"], `${T}-0`).recovery, "gap");
    assert.equal(history.replay(["user:alice"], `${T}-1`).recovery, "complete");
  });

  it("keeps the latest frames of a long run", () => {
    const { history } = historyAt({ maxMessages: 100 });
    history.setCoverage(`${T}-0`, false);
    for (let seq = 1; seq <= 5000; seq++) {
      history.store(seq % 2 === 0 ? "user:alice" : "user:bob", `${T}-${seq}`, `frame ${T}-${seq}`);
    }

    assert.equal(history.size, 200);
    const replay = history.replay(["user:alice", "user:bob"], `${T}-4800`);
    assert.equal(replay.recovery, "complete");
    assert.equal(replay.frames.length, 200);
    assert.equal(idsOf(replay.frames)[0], `${T}-4801`);
    assert.equal(idsOf(replay.frames).at(-1), `${T}-5000`);
  });
});
