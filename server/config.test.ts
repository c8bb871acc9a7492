import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../common/config.ts";
import { parseServerConfig } from "./config.ts";

const authUrl = "http://127.0.0.1:8480/@@patpush-auth";

function problemsOf(input: unknown): string[] {
  try {
    parseServerConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
    return error.problems;
  }
  assert.fail("expected a ConfigError");
}

describe("server config", () => {
  it("applies every default", () => {
    assert.deepEqual(parseServerConfig({ authUrl }), {
      host: "127.0.0.1",
      port: 8481,
      path: "/push",
      authUrl,
      allowedOrigins: ["http://127.0.0.1:8480"],
      cookieNames: ["__ac"],
      authTimeoutMs: 5000,
      authConnections: 32,
      authCacheTtlMs: 10_000,
      authRejectCacheTtlMs: 2000,
      maxCookieBytes: 4096,
      allowMissingOrigin: false,
      revalidateIntervalMs: 300_000,
      maxSocketsPerUser: 16,
      maxSocketsPerIp: 256,
      upgradesPerIpPerSecond: 20,
      trustedProxies: [],
      maxPayloadBytes: 4096,
      maxBackpressureBytes: 1024 * 1024,
      recoveryWindowMs: 300_000,
      recoveryMaxMessages: 100,
      resumeWaitMs: 2000,
      shutdownDrainMs: 10_000,
      idleTimeoutS: 120,
      keyPrefix: "patpush:",
      streamMaxLen: 10_000,
      maxApiBodyBytes: 256 * 1024,
    });
  });

  it("keeps explicit allowed origins", () => {
    const origins = ["https://portal.example", "http://[::1]:8480"];
    const config = parseServerConfig({ authUrl, allowedOrigins: origins });
    assert.deepEqual(config.allowedOrigins, origins);
  });

  it("accepts port 0 and idle timeout 0", () => {
    const config = parseServerConfig({ authUrl, port: 0, idleTimeoutS: 0 });
    assert.equal(config.port, 0);
    assert.equal(config.idleTimeoutS, 0);
  });

  it("rejects invalid socket limits", () => {
    assert.deepEqual(
      problemsOf({
        authUrl,
        revalidateIntervalMs: 500,
        maxSocketsPerUser: -1,
        maxSocketsPerIp: 1.5,
        upgradesPerIpPerSecond: "20",
        allowMissingOrigin: "yes",
      }),
      [
        'allowMissingOrigin: Invalid input: expected boolean, received string (got "yes")',
        "revalidateIntervalMs: must be 0 (disabled) or 1000-86400000 milliseconds (got 500)",
        "maxSocketsPerUser: Too small: expected number to be >=0 (got -1)",
        "maxSocketsPerIp: Invalid input: expected int, received number (got 1.5)",
        'upgradesPerIpPerSecond: Invalid input: expected number, received string (got "20")',
      ],
    );
  });

  it("requires authUrl", () => {
    assert.deepEqual(problemsOf({}), [
      "authUrl: must be an absolute http or https URL (got missing)",
    ]);
  });

  it("rejects credentials in authUrl", () => {
    const problems = problemsOf({ authUrl: "http://user:hunter2@127.0.0.1:8480/auth" });
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? "", /^authUrl: must not contain a user name or password/);
    assert.doesNotMatch(problems[0] ?? "", /hunter2/);
  });

  it("lists every bad value together", () => {
    const problems = problemsOf({
      authUrl: "ftp://portal.example/auth",
      port: 70000,
      path: "/push/",
      allowedOrigins: ["http://portal.example/"],
      cookieNames: ["bad name"],
      authTimeoutMs: 0,
      idleTimeoutS: 5,
      maxPayloadBytes: 1.5,
    });

    const paths = problems.map((problem) => problem.split(":")[0]);
    assert.deepEqual(paths.sort(), [
      "allowedOrigins.0",
      "authTimeoutMs",
      "authUrl",
      "cookieNames.0",
      "idleTimeoutS",
      "maxPayloadBytes",
      "path",
      "port",
    ]);
    assert.ok(problems.includes("idleTimeoutS: must be 0 (disabled) or 8-960 seconds (got 5)"));
    assert.ok(
      problems.includes(
        "allowedOrigins.0: must be an origin: scheme://host[:port] with no path or trailing slash" +
          ' (got "http://portal.example/")',
      ),
    );
  });

  it("rejects unknown options", () => {
    const problems = problemsOf({ authUrl, authTimeout: 100 });
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? "", /authTimeout/);
  });

  it("rejects an empty origin list", () => {
    const problems = problemsOf({ authUrl, allowedOrigins: [] });
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? "", /^allowedOrigins: /);
  });

  it("accepts the recovery options", () => {
    const config = parseServerConfig({
      authUrl,
      recoveryWindowMs: 0,
      recoveryMaxMessages: 0,
      resumeWaitMs: 0,
      shutdownDrainMs: 0,
    });
    assert.equal(config.recoveryWindowMs, 0);
    assert.equal(config.recoveryMaxMessages, 0);
    assert.equal(config.resumeWaitMs, 0);
    assert.equal(config.shutdownDrainMs, 0);
  });

  it("rejects bad recovery options", () => {
    const problems = problemsOf({
      authUrl,
      recoveryWindowMs: -1,
      recoveryMaxMessages: 1.5,
      resumeWaitMs: 60_001,
      shutdownDrainMs: "10s",
    });
    assert.deepEqual(
      problems.map((problem) => problem.split(":")[0]).sort(),
      ["recoveryMaxMessages", "recoveryWindowMs", "resumeWaitMs", "shutdownDrainMs"],
    );
    assert.ok(
      problems.includes("resumeWaitMs: Too big: expected number to be <=60000 (got 60001)"),
      problems.join("\n"),
    );
  });

  it("accepts the redis options", () => {
    const config = parseServerConfig({
      authUrl,
      redisUrl: "rediss://:pass@redis.example:6380/2",
      keyPrefix: "app1:",
      streamMaxLen: 500,
    });
    assert.equal(config.redisUrl, "rediss://:pass@redis.example:6380/2");
    assert.equal(config.keyPrefix, "app1:");
    assert.equal(config.streamMaxLen, 500);
  });

  it("rejects bad redis options", () => {
    const problems = problemsOf({
      authUrl,
      redisUrl: "http://redis.example:6379",
      keyPrefix: "my prefix:",
      streamMaxLen: 0,
    });
    assert.deepEqual(problems.sort(), [
      `keyPrefix: must be 1-64 letters, digits, '_', '.' or '-' followed by ':' (got "my prefix:")`,
      "redisUrl: must be a redis:// or rediss:// URL (got [redacted])",
      "streamMaxLen: Too small: expected number to be >=1 (got 0)",
    ]);
  });
});
