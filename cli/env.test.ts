import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePushServerEnv, parseWorkerEnv } from "./env.ts";

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

describe("push-server environment", () => {
  it("maps variables to config fields", () => {
    const { config, logLevel } = parsePushServerEnv({
      PATPUSH_AUTH_URL: "https://portal.example/@@auth",
      PATPUSH_PUSH_HOST: "::1",
      PATPUSH_PUSH_PORT: "9000",
      PATPUSH_PUSH_PATH: "/live",
      PATPUSH_PUSH_ORIGINS: "https://a.example, https://b.example",
      PATPUSH_COOKIE_NAMES: "__ac,session",
      PATPUSH_REDIS_URL: "redis://127.0.0.1:6390",
      PATPUSH_KEY_PREFIX: "site1:",
      PATPUSH_API_KEY: "k".repeat(32),
      PATPUSH_RECOVERY_WINDOW_MS: "60000",
      PATPUSH_RECOVERY_MAX_MESSAGES: "20",
      PATPUSH_SHUTDOWN_DRAIN_MS: "500",
      PATPUSH_LOG_LEVEL: "warn",
    });

    assert.equal(config.authUrl, "https://portal.example/@@auth");
    assert.equal(config.host, "::1");
    assert.equal(config.port, 9000);
    assert.equal(config.path, "/live");
    assert.deepEqual(config.allowedOrigins, ["https://a.example", "https://b.example"]);
    assert.deepEqual(config.cookieNames, ["__ac", "session"]);
    assert.equal(config.redisUrl, "redis://127.0.0.1:6390");
    assert.equal(config.keyPrefix, "site1:");
    assert.equal(config.apiKey, "k".repeat(32));
    assert.equal(config.recoveryWindowMs, 60_000);
    assert.equal(config.recoveryMaxMessages, 20);
    assert.equal(config.shutdownDrainMs, 500);
    assert.equal(logLevel, "warn");
  });

  it("applies defaults for empty variables", () => {
    const { config, logLevel } = parsePushServerEnv({
      PATPUSH_AUTH_URL: "https://portal.example/@@auth",
      PATPUSH_PUSH_PORT: "",
      PATPUSH_REDIS_URL: "",
    });

    assert.equal(config.port, 8481);
    assert.equal(config.host, "127.0.0.1");
    assert.deepEqual(config.allowedOrigins, ["https://portal.example"]);
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.recoveryWindowMs, 300_000);
    assert.equal(config.shutdownDrainMs, 10_000);
    assert.equal(logLevel, "info");
  });

  it("maps the socket limits", () => {
    const { config } = parsePushServerEnv({
      PATPUSH_AUTH_URL: "https://portal.example/@@auth",
      PATPUSH_ALLOW_MISSING_ORIGIN: "true",
      PATPUSH_REVALIDATE_INTERVAL_MS: "0",
      PATPUSH_MAX_SOCKETS_PER_USER: "4",
      PATPUSH_MAX_SOCKETS_PER_IP: "0",
      PATPUSH_UPGRADES_PER_IP_PER_SECOND: "50",
      PATPUSH_TRUSTED_PROXIES: "10.0.0.1, ::1",
    });

    assert.equal(config.allowMissingOrigin, true);
    assert.equal(config.revalidateIntervalMs, 0);
    assert.equal(config.maxSocketsPerUser, 4);
    assert.equal(config.maxSocketsPerIp, 0);
    assert.equal(config.upgradesPerIpPerSecond, 50);
    assert.deepEqual(config.trustedProxies, ["10.0.0.1", "::1"]);
  });

  it("rejects a bad boolean", () => {
    assert.throws(
      () =>
        parsePushServerEnv({
          PATPUSH_AUTH_URL: "https://portal.example/@@auth",
          PATPUSH_ALLOW_MISSING_ORIGIN: "yes",
        }),
      /PATPUSH_ALLOW_MISSING_ORIGIN: must be "true" or "false" \(got "yes"\)/,
    );
  });

  it("lists each problem once", () => {
    assert.throws(
      () =>
        parsePushServerEnv({
          PATPUSH_PUSH_PORT: "70000",
          PATPUSH_RECOVERY_MAX_MESSAGES: "1.5",
          PATPUSH_API_KEY: "too-short-secret",
        }),
      (error: Error & { code?: string; problems?: string[] }) => {
        assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
        assert.equal(error.problems?.length, 4);
        assert.match(error.message, /PATPUSH_AUTH_URL: .*\(got missing\)/);
        assert.match(error.message, /PATPUSH_PUSH_PORT: .*\(got "70000"\)/);
        assert.match(error.message, /PATPUSH_RECOVERY_MAX_MESSAGES: must be a whole number/);
        assert.match(error.message, /PATPUSH_API_KEY: .*\(got \[redacted\]\)/);
        assert.doesNotMatch(error.message, /too-short-secret/);
        return true;
      },
    );
  });
});
