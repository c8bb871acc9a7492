import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DoneMessage } from "../protocol/message.ts";
import { isMessageId } from "../protocol/message-id.ts";
import { EmbeddedBus, type BusEvent } from "./bus.ts";
import { MessageError } from "./errors.ts";
import { captureLogs } from "./test-support.ts";

/** Returns a bus handler that records the done message of every message event. */
function recordMessages(messages: DoneMessage[]): (event: BusEvent) => void {
  return (event) => {
    if (event.type === "message") messages.push(event.message);
  };
}

describe("embedded bus", () => {
  it("hands messages to every subscriber", async () => {
    const bus = new EmbeddedBus();
    const first: DoneMessage[] = [];
    const second: DoneMessage[] = [];
    bus.subscribe(recordMessages(first));
    bus.subscribe(recordMessages(second));

    await bus.publish({ user: "alice", html: "<a></a>" });

    assert.deepEqual(first, [{ user: "alice", html: "<a></a>" }]);
    assert.deepEqual(second, [{ user: "alice", html: "<a></a>" }]);
  });

  it("rejects invalid messages", async () => {
    const bus = new EmbeddedBus();
    const received: DoneMessage[] = [];
    bus.subscribe(recordMessages(received));

    await assert.rejects(bus.publish({ user: "alice", channel: "news", extra: 1 }), (error) => {
      assert.ok(error instanceof MessageError);
      assert.equal(error.code, "PATPUSH_MESSAGE_INVALID");
      assert.ok(error.problems.some((p) => p.startsWith("(root): ") && p.includes("extra")));
      assert.match(error.message, /^invalid done message:\n/);
      return true;
    });
    assert.deepEqual(received, []);
  });

  it("lists each schema problem", async () => {
    const bus = new EmbeddedBus();
    await assert.rejects(bus.publish({ user: "", event: "1bad" }), (error) => {
      assert.ok(error instanceof MessageError);
      assert.ok(error.problems.some((p) => p.startsWith("user: ")), error.message);
      assert.ok(
        error.problems.includes("event: must be a DOM event name of 1-64 word characters"),
        error.message,
      );
      return true;
    });
  });

  it("survives a throwing subscriber", async () => {
    const logs = captureLogs();
    const bus = new EmbeddedBus({ logger: logs.logger });
    const received: DoneMessage[] = [];
    bus.subscribe(() => {
      throw new Error("subscriber broke");
    });
    bus.subscribe(recordMessages(received));

    await bus.publish({ channel: "news", pushId: "p1" });

    assert.deepEqual(received, [{ channel: "news", pushId: "p1" }]);
    const record = logs.records().find((r) => r.msg === "bus subscriber failed");
    assert.ok(record, "the failure is logged");
    assert.equal(record.level, 50);
    assert.equal((record.err as { message?: string }).message, "subscriber broke");
  });

  it("stops calling unsubscribed handlers", async () => {
    const bus = new EmbeddedBus();
    const received: DoneMessage[] = [];
    const unsubscribe = bus.subscribe(recordMessages(received));
    unsubscribe();

    await bus.publish({ user: "alice", pushId: "p1" });

    assert.deepEqual(received, []);
  });

  it("sends its coverage on subscribe", () => {
    const bus = new EmbeddedBus({ now: () => 1_700_000_000_000 });
    const events: BusEvent[] = [];
    bus.subscribe((event) => events.push(event));

    assert.deepEqual(events, [{ type: "coverage", from: "1700000000000-0", reset: false }]);
  });

  it("resolves publish with increasing ids", async () => {
    let now = 1_700_000_000_000;
    const bus = new EmbeddedBus({ now: () => now });
    const events: BusEvent[] = [];
    bus.subscribe((event) => events.push(event));

    const first = await bus.publish({ user: "alice", pushId: "p1" });
    const second = await bus.publish({ user: "bob", pushId: "p2" });
    now += 5;
    const third = await bus.publish({ channel: "news", pushId: "p3" });

    assert.deepEqual([first, second, third], [
      "1700000000000-1",
      "1700000000000-2",
      "1700000000005-1",
    ]);
    assert.ok([first, second, third].every(isMessageId));
    const handed = events.filter((e) => e.type === "message");
    assert.deepEqual(
      handed.map((e) => [e.id, e.live, e.backfill]),
      [
        [first, false, false],
        [second, false, false],
        [third, false, false],
      ],
    );
  });

  it("rejects publish after close", async () => {
    const bus = new EmbeddedBus();
    await bus.close();
    await assert.rejects(bus.publish({ user: "alice", pushId: "p1" }), {
      code: "PATPUSH_BUS_CLOSED",
      message: /the bus is closed/,
    });
  });
});
