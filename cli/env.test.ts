import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseWorkerEnv } from "./env.ts";

const KEY = "ab".repeat(32);

describe("worker environment", () => {
  it("hides credentials in origins", () => {
    const env = {
      PATPUSH_REDIS_URL: "redis://127.0.0.1:6390",
      PATPUSH_ENCRYPTION_KEY: KEY,
      PATPUSH_ALLOWED_ORIGINS: "https://ok.example,https://user:p4ss-secret@portal.example",
    };

    assert.throws(
      () => parseWorkerEnv(env),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
        assert.doesNotMatch(error.message, /p4ss-secret/);
        assert.match(error.message, /an entry with a user name or password must not contain/);
        return true;
      },
    );
  });

  it("shows a plain bad origin", () => {
    const env = {
      PATPUSH_REDIS_URL: "redis://127.0.0.1:6390",
      PATPUSH_ENCRYPTION_KEY: KEY,
      PATPUSH_ALLOWED_ORIGINS: "ftp://portal.example",
    };

    assert.throws(() => parseWorkerEnv(env), /ftp:\/\/portal\.example must use http or https/);
  });
});
