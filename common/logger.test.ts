import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger } from "./logger.ts";

/** Returns a debug logger and a function that returns its lines parsed. */
function memoryLogger() {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  const logger = createLogger({ level: "debug", destination });
  const records = () =>
    chunks
      .join("")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as { err?: Record<string, unknown>; msg: string });
  return { logger, records, text: () => chunks.join("") };
}

/** Creates an error shaped like the ReplyError that ioredis raises for a rejected AUTH. */
function replyError(password: string): Error {
  return Object.assign(new Error("WRONGPASS invalid username-password pair"), {
    name: "ReplyError",
    command: { name: "auth", args: [password] },
  });
}

describe("logger error serializer", () => {
  it("hides Redis command arguments", () => {
    const { logger, records, text } = memoryLogger();

    logger.warn({ err: replyError("redis-password-1") }, "redis connection lost");
    logger.error(replyError("redis-password-2"), "redis failed");

    assert.ok(!text().includes("redis-password"), "a log line contains the AUTH argument");
    const [first, second] = records();
    assert.deepEqual(first?.err?.command, { name: "auth", args: "[redacted]" });
    assert.deepEqual(second?.err?.command, { name: "auth", args: "[redacted]" });
  });

  it("keeps the message and stack", () => {
    const { logger, records } = memoryLogger();

    logger.warn({ err: replyError("x") }, "redis connection lost");

    const [record] = records();
    assert.equal(record?.err?.message, "WRONGPASS invalid username-password pair");
    assert.match(String(record?.err?.stack), /logger\.test\.ts/);
  });

  it("leaves a non-error value as it is", () => {
    const { logger, records } = memoryLogger();

    logger.warn({ err: "plain text" }, "odd error");

    assert.equal(records()[0]?.err, "plain text");
  });
});
