import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../common/config.ts";
import { parseTaskConfig } from "./config.ts";

function configError(input: unknown): ConfigError {
  try {
    parseTaskConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error;
  }
  assert.fail("expected a ConfigError");
}

describe("task config", () => {
  it("fills in every default", () => {
    const config = parseTaskConfig({ allowedOrigins: ["http://127.0.0.1:8480"] });
    assert.deepEqual(config, {
      allowedOrigins: ["http://127.0.0.1:8480"],
      cookieNames: ["__ac"],
      taskNameHeader: "X-Task-Name",
      maxAttempts: 5,
      backoffBaseMs: 1000,
      backoffMaxMs: 60_000,
      requestTimeoutMs: 30_000,
      loginUrlPatterns: ["/login", "require_login", "login_form"],
      concurrency: 8,
      keyPrefix: "patpush:",
    });
  });

  it("normalises allowed origins", () => {
    const config = parseTaskConfig({
      allowedOrigins: ["HTTP://Portal.Example:80/", "https://portal.example:443", "http://p:8080"],
    });
    assert.deepEqual(config.allowedOrigins, [
      "http://portal.example",
      "https://portal.example",
      "http://p:8080",
    ]);
  });

  it("rejects origins with paths or schemes", () => {
    const error = configError({
      allowedOrigins: ["http://p/plone", "ftp://p", "not a url", "http://user:pw@p"],
    });
    assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
    assert.match(
      error.message,
      /allowedOrigins\.0: must be scheme:\/\/host\[:port\] without a path/,
    );
    assert.match(error.message, /allowedOrigins\.1: must use http or https, not ftp/);
    assert.match(error.message, /allowedOrigins\.2: must be an origin like/);
    assert.match(error.message, /allowedOrigins\.3: must not contain a user name or password/);
  });

  it("rejects missing or empty allowedOrigins", () => {
    assert.match(configError({}).message, /allowedOrigins: .*\(got missing\)/);
    assert.match(
      configError({ allowedOrigins: [] }).message,
      /allowedOrigins: must list at least one origin/,
    );
  });

  it("rejects bad numbers and unknown keys", () => {
    const error = configError({
      allowedOrigins: ["http://p"],
      maxAttempts: 0,
      concurrency: 0,
      taskNameHeader: "X Task",
      retries: 3,
    });
    assert.match(error.message, /maxAttempts: .*\(got 0\)/);
    assert.match(error.message, /concurrency: .*\(got 0\)/);
    assert.match(error.message, /taskNameHeader: must be an HTTP token/);
    assert.match(error.message, /\(root\): Unrecognized key: "retries"/);
  });

  it("rejects backoffMaxMs below backoffBaseMs", () => {
    const error = configError({
      allowedOrigins: ["http://p"],
      backoffBaseMs: 500,
      backoffMaxMs: 100,
    });
    assert.match(
      error.message,
      /backoffMaxMs: backoffMaxMs must be at least backoffBaseMs \(got 100\)/,
    );
  });
});
