import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { ConfigError, parseConfig } from "../../common/config.ts";
import { demoConfigSchema } from "./config.ts";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));

/** Runs the `npm start` entry point with `env` added and returns its exit code and output. */
function runMain(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
      env: {
        ...process.env,
        PATPUSH_PORTAL_PORT: "",
        PATPUSH_PUSH_PORT: "",
        PATPUSH_REDIS_URL: "",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("demo config ports", () => {
  it("rejects equal ports", () => {
    assert.throws(
      () => parseConfig("portal", demoConfigSchema, { portalPort: 8492, pushPort: 8492 }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, "PATPUSH_CONFIG_INVALID");
        assert.deepEqual(err.problems, [
          "pushPort: must differ from portalPort, because each server needs its own port " +
            "(got 8492)",
        ]);
        return true;
      },
    );
  });

  it("rejects the default portal port", () => {
    assert.throws(() => parseConfig("portal", demoConfigSchema, { pushPort: 8480 }), {
      code: "PATPUSH_CONFIG_INVALID",
      message: /pushPort: must differ from portalPort/,
    });
  });

  it("accepts port 0 for both", () => {
    const config = parseConfig("portal", demoConfigSchema, { portalPort: 0, pushPort: 0 });
    assert.equal(config.portalPort, 0);
    assert.equal(config.pushPort, 0);
  });
});

describe("demo entry point ports", () => {
  it("names both variables when equal", async () => {
    const result = await runMain({ PATPUSH_PORTAL_PORT: "8492", PATPUSH_PUSH_PORT: "8492" });

    assert.equal(result.code, 2);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "the portal and the push server need different ports, but PATPUSH_PORTAL_PORT=8492 and " +
        "PATPUSH_PUSH_PORT=8492; set one of them to another port\n",
    );
  });

  it("names the default it clashes with", async () => {
    const result = await runMain({ PATPUSH_PUSH_PORT: "8480" });

    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      "the portal and the push server need different ports, but PATPUSH_PORTAL_PORT is unset " +
        "(default 8480) and PATPUSH_PUSH_PORT=8480; set one of them to another port\n",
    );
  });
});

describe("demo entry point redis", () => {
  it("rejects a URL that is not redis", async () => {
    const result = await runMain({
      PATPUSH_REDIS_URL: "http://127.0.0.1:6390",
      PATPUSH_ENCRYPTION_KEY: "ab".repeat(32),
    });

    assert.equal(result.code, 2);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "invalid distributed portal configuration:\n" +
        "  redisUrl: must be a redis:// or rediss:// URL (got [redacted])\n",
    );
  });
});
