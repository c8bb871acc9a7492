import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { ConfigError } from "../common/config.ts";
import { parseTaskConfig, requireEncryptionKey } from "./config.ts";
import {
  decodeEncryptionKey,
  openCredentials,
  sealCredentials,
  type TaskCredentials,
} from "./crypto.ts";
import { TaskError } from "./errors.ts";

const KEY = randomBytes(32);
const CREDENTIALS: TaskCredentials = {
  cookies: { __ac: "session-cookie-value" },
  authorization: "Basic YWxpY2U6c2VjcmV0",
  authenticator: "csrf-token-value",
};

function assertDecryptFailed(run: () => unknown): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof TaskError);
    assert.equal(error.code, "PATPUSH_TASK_DECRYPT_FAILED");
    assert.match(error.message, /^task credentials could not be decrypted: /);
    return true;
  });
}

/** Flips one bit of a base64 field. */
function flipBit(base64: string): string {
  const bytes = Buffer.from(base64, "base64");
  bytes[0] = (bytes[0] ?? 0) ^ 1;
  return bytes.toString("base64");
}

describe("credential sealing", () => {
  it("opens what it sealed", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY);
    assert.deepEqual(openCredentials(sealed, KEY), CREDENTIALS);
  });

  it("keeps values out of the ciphertext", () => {
    const text = JSON.stringify(sealCredentials(CREDENTIALS, KEY));
    assert.ok(!text.includes("session-cookie-value"));
    assert.ok(!text.includes("YWxpY2U6c2VjcmV0"));
    assert.ok(!text.includes("csrf-token-value"));
  });

  it("uses a fresh IV each time", () => {
    const first = sealCredentials(CREDENTIALS, KEY);
    const second = sealCredentials(CREDENTIALS, KEY);
    assert.equal(Buffer.from(first.iv, "base64").length, 12);
    assert.notEqual(first.iv, second.iv);
    assert.notEqual(first.data, second.data);
  });

  it("rejects a wrong key", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY);
    assertDecryptFailed(() => openCredentials(sealed, randomBytes(32)));
  });

  it("rejects tampered ciphertext", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY);
    assertDecryptFailed(() => openCredentials({ ...sealed, data: flipBit(sealed.data) }, KEY));
  });

  it("rejects a tampered tag", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY);
    assertDecryptFailed(() => openCredentials({ ...sealed, tag: flipBit(sealed.tag) }, KEY));
  });

  it("opens with the same binding", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY, "task-1 http://portal/a");
    assert.deepEqual(openCredentials(sealed, KEY, "task-1 http://portal/a"), CREDENTIALS);
  });

  it("rejects a different binding", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY, "task-1 http://portal/a");
    assertDecryptFailed(() => openCredentials(sealed, KEY, "task-1 http://portal/b"));
    assertDecryptFailed(() => openCredentials(sealed, KEY));
  });

  it("rejects an unknown format", () => {
    const sealed = sealCredentials(CREDENTIALS, KEY);
    assertDecryptFailed(() => openCredentials({ ...sealed, v: 2 }, KEY));
    assertDecryptFailed(() => openCredentials("plain", KEY));
  });
});

describe("encryption key config", () => {
  it("decodes hex and base64 keys", () => {
    assert.deepEqual(decodeEncryptionKey(KEY.toString("hex")), KEY);
    assert.deepEqual(decodeEncryptionKey(KEY.toString("base64")), KEY);
    assert.deepEqual(decodeEncryptionKey(KEY.toString("base64url")), KEY);
  });

  it("rejects other key lengths", () => {
    assert.equal(decodeEncryptionKey(randomBytes(16).toString("hex")), undefined);
    assert.equal(decodeEncryptionKey(randomBytes(31).toString("base64")), undefined);
    assert.equal(decodeEncryptionKey("not a key"), undefined);
  });

  it("reports a bad key without showing it", () => {
    const badKey = "0123456789abcdef-not-a-valid-key";
    assert.throws(
      () => parseTaskConfig({ allowedOrigins: ["http://127.0.0.1"], encryptionKey: badKey }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.code, "PATPUSH_CONFIG_INVALID");
        assert.match(
          error.message,
          /encryptionKey: must be 64 hex characters or base64 of 32 bytes/,
        );
        assert.match(error.message, /\(got \[redacted\]\)/);
        assert.ok(!error.message.includes(badKey));
        return true;
      },
    );
  });

  it("reports a short secret without showing it", () => {
    assert.throws(
      () => parseTaskConfig({ allowedOrigins: ["http://127.0.0.1"], signingSecret: "short-xyz" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /signingSecret: must have at least 16 characters/);
        assert.ok(!error.message.includes("short-xyz"));
        return true;
      },
    );
  });

  it("requires a key for Redis", () => {
    const config = parseTaskConfig({ allowedOrigins: ["http://127.0.0.1"] });
    assert.throws(() => requireEncryptionKey(config, "task worker"), {
      name: "ConfigError",
      code: "PATPUSH_CONFIG_INVALID",
      message: /encryptionKey: is required/,
    });
    const withKey = parseTaskConfig({
      allowedOrigins: ["http://127.0.0.1"],
      encryptionKey: KEY.toString("hex"),
    });
    assert.deepEqual(requireEncryptionKey(withKey, "task worker"), KEY);
  });
});
